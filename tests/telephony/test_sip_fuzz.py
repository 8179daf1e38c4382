"""Property tests: no input makes the parser raise anything but SipParseError, or the core fail."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapvm.telephony.sip.core import CoreConfig, SipCore
from imapvm.telephony.sip.errors import SipParseError
from imapvm.telephony.sip.message import SipRequest, SipResponse, parse_message

from .sipmsgs import SOURCE, invite, request

SEEDS = [
    invite(),
    request("BYE", to_tag="t"),
    request("CANCEL"),
    request("ACK", to_tag="t"),
    request("INFO", to_tag="t", body="Signal=1\r\n", content_type="application/dtmf-relay"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCSeq: 1 BYE\r\n\r\n",
]
SIP_TOKENS = [b"\r\n", b":", b";", b",", b"<", b">", b'"', b"@", b" ", b"\t", b"[", b"]",
              b"%", b"=", b"SIP/2.0", b"tag=", b"branch=", b"\x00", b"\xff", b"\r\n\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 3))
        if op == 0:
            data[pos:pos] = draw(st.sampled_from(SIP_TOKENS))
        elif op == 1:
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == 2 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        else:
            data = data[:pos]
    return bytes(data)


def _parse(data: bytes) -> None:
    """Either a message, None (keep-alive) or SipParseError with an answerable status."""
    status = 0
    msg = None
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        status = exc.status
    assert status in (0, 400, 416, 505, 513)
    assert msg is None or isinstance(msg, SipRequest | SipResponse)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_parser_never_raises_on_random_bytes(data: bytes) -> None:
    _parse(data)


@settings(max_examples=600, deadline=None)
@given(mutated())
def test_parser_never_raises_on_mutated_messages(data: bytes) -> None:
    _parse(data)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(mutated(), min_size=1, max_size=5))
def test_core_survives_mutated_traffic(caplog: pytest.LogCaptureFixture, msgs: list[bytes]) -> None:
    core = SipCore(CoreConfig("127.0.0.1", 5070))
    with caplog.at_level(logging.ERROR, logger="imapvm.telephony.sip.core"):
        caplog.clear()
        for i, data in enumerate(msgs):
            core.receive(data, SOURCE, float(i))
            for send in core.take_outgoing():
                assert parse_message(send.data) is not None  # what we send parses back
            for event in core.take_events():
                if hasattr(event, "handle") and event.handle in core.calls:
                    core.answer(event.handle, ("127.0.0.1", 20000), float(i))
        core.handle_timer(100.0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_sdp_parser_raises_only_sdp_error(data: bytes) -> None:
    from imapvm.telephony.sdp import SdpError, negotiate, parse_sdp

    try:
        sdp = parse_sdp(b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n" + data)
    except SdpError:
        return
    result = negotiate(sdp)
    assert result is None or result[1].remote_port >= 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_rtp_and_event_parsers_never_raise(data: bytes) -> None:
    from imapvm.telephony.rtp.dtmf import DtmfReceiver
    from imapvm.telephony.rtp.packet import parse_rtp

    packet = parse_rtp(data)
    assert packet is None or 0 <= packet.payload_type < 128
    digits = DtmfReceiver().feed(1, 2, data, 0.0)
    assert all(len(d) == 1 for d, _ in digits)
