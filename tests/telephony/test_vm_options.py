"""Everything VoiceMail(), VoiceMailMain() and VoiceMailPlayMsg() take, over SIP: the URI
convention and the X-Imapvm-Options header drive the real flows of the running server (SIP over
loopback with the Python phone, deposits through the outbox into the file spool).

Prompts are 200 ms silences (an empty sounds directory) so the flows run fast; which prompts a
flow chose is observed on the channel, what it stored is read back from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from imapvm.audio import g711, g722
from imapvm.audio.prompt_loader import PromptLoader
from imapvm.config.loader import load
from imapvm.server import VoicemailServer, default_flows
from imapvm.storage.base import Folder, MailboxRef
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.sip.message import SipRequest
from tests.support.net import free_port_udp_and_tcp

from .pyphone import PyPhone

pytestmark = [pytest.mark.timeout(60)]

CONF = """[general]
format=wav16|gsm
minsecs=0

[default]
1234 => 4242,Alice Example
1235 => 4343,Bob Example
2000 => 1111,Default Two

[sales]
2000 => 2222,Sales Two
"""


@dataclass
class Observed:
    """What the flows did on the line: prompt names (audio as <N samples>), the recording."""

    played: list[str] = field(default_factory=list)
    recording: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    prompt: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_played(self, name: str, within: float = 15) -> None:
        async with asyncio.timeout(within):
            while name not in self.played:
                self.prompt.clear()
                await self.prompt.wait()


@dataclass
class Harness:
    server: VoicemailServer
    seen: Observed
    port: int

    def phone(self) -> PyPhone:
        return PyPhone("127.0.0.1", ("127.0.0.1", self.port))


def observe(seen: Observed):  # type: ignore[no-untyped-def]
    deposit, check = default_flows()
    assert check is not None

    def watch(channel: SipChannel) -> None:
        play, record = channel.play, channel.record

        async def watched_play(audio, interrupt_digits=""):  # type: ignore[no-untyped-def]
            seen.played.append(audio if isinstance(audio, str) else f"<{len(audio)} samples>")
            seen.prompt.set()
            return await play(audio, interrupt_digits)

        async def watched_record(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen.recording.set()
            return await record(*args, **kwargs)

        channel.play = watched_play  # type: ignore[method-assign]
        channel.record = watched_record  # type: ignore[method-assign]

    async def on_deposit(server: VoicemailServer, channel: SipChannel) -> None:
        watch(channel)
        try:
            await deposit(server, channel)
        finally:
            seen.ended.set()

    async def on_check(server: VoicemailServer, channel: SipChannel) -> None:
        watch(channel)
        try:
            await check(server, channel)
        finally:
            seen.ended.set()

    return on_deposit, on_check


@pytest.fixture
async def vm(tmp_path: Path) -> AsyncIterator[Harness]:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(CONF)
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    port = free_port_udp_and_tcp()
    loaded = load(conf, None, {
        "sip.listen": [f"127.0.0.1:{port}"], "http.listen": "",
        "paths.spool": str(tmp_path / "spool"), "paths.outbox": str(tmp_path / "outbox"),
        "paths.sounds": str(sounds), "sip.rtp_ports": "34000-34998",
        "sip.exit_uri": "sip:{extension}@127.0.0.1:5999;context={context}",
    })
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    seen = Observed()
    deposit, check = observe(seen)
    server = VoicemailServer(loaded, deposit_flow=deposit, check_flow=check)
    server.prompts = PromptLoader(sounds, extra=())  # every prompt: 200 ms of silence
    await server.start()
    try:
        yield Harness(server, seen, port)
    finally:
        await server.stop(grace=5)


TONE = (4000 * np.sin(2 * np.pi * 400 * np.arange(8000) / 8000)).astype(np.int16)


async def speak_and_hang_up(phone: PyPhone, seen: Observed, audio: np.ndarray = TONE,
                            g722_rate: bool = False) -> None:
    """Once the flow records: one second of the caller's audio (PCMU, or G.722 of 16 kHz
    ``audio``), then BYE."""
    await asyncio.wait_for(seen.recording.wait(), 15)
    if g722_rate:
        payload, pt = g722.encode(audio), 9
    else:
        payload, pt = g711.encode("PCMU", audio), 0
    for i in range(0, len(payload), 160):
        phone.send_rtp(1 + i // 160, payload[i : i + 160], pt=pt)
        await asyncio.sleep(0.02)  # pacing like a phone, not synchronisation
    phone.send_request("BYE", phone.uri)
    await asyncio.wait_for(seen.ended.wait(), 15)


async def delivered(h: Harness) -> None:
    assert await h.server.outbox.flush(10)


async def leave(h: Harness, user: str, params: str = "", extra: str = "") -> PyPhone:
    phone = h.phone()
    await phone.open()
    resp = await phone.call(user, codecs="0", params=params, extra=extra)
    assert resp.status == 200
    await speak_and_hang_up(phone, h.seen)
    await delivered(h)
    return phone


async def test_several_recipients_each_get_an_urgent_message(vm: Harness) -> None:
    phone = await leave(vm, "voicemail", ";target=sip:1234%40pbx;target=1235;vm-opts=U,s")
    phone.close()
    for number in ("1234", "1235"):
        listed = await vm.server.store.list(MailboxRef(number), Folder.URGENT)
        assert len(listed) == 1, number
        assert listed[0].header("x-asterisk-vm-flag") == "Urgent"
    assert "vm-intro" not in vm.seen.played  # s


async def test_header_options_priority_and_instructions(vm: Harness) -> None:
    phone = await leave(vm, "1234", extra="X-Imapvm-Options: vm-opts=P\r\n")
    phone.close()
    listed = await vm.server.store.list(MailboxRef("1234"), Folder.INBOX)
    assert [m.header("x-asterisk-vm-flag") for m in listed] == ["PRIORITY"]
    assert "vm-intro" in vm.seen.played  # no s: the instructions play


async def test_mailbox_in_another_context_and_gain(vm: Harness) -> None:
    phone = await leave(vm, "voicemail", ";target=2000%40sales;vm-opts=g(6)")
    phone.close()
    assert await vm.server.store.list(MailboxRef("2000"), Folder.INBOX) == []
    listed = await vm.server.store.list(MailboxRef("2000", "sales"), Folder.INBOX)
    assert len(listed) == 1
    audio = await vm.server.store.fetch_audio(MailboxRef("2000", "sales"), listed[0].ref)
    from imapvm.audio.formats import decode

    samples = decode(audio.message.data, audio.message.fmt).samples.astype(np.float64)
    sent = g711.decode("PCMU", g711.encode("PCMU", TONE)).astype(np.float64)
    ratio = np.sqrt(np.mean(samples**2)) / np.sqrt(np.mean(sent**2))
    assert 1.8 < ratio < 2.2  # +6 dB is twice the amplitude


@pytest.mark.parametrize(
    ("params", "default", "expected"),
    [
        ("", "unavailable", "vm-isunavail"),
        (";cause=486", "unavailable", "vm-isonphone"),
        (";vm-opts=b", "none", "vm-isonphone"),
        ("", "none", None),
    ],
)
async def test_greeting_follows_cause_options_and_default(
    vm: Harness, params: str, default: str, expected: str | None
) -> None:
    sip = replace(vm.server.loaded.settings.sip, default_greeting=default)  # type: ignore[arg-type]
    vm.server.loaded.settings = replace(vm.server.loaded.settings, sip=sip)
    phone = await leave(vm, "voicemail", ";target=1234" + params)
    phone.close()
    greeting = vm.seen.played[: vm.seen.played.index("vm-intro")]
    if expected is None:
        assert greeting == []  # VoiceMail() without b or u: no greeting at all
    else:
        assert greeting[0] == "vm-theperson"
        assert greeting[-1] == expected


async def test_exit_digit_into_a_context(vm: Harness) -> None:
    phone = vm.phone()
    await phone.open()
    try:
        resp = await phone.call("voicemail", codecs="0", params=";target=1234;vm-opts=d(sales)")
        assert resp.status == 200
        await phone.send_dtmf("5", seq=1, ts=160)
        refer = await phone.next_sip()
        assert isinstance(refer, SipRequest)
        assert refer.method == "REFER"
        assert refer.headers.get("Refer-To") == "<sip:5@127.0.0.1:5999;context=sales>"
        phone.respond(refer, 202, "Accepted")
        phone.send_request("NOTIFY", phone.uri, b"SIP/2.0 200 OK\r\n",
                           content_type="message/sipfrag",
                           extra="Event: refer\r\nSubscription-State: terminated\r\n")
        phone.send_request("BYE", phone.uri)
        await asyncio.wait_for(vm.seen.ended.wait(), 15)
    finally:
        phone.close()
    assert not vm.seen.recording.is_set()
    assert vm.seen.played == ["vm-theperson"]  # 5 ended the greeting at once
    assert await vm.server.store.list(MailboxRef("1234"), Folder.INBOX) == []


async def test_voicemailmain_for_a_mailbox_in_a_context_without_password(vm: Harness) -> None:
    phone = vm.phone()
    await phone.open()
    try:
        resp = await phone.call("*97", codecs="0", params=";target=2000%40sales;vm-opts=s")
        assert resp.status == 200
        await vm.seen.wait_played("vm-youhave")
        phone.send_request("BYE", phone.uri)
        await asyncio.wait_for(vm.seen.ended.wait(), 15)
    finally:
        phone.close()
    assert "vm-password" not in vm.seen.played
    assert "vm-login" not in vm.seen.played


async def test_play_message_n(vm: Harness) -> None:
    first = await leave(vm, "1234")
    first.close()
    vm.seen.ended.clear()
    vm.seen.played.clear()
    box = MailboxRef("1234")
    [_message] = await vm.server.store.list(box, Folder.INBOX)
    phone = vm.phone()
    await phone.open()
    try:
        resp = await phone.call("voicemail", codecs="0", params=";target=1234;vm-play=1")
        assert resp.status == 200
        await asyncio.wait_for(vm.seen.ended.wait(), 15)
        heard = await phone.rtp_packets(40)
    finally:
        phone.close()
    assert len(vm.seen.played) == 1
    assert vm.seen.played[0].endswith("samples>")
    assert int(vm.seen.played[0][1:].split()[0]) >= 7000  # about the second left
    pcm = g711.decode("PCMU", b"".join(p.payload for p in heard))
    assert np.abs(pcm).max() > 2000  # the tone, not silence
    counts = await vm.server.store.counts(box)
    assert (counts.new, counts.old) == (0, 1)  # played: heard


async def test_g722_message_is_stored_wideband_and_narrowband(vm: Harness, tmp_path: Path) -> None:
    """format=wav16|gsm: a G.722 caller's message keeps its 6 kHz tone in msg0000.wav16 (16 kHz),
    and the GSM copy is there as before."""
    import soundfile as sf

    t = np.arange(16000) / 16000
    wide_tone = (6000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)
    phone = vm.phone()
    await phone.open()
    resp = await phone.call("1234", codecs="0 9")
    assert resp.status == 200
    assert b"RTP/AVP 9" in resp.body
    await speak_and_hang_up(phone, vm.seen, wide_tone, g722_rate=True)
    await delivered(vm)
    phone.close()
    inbox = tmp_path / "spool" / "default" / "1234" / "INBOX"
    stored, rate = sf.read(str(inbox / "msg0000.wav16"), dtype="int16")
    assert rate == 16000
    spectrum = np.abs(np.fft.rfft(stored.astype(np.float64)))
    assert abs(float(np.argmax(spectrum[1:]) + 1) * 16000 / len(stored) - 6000) < 20
    assert (inbox / "msg0000.gsm").stat().st_size > 0


async def test_rtcp_loss_and_jitter_in_the_log_and_metrics(
    vm: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Five of the caller's packets never reach us and the caller's RR says it lost seven of
    ours: both are in the call's log line and in /metrics, and our last report (an SR with a
    block on the caller's stream) reaches the caller's RTCP socket."""
    import socket
    import struct

    from imapvm.telephony.rtp.packet import parse_rtp
    from imapvm.telephony.rtp.rtcp import RtcpState
    from tests.e2e.serve import eventually

    caplog.set_level("INFO", logger="imapvm.telephony.server")
    phone = vm.phone()
    await phone.open()
    rtcp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp_sock.bind(("127.0.0.1", 0))
    rtcp_sock.setblocking(False)
    try:
        resp = await phone.call("1234", codecs="0")
        assert resp.status == 200
        await asyncio.wait_for(vm.seen.recording.wait(), 15)
        ours = parse_rtp((await asyncio.wait_for(phone.rtp.queue.get(), 5))[0])
        assert ours is not None
        payload = g711.encode("PCMU", TONE)
        for i in range(50):
            if not 10 <= i < 15:  # five packets lost on the way
                phone.send_rtp(1 + i, payload[160 * i : 160 * i + 160])
            await asyncio.sleep(0.02)  # a phone's pacing
        assert phone.remote_rtp is not None
        report = RtcpState(0x1234, "phone@test")  # what the phone says about our stream
        report.on_rtp(ours.ssrc, 1, 0, 0.0)
        report.on_rtp(ours.ssrc, 9, 8 * 160, 0.16)  # 7 of ours missing
        rtcp_sock.sendto(report.build(0, 1.0), (phone.remote_rtp[0], phone.remote_rtp[1] + 1))
        [channel] = vm.server.sip.channels.values()  # type: ignore[union-attr]
        assert channel.rtp is not None
        rtcp = channel.rtp.rtcp
        assert rtcp is not None
        await eventually(lambda: rtcp.peer.reports == 1, 5)
        phone.send_request("BYE", phone.uri)
        await asyncio.wait_for(vm.seen.ended.wait(), 15)
        await eventually(lambda: "media: received 45, lost 5" in caplog.text, 5)
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(rtcp_sock, 2048), 5)
    finally:
        rtcp_sock.close()
        phone.close()
    first, pt = data[0], data[1]
    assert (first >> 6, pt) == (2, 200)  # an SR: we sent RTP
    assert first & 0x1F == 1  # with a report block on the phone's stream
    ssrc, _fraction, cumulative = struct.unpack_from("!IB3s", data, 28)
    assert ssrc == 0x1234
    assert int.from_bytes(cumulative, "big") == 5
    assert "the caller reports lost 7" in caplog.text
    metrics = vm.server.metrics.registry.render()
    assert "imapvm_rtp_lost_packets_total 5" in metrics
    assert "imapvm_rtp_peer_lost_packets_total 7" in metrics
    assert "imapvm_rtp_expected_packets_total 50" in metrics
    assert "imapvm_rtp_jitter_seconds_count 1" in metrics


