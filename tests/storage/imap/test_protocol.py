"""The sans-I/O IMAP response framer/parser and command encoder, on raw bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapvm.storage.imap.protocol import (
    Literal,
    ProtocolError,
    Raw,
    ResponseFramer,
    encode_command,
    parse_response,
    quote,
)


def frames(data: bytes, chunk: int = 0) -> list[bytes]:
    framer = ResponseFramer()
    if not chunk:
        return framer.feed(data)
    out: list[bytes] = []
    for i in range(0, len(data), chunk):
        out += framer.feed(data[i : i + chunk])
    return out


def test_framer_joins_literals_and_splits_lines() -> None:
    data = (b"* 1 FETCH (UID 7 BODY[] {11}\r\nhello\r\nworld FLAGS (\\Seen))\r\n"
            b"V1 OK done\r\n")
    for chunk in (0, 1, 3, 7):
        out = frames(data, chunk)
        assert out == [b"* 1 FETCH (UID 7 BODY[] {11}\r\nhello\r\nworld FLAGS (\\Seen))",
                       b"V1 OK done"]


def test_fetch_with_literal_and_section_atom() -> None:
    raw = frames(b"* 12 FETCH (UID 40 FLAGS (\\Seen $Label1) "
                 b"BODY[HEADER.FIELDS (X-ASTERISK-VM-EXTENSION SUBJECT)] {20}\r\n"
                 b"Subject: a b c\r\n\r\n\r\n)\r\n")[0]
    r = parse_response(raw)
    assert (r.kind, r.name, r.number) == ("untagged", "FETCH", 12)
    items = r.values[0]
    assert items[:4] == [b"UID", b"40", b"FLAGS", [b"\\Seen", b"$Label1"]]
    assert items[4] == b"BODY[HEADER.FIELDS (X-ASTERISK-VM-EXTENSION SUBJECT)]"
    assert items[5] == b"Subject: a b c\r\n\r\n\r\n"


def test_tagged_status_with_code_and_args() -> None:
    r = parse_response(b"V3 OK [APPENDUID 1795676853 12] Append completed")
    assert (r.kind, r.tag, r.status, r.code) == ("tagged", b"V3", "OK", "APPENDUID")
    assert r.code_args == [b"1795676853", b"12"]
    assert r.text == "Append completed"
    r = parse_response(b"V4 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)")
    assert (r.status, r.code, r.code_args) == ("NO", "OVERQUOTA", [])


def test_untagged_status_and_capability_code() -> None:
    r = parse_response(b"* OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] ready")
    assert (r.name, r.status, r.code) == ("OK", "OK", "CAPABILITY")
    assert r.code_args == [b"IMAP4rev1", b"IDLE", b"UIDPLUS"]
    r = parse_response(b"* BYE [UNAVAILABLE] shutting down")
    assert (r.status, r.code, r.text) == ("BYE", "UNAVAILABLE", "shutting down")


def test_quoted_strings_nil_and_nested_lists() -> None:
    r = parse_response(b'* LIST (\\HasNoChildren) "/" "Work \\"x\\" \\\\ y"')
    assert r.values == [[b"\\HasNoChildren"], b"/", b'Work "x" \\ y']
    r = parse_response(b'* NAMESPACE (("INBOX." ".")) NIL (("#shared/" "/"))')
    assert r.values == [[[b"INBOX.", b"."]], None, [[b"#shared/", b"/"]]]
    r = parse_response(b"* LIST (\\Noselect) NIL \"\"")
    assert r.values == [[b"\\Noselect"], None, b""]


def test_esearch_status_and_search() -> None:
    r = parse_response(b'* ESEARCH (TAG "V5") UID COUNT 17 ALL 1:3,9')
    assert r.values == [[b"TAG", b"V5"], b"UID", b"COUNT", b"17", b"ALL", b"1:3,9"]
    r = parse_response(b'* STATUS "Old" (MESSAGES 2 UIDNEXT 3 UNSEEN 1)')
    assert r.values == [b"Old", [b"MESSAGES", b"2", b"UIDNEXT", b"3", b"UNSEEN", b"1"]]
    r = parse_response(b"* SEARCH 1 4 9")
    assert r.values == [b"1", b"4", b"9"]
    r = parse_response(b"* SEARCH")
    assert r.values == []


def test_continuation() -> None:
    r = parse_response(b"+ Ready for literal data")
    assert (r.kind, r.text) == ("continuation", "Ready for literal data")
    assert parse_response(b"+").kind == "continuation"


@pytest.mark.parametrize("bad", [
    b"* 1 FETCH (UID 1",           # unterminated list
    b'* LIST () "/" "unterminated',  # unterminated string
    b"* 1 FETCH (BODY[] {99}\r\nshort)",  # truncated literal
    b"V1 WHATEVER",                 # tagged without status
    b"",
])
def test_malformed_responses_raise_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_response(bad)


def test_framer_refuses_absurd_sizes() -> None:
    with pytest.raises(ProtocolError):
        ResponseFramer().feed(b"* 1 FETCH (BODY[] {999999999999}\r\n")
    with pytest.raises(ProtocolError):
        ResponseFramer().feed(b"x" * (2 << 20))


@given(st.binary(max_size=300))
def test_parser_never_raises_anything_but_protocol_error(data: bytes) -> None:
    try:
        for raw in ResponseFramer().feed(data + b"\r\n"):
            parse_response(raw)
    except ProtocolError:
        pass


@given(st.lists(st.binary(min_size=0, max_size=40).filter(
    lambda b: b"\r" not in b and b"\n" not in b and b"\0" not in b), max_size=6))
def test_quoted_strings_round_trip(items: list[bytes]) -> None:
    line = b"* LIST (\\X) \"/\" " + b" ".join(quote(i) if i else b'""' for i in items)
    if not items:
        line += b'""'
        items = [b""]
    r = parse_response(line)
    assert r.values[2:] == items


def test_encode_command_literal_plus_and_synchronising() -> None:
    body = Literal(b"Subject: x\r\n\r\nhi\r\n")
    one = encode_command(b"V1", "APPEND", ["INBOX", Raw(b"(\\Flagged)"), body], literal_plus=True)
    assert one == [b"V1 APPEND INBOX (\\Flagged) {18+}\r\nSubject: x\r\n\r\nhi\r\n\r\n"]
    two = encode_command(b"V2", "APPEND", ["My Folder", body], literal_plus=False)
    assert two == [b'V2 APPEND "My Folder" {18}\r\n', b"Subject: x\r\n\r\nhi\r\n\r\n"]


def test_quote() -> None:
    assert quote("INBOX") == b"INBOX"
    assert quote("") == b'""'
    assert quote("NIL") == b'"NIL"'
    assert quote('a "b"') == b'"a \\"b\\""'
    with pytest.raises(ValueError, match="CR, LF"):
        quote("a\r\nb")
