"""SipChannel over loopback with a Python phone: media edge cases fast and deterministic."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest

from imapvm.audio import g711
from imapvm.channel import Channel, ChannelHangup
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.sip.message import SipRequest, SipResponse
from tests.support.waiting import until

from .conftest import tone
from .pyphone import PyPhone

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[SipChannel], Awaitable[None]]


class Harness:
    """A server whose handler is set per test; results are put in ``results``."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.results: dict[str, object] = {}
        self.finished = asyncio.Event()

    async def __call__(self, channel: SipChannel) -> None:
        assert self.handler is not None
        try:
            await self.handler(channel)
        except ChannelHangup as exc:
            self.results["hangup_exc"] = str(exc)
            raise
        finally:
            self.finished.set()


@pytest.fixture
async def harness() -> AsyncIterator[tuple[Harness, SipServer]]:
    h = Harness()
    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(34000, 34998))
    async with SipServer(settings, h) as server:
        yield h, server


@pytest.fixture
async def phone(harness: tuple[Harness, SipServer]) -> AsyncIterator[PyPhone]:
    p = PyPhone("127.0.0.1", harness[1].address)
    await p.open()
    yield p
    p.close()


def frames(seconds: float, freq: float = 300.0) -> list[bytes]:
    data = g711.ulaw_encode(tone(freq, seconds))
    return [data[i : i + 160] for i in range(0, len(data), 160)]


async def test_channel_is_the_ivr_protocol(harness: tuple[Harness, SipServer],
                                           phone: PyPhone) -> None:
    h, _ = harness

    async def handler(channel: SipChannel) -> None:
        h.results["is_channel"] = isinstance(channel, Channel)
        await channel.answer()

    h.handler = handler
    resp = await phone.call()
    assert resp.status == 200
    await asyncio.wait_for(h.finished.wait(), 5)
    assert h.results["is_channel"] is True
    bye = await phone.next_sip()
    assert getattr(bye, "method", None) == "BYE"  # the handler returned: we hang up


