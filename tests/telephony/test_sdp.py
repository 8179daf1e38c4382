"""SDP parsing and answering."""

from __future__ import annotations

import pytest

from imapvm.telephony.sdp import SdpError, build_answer, negotiate, parse_sdp

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    b"m=audio 4000 RTP/AVP 9 0 8 96\r\nc=IN IP4 192.0.2.2\r\na=rtpmap:96 telephone-event/8000\r\n"
    b"a=ptime:30\r\na=sendonly\r\n"
)


def test_negotiate_picks_offerers_first_g711_and_telephone_event() -> None:
    index, media = negotiate(parse_sdp(OFFER)) or (None, None)
    assert index == 1
    assert media is not None
    assert (media.encoding, media.payload_type, media.dtmf_payload_type) == ("PCMU", 0, 96)
    assert (media.remote_host, media.remote_port, media.ptime_ms) == ("192.0.2.2", 4000, 30)
    assert media.on_hold


def test_answer_rejects_other_streams_and_mirrors_direction() -> None:
    offer = parse_sdp(OFFER)
    index, media = negotiate(offer, ("PCMA",)) or (0, None)
    assert media is not None
    assert media.encoding == "PCMA"
    body = build_answer(offer, index, media, "10.0.0.9", 20000, 42, 1).decode()
    lines = body.splitlines()
    assert "m=video 0 RTP/AVP 96" in lines
    assert "m=audio 20000 RTP/AVP 8 96" in lines
    assert "a=recvonly" in lines
    assert "c=IN IP4 10.0.0.9" in lines
    ipv6 = build_answer(offer, index, media, "2001:db8::5", 20000, 42, 2).decode()
    assert "c=IN IP6 2001:db8::5" in ipv6


def test_no_acceptable_codec_or_srtp_is_none() -> None:
    assert negotiate(parse_sdp(OFFER.replace(b"9 0 8 96", b"9 96"))) is None
    assert negotiate(parse_sdp(OFFER.replace(b"RTP/AVP 9", b"RTP/SAVP 9"))) is None


@pytest.mark.parametrize("body", [b"garbage line\r\n", b"m=audio x\r\n", b"\xff\xfe",
                                  b"m=audio 9999999999 RTP/AVP 0\r\n",
                                  "m=audio \u00b2 RTP/AVP 0\r\n".encode()])
def test_bad_sdp_raises_sdp_error(body: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body)


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"m=audio 4000", b"m=audio 99999"), (b"c=IN IP4 192.0.2.2", b"c=IN IP4 media.example")],
)
def test_unusable_addresses_are_not_negotiated(old: bytes, new: bytes) -> None:
    assert negotiate(parse_sdp(OFFER.replace(old, new))) is None


HOSTILE_MEDIA = {
    "payload type 300": ("m=audio 4000 RTP/AVP 300 0", "c=IN IP4 192.0.2.2"),
    "payload type 300 mapped to PCMU": ("m=audio 4000 RTP/AVP 300\r\na=rtpmap:300 PCMU/8000",
                                        "c=IN IP4 192.0.2.2"),
    "huge payload type": ("m=audio 4000 RTP/AVP 99999999999999999999 0", "c=IN IP4 192.0.2.2"),
    "unknown codec only": ("m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 FOO/8000",
                           "c=IN IP4 192.0.2.2"),
    "port above 65535": ("m=audio 70000 RTP/AVP 0", "c=IN IP4 192.0.2.2"),
    "privileged port": ("m=audio 22 RTP/AVP 0", "c=IN IP4 127.0.0.1"),
    "c= without address": ("m=audio 4000 RTP/AVP 0", "c=IN IP4"),
    "c= host name": ("m=audio 4000 RTP/AVP 0", "c=IN IP4 phone.example.com"),
    "c= multicast": ("m=audio 4000 RTP/AVP 0", "c=IN IP4 224.0.0.1/127"),
    "c= broadcast": ("m=audio 4000 RTP/AVP 0", "c=IN IP4 255.255.255.255"),
    "c= family mismatch": ("m=audio 4000 RTP/AVP 0", "c=IN IP4 2001:db8::1"),
    "c= bad address": ("m=audio 4000 RTP/AVP 0", "c=IN IP4 999.1.1.1"),
    "c= network type": ("m=audio 4000 RTP/AVP 0", "c=XX IP4 192.0.2.2"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MEDIA))
def test_hostile_media_lines_are_not_negotiated(case: str) -> None:
    """Each gets 488 from the core (no usable stream), never a call whose RTP cannot work."""
    m_line, c_line = HOSTILE_MEDIA[case]
    body = f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n{c_line}\r\nt=0 0\r\n{m_line}\r\n"
    assert negotiate(parse_sdp(body.encode())) is None


def test_hold_address_and_a_good_second_stream_still_work() -> None:
    hold = b"v=0\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    accepted = negotiate(parse_sdp(hold))
    assert accepted is not None
    assert accepted[1].on_hold
    two = (b"v=0\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 300\r\n"
           b"m=audio 4002 RTP/AVP 8\r\n")
    accepted = negotiate(parse_sdp(two))
    assert accepted is not None
    assert (accepted[0], accepted[1].payload_type) == (1, 8)
