"""Parser and serializer on raw bytes, including torture messages in the spirit of RFC 4475."""

from __future__ import annotations

import pytest

from imapvm.telephony.sip.errors import SipParseError
from imapvm.telephony.sip.message import (
    Limits,
    SipRequest,
    SipResponse,
    parse_message,
    request_uri_error,
)
from imapvm.telephony.sip.uri import parse_name_addr, parse_uri, parse_via, split_header_values

BASIC = (
    b"INVITE sip:1234@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=f1\r\n'
    b"To: <sip:1234@127.0.0.1>\r\n"
    b"Call-ID: c1@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@10.0.0.1:5062>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def parse_request(data: bytes) -> SipRequest:
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def test_basic_invite_fields() -> None:
    req = parse_request(BASIC)
    assert req.method == "INVITE"
    assert req.uri == "sip:1234@127.0.0.1"
    assert req.call_id == "c1@10.0.0.1"
    assert req.cseq == (1, "INVITE")
    assert req.from_addr.display == "Alice"
    assert req.from_addr.tag == "f1"
    assert req.to_addr.tag is None
    assert req.vias[0].branch == "z9hG4bKabc"
    assert "rport" in req.vias[0].params
    assert req.body == b"v=0\n"


def test_serialize_round_trip_recomputes_content_length() -> None:
    req = parse_request(BASIC)
    req.body = b"v=0\r\no=x\r\n"
    again = parse_request(req.serialize())
    assert again.body == b"v=0\r\no=x\r\n"
    assert again.headers.get("Content-Length") == str(len(req.body))
    assert again.headers.get("From") == req.headers.get("From")


def test_compact_forms_folding_odd_whitespace_and_case() -> None:
    data = (
        b"OPTIONS sip:vm@h SIP/2.0\r\n"
        b"v:  SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1 , SIP / 2.0 / UDP 5.6.7.8\r\n"
        b"f: <sip:a@b>\r\n  ;tag=x\r\n"
        b"T :sip:vm@h\r\n"
        b"i:\tid1\r\n"
        b"cSeQ:   7    OPTIONS\r\n"
        b"X-Unknown: kept, as is\r\n"
        b"l: 0\r\n\r\n"
    )
    req = parse_request(data)
    assert [v.host for v in req.vias] == ["1.2.3.4", "5.6.7.8"]
    assert req.from_addr.tag == "x"
    assert req.to_addr.uri.user == "vm"
    assert req.call_id == "id1"
    assert req.cseq == (7, "OPTIONS")
    assert req.headers.get("x-unknown") == "kept, as is"  # unknown headers are never split


def test_multiple_via_headers_and_lists_are_ordered() -> None:
    extra = b"Via: SIP/2.0/UDP 2.2.2.2;branch=z9hG4bK2, SIP/2.0/TCP [2001:db8::9]:5070\r\n"
    data = BASIC.replace(b"Max-Forwards", extra + b"Max-Forwards")
    req = parse_request(data)
    assert [v.host for v in req.vias] == ["10.0.0.1", "2.2.2.2", "2001:db8::9"]
    assert req.vias[2].transport == "TCP"
    assert req.vias[2].port == 5070


def test_leading_crlf_is_ignored_and_keepalive_is_none() -> None:
    assert parse_message(b"\r\n\r\n") is None
    assert parse_request(b"\r\n" + BASIC).method == "INVITE"


def test_content_length_shorter_than_datagram_truncates() -> None:
    req = parse_request(BASIC + b"garbage after the body")
    assert req.body == b"v=0\n"


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ((b"Content-Length: 4", b"Content-Length: 400"), "larger"),
        ((b"Content-Length: 4", b"Content-Length: -4"), "Content-Length"),
        ((b"Call-ID: c1@10.0.0.1\r\n", b""), "Call-ID"),
        ((b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "match"),
        ((b"CSeq: 1 INVITE", b"CSeq: 99999999999 INVITE"), "CSeq"),
        ((b"Max-Forwards: 70", b"Max-Forwards: many"), "Max-Forwards"),
        ((b"To: <sip:1234@127.0.0.1>", b"To: <sip:1234@127.0.0.1"), "unterminated"),
        ((b'From: "Alice"', b'From: "Alice'), "unterminated"),
        ((b"Max-Forwards: 70", b"Bad Header Name: x"), "bad header"),
    ],
)
def test_semantic_errors_keep_a_partial_request_for_a_400(
    mutation: tuple[bytes, bytes], reason: str
) -> None:
    with pytest.raises(SipParseError, match=reason) as info:
        parse_message(BASIC.replace(*mutation))
    assert info.value.status == 400
    assert isinstance(info.value.partial, SipRequest)