async def test_record_reorders_fills_loss_and_stops_on_terminator(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness
    started = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        started.set()
        h.results["rec"] = await channel.record(max_seconds=10, terminators="#")

    h.handler = handler
    await phone.call()
    await asyncio.wait_for(started.wait(), 5)
    packets = frames(1.0)  # 50 frames
    order = list(range(50))
    order[10], order[11] = order[11], order[10]  # swapped
    order.remove(30)  # lost
    for seq in order:
        phone.send_rtp(seq, packets[seq])
        await asyncio.sleep(0.001)
    await phone.send_dtmf("#", seq=50, ts=50 * 160)
    await asyncio.wait_for(h.finished.wait(), 5)
    audio, reason, _ = h.results["rec"]  # type: ignore[misc]
    assert reason == "#"
    expected = g711.ulaw_decode(b"".join(packets))
    assert len(audio) == len(expected)
    lost = slice(30 * 160, 31 * 160)
    assert not audio[lost].any()
    keep = np.ones(len(expected), dtype=bool)
    keep[lost] = False
    np.testing.assert_array_equal(audio[keep], expected[keep])


async def test_record_ends_on_silence_and_trims_it(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness
    started = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        started.set()
        h.results["rec"] = await channel.record(max_seconds=10, silence_seconds=0.4)

    h.handler = handler
    await phone.call()
    await asyncio.wait_for(started.wait(), 5)
    loud = frames(0.4)
    quiet = [bytes([0xFF]) * 160] * 40
    for seq, payload in enumerate(loud + quiet):
        phone.send_rtp(seq, payload)
        await asyncio.sleep(0.02)
    await asyncio.wait_for(h.finished.wait(), 5)
    audio, reason, _ = h.results["rec"]  # type: ignore[misc]
    assert reason == "silence"
    assert 0.3 * 8000 <= len(audio) <= 0.45 * 8000


async def test_record_keeps_audio_when_caller_hangs_up(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, server = harness
    started = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        h.results["channel"] = channel
        started.set()
        h.results["rec"] = await channel.record(max_seconds=10)
        h.results["reason"] = channel.hangup_reason

    h.handler = handler
    await phone.call()
    await asyncio.wait_for(started.wait(), 5)
    for seq, payload in enumerate(frames(0.5)):
        phone.send_rtp(seq, payload)
    rtp = h.results["channel"].rtp  # type: ignore[attr-defined]
    await until(lambda: rtp.stats.received >= 25, what="the 25 frames reached the server")
    phone.send_request("BYE", phone.uri)
    await asyncio.wait_for(h.finished.wait(), 5)
    audio, reason, _ = h.results["rec"]  # type: ignore[misc]
    assert reason == "hangup"
    assert len(audio) == 4000  # the reorder buffer was flushed: nothing lost
    assert h.results["reason"] == "remote-bye"
    assert server.channels == {}


async def test_record_keeps_audio_still_unread_when_the_bye_is_read(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    """The caller's last frames and its BYE leave together; the server reads RTP only every
    few frames (later when its loop is busy, as at 500 calls) but SIP at once. Audio still in
    the RTP socket when the BYE is handled belongs to the message: none of it is dropped."""
    h, server = harness
    started = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        started.set()
        h.results["rec"] = await channel.record(max_seconds=10)

    h.handler = handler
    await phone.call()
    await asyncio.wait_for(started.wait(), 5)
    for seq, payload in enumerate(frames(1.0)):  # 50 frames in one burst, then hang up:
        phone.send_rtp(seq, payload)  # on loopback each is in the server's socket on return
    phone.send_request("BYE", phone.uri)
    assert (await phone.final_response()).status == 200
    await asyncio.wait_for(h.finished.wait(), 5)
    audio, reason, _ = h.results["rec"]  # type: ignore[misc]
    assert reason == "hangup"
    assert len(audio) == 8000
    assert server.channels == {}


async def test_bye_whose_200_was_lost_is_answered_200_again(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    """A lossy network drops our 200 to the caller's BYE: the phone retransmits the BYE
    after the call has ended and must get the 200 again (not 481), or it keeps the call open
    (sipp waits for it); the call ends once."""
    h, server = harness
    ended: list[str] = []
    started = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        started.set()
        h.results["rec"] = await channel.record(max_seconds=10)
        ended.append(str(channel.hangup_reason))

    h.handler = handler
    await phone.call()
    await asyncio.wait_for(started.wait(), 5)
    phone.send_request("BYE", phone.uri)
    first = await phone.final_response()  # "lost": the phone acts as if it never came
    await asyncio.wait_for(h.finished.wait(), 5)
    assert server.channels == {}
    for _ in range(3):  # T1, 2*T1, 4*T1 later: the same request each time
        phone.retransmit()
        again = await phone.final_response()
        assert (again.status, again.cseq) == (first.status, first.cseq) == (200, (2, "BYE"))
    phone.send_request("BYE", phone.uri)  # a new transaction for the ended dialog
    assert (await phone.final_response()).status == 481
    assert ended == ["remote-bye"]


async def test_play_is_paced_and_interrupted_by_a_digit(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        h.results["digit"] = await channel.play(tone(440, 5.0), interrupt_digits="5#")
        h.results["rest"] = await channel.get_digits(3, 0.5)

    h.handler = handler
    await phone.call()
    got = await phone.rtp_packets(25)
    seqs = [p.sequence for p in got]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    assert all(len(p.payload) == 160 and p.payload_type == 0 for p in got)
    seq = await phone.send_dtmf("1", seq=1, ts=1000)  # not an interrupt digit: discarded
    await phone.send_dtmf("5", seq=seq, ts=3000)
    await asyncio.wait_for(h.finished.wait(), 5)
    assert h.results["digit"] == "5"
    assert h.results["rest"] == ""


async def test_get_digits_from_info_and_rtp_with_terminator_and_timeout(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness

    channels: list[SipChannel] = []

    async def handler(channel: SipChannel) -> None:
        channels.append(channel)
        await channel.answer()
        h.results["first"] = await channel.get_digits(5, 10.0, terminators="#")
        h.results["second"] = await channel.get_digits(5, 0.3)

    h.handler = handler
    await phone.call()
    phone.send_request("INFO", phone.uri, b"Signal=4\r\nDuration=100\r\n",
                       content_type="application/dtmf-relay")
    phone.send_request("INFO", phone.uri, b"2", content_type="application/dtmf")
    # both INFO digits are in before the RTP ones are sent (they travel on other sockets)
    await until(lambda: channels and channels[0].digits_received >= 2, what="the INFO digits")
    seq = await phone.send_dtmf("7", seq=1, ts=1000)
    await phone.send_dtmf("#", seq=seq, ts=3000)
    await asyncio.wait_for(h.finished.wait(), 5)
    assert h.results["first"] == "427"
    assert h.results["second"] == ""


async def test_hold_reinvite_stops_our_audio(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness
    held = asyncio.Event()

    channels: list[SipChannel] = []

    async def handler(channel: SipChannel) -> None:
        channels.append(channel)
        await channel.answer()
        await held.wait()
        h.results["media"] = channel.media

    h.handler = handler
    await phone.call()
    await phone.rtp_packets(3)
    phone.send_request("INVITE", phone.uri, phone.offer("0", direction="sendonly"))
    resp = await phone.final_response()
    assert resp.status == 200
    assert b"a=recvonly" in resp.body
    phone.send_request("ACK", phone.uri, cseq=phone.cseq)
    rtp = channels[0].rtp
    assert rtp is not None
    # what was sent before the hold took effect has arrived once two frames were withheld
    await until(lambda: rtp.stats.withheld >= 2, what="the hold took effect")
    phone.drain_rtp()
    withheld = rtp.stats.withheld
    await until(lambda: rtp.stats.withheld >= withheld + 10, what="ten more frames' time")
    assert phone.drain_rtp() == 0
    held.set()
    await asyncio.wait_for(h.finished.wait(), 5)
    assert h.results["media"].on_hold  # type: ignore[attr-defined]


async def test_pcma_and_symmetric_rtp_latching(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness
    done = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        await done.wait()

    h.handler = handler
    await phone.call(codecs="8")
    assert b"RTP/AVP 8 101" in phone.answer_sdp
    # media from a different port than the SDP said (NAT): we must answer there
    loop = asyncio.get_running_loop()
    other = PyPhone("127.0.0.1", phone.server)
    await other.open()
    try:
        other.remote_rtp = phone.remote_rtp
        for seq in range(3):
            other.send_rtp(seq, bytes([0xD5]) * 160, pt=8)
        got = await other.rtp_packets(3)
        assert {p.payload_type for p in got} == {8}
    finally:
        other.close()
        done.set()
    assert loop.is_running()


async def test_ipv6_call() -> None:
    h = Harness()
    results: dict[str, object] = {}
    started = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        started.set()
        results["rec"] = await channel.record(max_seconds=5, terminators="#")

    h.handler = handler
    settings = SipSettings(host="::1", port=0, rtp_ports=(35000, 35998))
    async with SipServer(settings, h) as server:
        p = PyPhone("::1", server.address)
        await p.open()
        try:
            resp = await p.call()
            assert isinstance(resp, SipResponse)
            assert resp.status == 200
            assert b"c=IN IP6 ::1" in resp.body
            await asyncio.wait_for(started.wait(), 5)
            for seq, payload in enumerate(frames(0.2)):
                p.send_rtp(seq, payload)
            await p.send_dtmf("#", seq=20, ts=20 * 160)
            await asyncio.wait_for(h.finished.wait(), 5)
        finally:
            p.close()
    audio, reason, _ = results["rec"]  # type: ignore[misc]
    assert reason == "#"
    assert len(audio) == 1600


async def test_transfer_answered_call_with_refer(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        h.results["ok"] = await channel.transfer("sip:operator@127.0.0.1:5999")
        await channel.hangup_event.wait()

    h.handler = handler
    await phone.call()
    refer = await phone.next_sip()
    assert isinstance(refer, SipRequest)
    assert refer.method == "REFER"
    assert refer.headers.get("Refer-To") == "<sip:operator@127.0.0.1:5999>"
    phone.respond(refer, 202, "Accepted")
    phone.send_request("NOTIFY", phone.uri, b"SIP/2.0 200 OK\r\n",
                       content_type="message/sipfrag",
                       extra="Event: refer\r\nSubscription-State: terminated\r\n")
    ok = await phone.final_response()
    assert ok.status == 200
    phone.send_request("BYE", phone.uri)  # the transferee leaves us once connected
    await asyncio.wait_for(h.finished.wait(), 5)
    assert h.results["ok"] is True


async def test_transfer_before_answer_is_a_302(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness

    async def handler(channel: SipChannel) -> None:
        h.results["ok"] = await channel.transfer("sip:operator@127.0.0.1:5999")

    h.handler = handler
    resp = await phone.call()
    assert resp.status == 302
    assert resp.headers.get("Contact") == "<sip:operator@127.0.0.1:5999>"
    await asyncio.wait_for(h.finished.wait(), 5)
    assert h.results["ok"] is True


async def test_silent_phone_is_hung_up_after_rtp_timeout() -> None:
    h = Harness()
    results: dict[str, object] = {}

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        results["rec"] = await channel.record(max_seconds=10)
        results["reason"] = channel.hangup_reason

    h.handler = handler
    settings = SipSettings(port=0, rtp_ports=(35000, 35998), rtp_timeout=0.3)
    async with SipServer(settings, h) as server:
        p = PyPhone("127.0.0.1", server.address)
        await p.open()
        try:
            await p.call()
            bye = await p.next_sip()
            assert getattr(bye, "method", None) == "BYE"
            await asyncio.wait_for(h.finished.wait(), 5)
        finally:
            p.close()
    assert results["reason"] == "local-bye"
    assert results["rec"][1] == "hangup"  # type: ignore[index]


async def test_type_ahead_digits_and_play(
    harness: tuple[Harness, SipServer], phone: PyPhone
) -> None:
    h, _ = harness
    first, second = asyncio.Event(), asyncio.Event()

    channels: list[SipChannel] = []

    async def handler(channel: SipChannel) -> None:
        channels.append(channel)
        await channel.answer()
        await first.wait()
        h.results["r1"] = await channel.play(tone(440, 0.2), "#")  # "7" waits: no interrupt
        h.results["r2"] = await channel.get_digits(1, 0.5)
        await second.wait()
        h.results["r3"] = await channel.play(tone(440, 5.0), "#")  # "1#" waiting: ends at once
        h.results["r4"] = await channel.get_digits(1, 0.2)

    h.handler = handler
    await phone.call()
    seq = await phone.send_dtmf("7", seq=1, ts=1000)
    await until(lambda: channels and channels[0].digits_received == 1, what="7 buffered")
    first.set()
    await until(lambda: "r2" in h.results, what="the first play and get_digits")
    seq = await phone.send_dtmf("1", seq=seq, ts=3000)
    await phone.send_dtmf("#", seq=seq, ts=5000)
    await until(lambda: channels[0].digits_received == 3, what="1# buffered")
    second.set()
    await asyncio.wait_for(h.finished.wait(), 5)
    assert [h.results[k] for k in ("r1", "r2", "r3", "r4")] == [None, "7", "#", ""]


async def test_call_limit_answers_503_and_stats_count() -> None:
    h = Harness()
    release = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        await release.wait()

    h.handler = handler
    settings = SipSettings(port=0, rtp_ports=(35000, 35998), max_calls=1)
    async with SipServer(settings, h) as server:
        first, second = (PyPhone("127.0.0.1", server.address) for _ in range(2))
        await first.open()
        await second.open()
        try:
            assert (await first.call()).status == 200
            busy = await second.call()
            assert busy.status == 503
            assert busy.headers.get("Retry-After") == "5"
            await first.rtp_packets(2)
            stats = server.stats()
            assert stats["active_calls"] == 1
            assert stats["rtp_packets_sent"] >= 2
        finally:
            release.set()
            first.close()
            second.close()