async def test_g722_greeting_is_stored_wideband(vm: Harness, tmp_path: Path) -> None:
    """VoiceMailMain over G.722 (mailbox given, s): 0 options, 1 record the unavailable
    greeting, talk, #, 1 accept: unavail.wav16 keeps the 6 kHz tone at 16 kHz."""
    import soundfile as sf

    t = np.arange(16000) / 16000
    wide_tone = (6000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)
    phone = vm.phone()
    await phone.open()
    try:
        resp = await phone.call("*97", codecs="9", params=";target=1234;vm-opts=s")
        assert resp.status == 200
        await vm.seen.wait_played("vm-youhave")
        seq = await phone.send_dtmf("0", seq=1, ts=160)
        await vm.seen.wait_played("vm-options")
        seq = await phone.send_dtmf("1", seq=seq, ts=3200)
        await asyncio.wait_for(vm.seen.recording.wait(), 15)
        payload = g722.encode(wide_tone)
        for i in range(0, len(payload), 160):
            phone.send_rtp(seq, payload[i : i + 160], pt=9, ts=8000 + i)
            seq += 1
            await asyncio.sleep(0.02)  # a phone's pacing
        seq = await phone.send_dtmf("#", seq=seq, ts=8000 + len(payload) + 160)
        await vm.seen.wait_played("vm-review")
        await phone.send_dtmf("1", seq=seq, ts=8000 + len(payload) + 3200)
        await vm.seen.wait_played("vm-msgsaved")  # hanging up now keeps the greeting
        phone.send_request("BYE", phone.uri)
        await asyncio.wait_for(vm.seen.ended.wait(), 15)
    finally:
        phone.close()
    greeting = tmp_path / "spool" / "default" / "1234" / "unavail.wav16"
    stored, rate = sf.read(str(greeting), dtype="int16")
    assert rate == 16000
    spectrum = np.abs(np.fft.rfft(stored.astype(np.float64)))
    assert abs(float(np.argmax(spectrum[1:]) + 1) * 16000 / len(stored) - 6000) < 20
    assert (greeting.parent / "unavail.gsm").stat().st_size > 0