@pytest.mark.parametrize(
    "data",
    [
        b"INVITE\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0 extra\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/3.0 200 OK\r\nVia: x\r\n\r\n",
        b"\xff\xfe INVITE sip:a@b SIP/2.0\r\n\r\n",
    ],
)
def test_unreadable_start_lines_are_dropped(data: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.partial is None


def test_nul_in_a_header_is_a_400_with_what_was_readable() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(BASIC.replace(b"Max-Forwards: 70", b"Subject: a\x00b"))
    assert info.value.status == 400
    assert info.value.partial is not None  # answerable: Via, From, To, Call-ID, CSeq are there


def test_size_limits() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(BASIC + b"x" * 70000)
    assert info.value.status == 513
    many = BASIC.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 200)
    with pytest.raises(SipParseError, match="too many headers"):
        parse_message(many)
    with pytest.raises(SipParseError, match="too long"):
        parse_message(BASIC, Limits(max_header_bytes=20))


def test_wrong_version_and_scheme_answerable() -> None:
    req = parse_request(BASIC.replace(b"127.0.0.1 SIP/2.0", b"127.0.0.1 SIP/7.0", 1))
    err = request_uri_error(req)
    assert err is not None
    assert err.status == 505
    mailto = parse_request(BASIC.replace(b"INVITE sip:1234@127.0.0.1", b"INVITE mailto:a@b"))
    err = request_uri_error(mailto)
    assert err is not None
    assert err.status == 416


def test_unknown_method_parses() -> None:
    data = BASIC.replace(b"INVITE", b"NEWMETHOD")
    assert parse_request(data).method == "NEWMETHOD"


def test_response_parsing() -> None:
    data = (
        b"SIP/2.0 180 Ringing and more words\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
        b"CSeq: 2 BYE\r\n\r\n"
    )
    resp = parse_message(data)
    assert isinstance(resp, SipResponse)
    assert (resp.status, resp.reason, resp.cseq) == (180, "Ringing and more words", (2, "BYE"))


def test_uri_escapes_ipv6_params_and_headers() -> None:
    uri = parse_uri("sip:%2A97@[2001:db8::1]:5070;transport=udp;user=phone?Subject=hi%20there")
    assert (uri.user, uri.host, uri.port) == ("*97", "2001:db8::1", 5070)
    assert uri.params == {"transport": "udp", "user": "phone"}
    assert uri.headers == {"Subject": "hi there"}
    assert str(uri).startswith("sip:%2A97@[2001:db8::1]")
    vm = parse_uri("sip:voicemail@example.com;target=sip:alice%40example.com;cause=486")
    assert vm.param("target") == "sip:alice@example.com"
    assert parse_uri("tel:+15551234;phone-context=x").user == "+15551234"
    assert parse_uri("sip:example.com;maddr=1.2.3.4").user is None


@pytest.mark.parametrize(
    "bad", ["sip:", "sip:a@", "sip:a@b:0", "sip:a@b:70000", "sip:a@[::g]", "sip:a@b c", "nocolon"]
)
def test_bad_uris(bad: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(bad)


def test_name_addr_forms() -> None:
    quoted = parse_name_addr('"Bob \\"the\\" <Builder>, Jr" <sip:bob@h>;tag=9;x')
    assert quoted.display == 'Bob "the" <Builder>, Jr'
    assert quoted.params == {"tag": "9", "x": None}
    token = parse_name_addr("Bob Smith <sip:bob@h;lr>")
    assert token.display == "Bob Smith"
    assert "lr" in token.uri.params
    bare = parse_name_addr("sip:bob@h;tag=1")
    assert bare.tag == "1"
    assert bare.uri.params == {}


def test_list_splitting_respects_quotes_and_brackets() -> None:
    values = split_header_values('"a, b" <sip:a@b>, <sip:c@d;x=1,2>,<sip:e@f>')
    assert values == ['"a, b" <sip:a@b>', "<sip:c@d;x=1,2>", "<sip:e@f>"]


def test_via_forms() -> None:
    via = parse_via("SIP / 2.0 / udp   host.example.com ; branch = z9hG4bK77 ; rport")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP", "host.example.com", None, "z9hG4bK77"
    )
    with pytest.raises(SipParseError):
        parse_via("SIP/1.0/UDP h")
