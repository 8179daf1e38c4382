"""Hostile SDP and a failing media loop, over loopback with the Python phone: refused with
488 before answering, or the call ended cleanly with what was recorded so far."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from imapvm.telephony.channel import SipChannel
from imapvm.telephony.server import SipServer
from imapvm.telephony.sip.message import SipRequest

from .pyphone import PyPhone
from .test_channel import Harness, frames, harness, phone  # noqa: F401 - fixtures used below

pytestmark = pytest.mark.timeout(30)


def sdp(caller: PyPhone, media: str, connection: str | None = None) -> bytes:
    host, port = caller._addr(caller.rtp)
    c_line = connection or f"c=IN IP4 {host}"
    return (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\n{c_line}\r\nt=0 0\r\n"
            + media.replace("PORT", str(port)) + "\r\n").encode()


@pytest.mark.parametrize(("media", "connection"), [
    ("m=audio PORT RTP/AVP 300 0", None),
    ("m=audio PORT RTP/AVP 300\r\na=rtpmap:300 PCMU/8000", None),
    ("m=audio PORT RTP/AVP 96\r\na=rtpmap:96 NOSUCHCODEC/8000", None),
    ("m=audio 99999 RTP/AVP 0", None),
    ("m=audio 22 RTP/AVP 0", None),
    ("m=audio PORT RTP/AVP 0", "c=IN IP4 224.0.0.251"),
    ("m=audio PORT RTP/AVP 0", "c=IN IP4 not-an-address"),
])
async def test_hostile_offer_gets_488_and_no_call(
        harness: tuple[Harness, SipServer], phone: PyPhone,  # noqa: F811
        media: str, connection: str | None) -> None:
    h, server = harness
    h.handler = lambda channel: channel.answer()
    uri = f"sip:1234@127.0.0.1:{server.address[1]}"
    phone.send_request("INVITE", uri, sdp(phone, media, connection), cseq=1)
    resp = await phone.final_response()
    assert resp.status == 488
    assert server.channels == {}  # never answered, no flow started
    assert not h.finished.is_set()


async def test_media_failure_ends_the_call_and_keeps_the_recording(
        harness: tuple[Harness, SipServer], phone: PyPhone,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    """A media loop that breaks mid-call (here: a payload type no RTP header can carry, as an
    unchecked offer once produced) hangs up with BYE; the recording so far comes back."""
    h, server = harness
    recording = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        recording.set()
        result = await channel.record(max_seconds=20)
        h.results["reason"] = result.reason
        h.results["samples"] = len(result.audio)

    h.handler = handler
    assert (await phone.call()).status == 200
    await asyncio.wait_for(recording.wait(), 5)
    for seq, chunk in enumerate(frames(1.0)):  # one second of the caller's audio
        phone.send_rtp(seq, chunk, ts=seq * 160)
    channel = next(iter(server.channels.values()))
    assert channel.rtp is not None
    rtp = channel.rtp
    await asyncio.wait_for(_received(rtp, 50), 5)
    assert rtp.media is not None
    rtp.media = dataclasses.replace(rtp.media, payload_type=300)  # the next frame cannot pack
    bye = await phone.next_sip()
    assert isinstance(bye, SipRequest)
    assert bye.method == "BYE"
    phone.respond(bye, 200)
    await asyncio.wait_for(h.finished.wait(), 5)
    assert h.results["reason"] == "hangup"
    assert int(h.results["samples"]) >= 40 * 160  # what the caller said before the failure
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("media" in r.getMessage() and "failed" in r.getMessage() for r in errors)


async def _received(rtp: object, count: int) -> None:
    """Polls: packets arrive through the socket, there is no event to wait on."""
    while getattr(rtp, "stats").received < count:  # noqa: B009, ASYNC110
        await asyncio.sleep(0.01)
