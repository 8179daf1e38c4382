"""End to end with a real phone: baresip calls our server over loopback (test-infra.md §5)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from imapvm.audio import g711
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.server import SipServer, SipSettings
from tests.support.baresip import start_baresip
from tests.support.waiting import until

from .conftest import best_correlation, dominant_frequency, read_pcm, tone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def heard_frames(results: dict[str, object]) -> int:
    """RTP packets the server has received from the caller so far (0 before the answer)."""
    channel = results.get("channel")
    rtp = channel.rtp if isinstance(channel, SipChannel) else None
    return rtp.stats.received if rtp is not None else 0


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_baresip_call_audio_digits_and_what_it_hears(
    tmp_path: Path, caller_wav: Path, caller_wav_padded: Path, codec: str
) -> None:
    results: dict[str, object] = {}
    recorded = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        results["channel"] = channel
        results["target"] = channel.target
        results["caller"] = channel.caller
        results["codec"] = channel.media.encoding if channel.media else None
        results["record"] = await channel.record(max_seconds=20, terminators="#")
        recorded.set()
        results["digits"] = await channel.get_digits(3, 5.0, terminators="")
        await channel.play(tone(440, 1.5))
        await channel.hangup()

    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(32000, 32998))
    async with SipServer(settings, handler) as server:
        host, port = server.address
        phone = await start_baresip(tmp_path / "baresip", caller_wav_padded,
                                    dial=f"sip:1234@{host}:{port}", codec=codec)
        try:
            await phone.wait_event("CALL_ESTABLISHED")
            # the caller's file (4.95 s) has reached us, and 0.6 s of its padding after it
            await until(lambda: heard_frames(results) >= (4.95 + 0.6) / 0.02, 30,
                        "the caller's audio received")
            await phone.send_digit("#")
            await asyncio.wait_for(recorded.wait(), 5)
            for digit in "123":
                await asyncio.sleep(0.3)
                await phone.send_digit(digit)
            await phone.wait_event("CALL_CLOSED", within=15)
        finally:
            await phone.stop()

    audio, reason, _ = results["record"]  # type: ignore[misc]
    assert reason == "#"
    assert results["digits"] == "123"
    assert results["target"].mailbox == "1234"  # type: ignore[attr-defined]
    assert results["caller"].number == "caller"  # type: ignore[attr-defined]
    assert results["codec"] == codec
    source = read_pcm(caller_wav)
    reference = g711.decode(codec, g711.encode(codec, source))
    assert len(audio) >= len(source)
    correlation = best_correlation(reference, audio)
    print(f"{codec}: correlation with the caller's audio {correlation:.4f}")
    assert correlation > 0.9
    heard = read_pcm(phone.recordings[-1])
    loud = heard[np.abs(heard) > 1000]
    assert len(loud) > 8000 * 0.5
    assert abs(dominant_frequency(heard) - 440) < 10


async def test_baresip_registers_subscribes_and_shows_our_mwi(
    tmp_path: Path, caller_wav: Path
) -> None:
    from imapvm.telephony.message_summary import MessageSummary
    from tests.e2e.serve import eventually

    async def lookup(mailbox: str) -> MessageSummary:
        return MessageSummary(2, 8, 1, 2) if mailbox == "1234" else MessageSummary(0, 0)

    async def no_calls(channel: SipChannel) -> None:
        raise AssertionError("no call expected")

    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(33000, 33998))
    async with SipServer(settings, no_calls, mwi_lookup=lookup) as server:
        host, port = server.address
        phone = await start_baresip(
            tmp_path / "baresip", caller_wav,
            account=f"<sip:1234@{host}:{port}>;regint=600;mwi=yes;audio_codecs=PCMU")
        log = tmp_path / "baresip" / "stdout.log"
        try:
            await eventually(lambda: "Voice-Message: 2/8 (1/2)" in log.read_text(), 15)
            assert "Messages-Waiting: yes" in log.read_text()
            assert server.publish_mwi("1234", MessageSummary(0, 3)) >= 1
            await eventually(lambda: "Messages-Waiting: no" in log.read_text(), 10)
            assert "Voice-Message: 0/3" in log.read_text()
        finally:
            await phone.stop()


def _band_energy(pcm: np.ndarray, rate: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


@pytest.mark.parametrize("transport", ["udp", "tls", "tls+srtp"])
async def test_baresip_g722_wideband_call(tmp_path: Path, caller_wav: Path,
                                          transport: str) -> None:
    """baresip offers G.722 (with G.711): we take G.722, record at 16 kHz with the caller's
    content above 4 kHz intact, and the phone hears the message played back; over UDP, over TLS,
    and over TLS with SRTP (SDES) required."""
    import soundfile as sf

    from imapvm.audio import g722
    from imapvm.telephony.transport_tls import TlsSettings

    from .tls_support import make_cert

    speech = g722.upsample(read_pcm(caller_wav))
    t = np.arange(len(speech)) / 16000
    source = np.clip(speech.astype(np.float64) + 2500 * np.sin(2 * np.pi * 6000 * t),
                     -32768, 32767).astype(np.int16)
    padded = tmp_path / "caller16.wav"
    sf.write(padded, np.concatenate([source, np.zeros(20 * 16000, np.int16)]), 16000,
             subtype="PCM_16")
    results: dict[str, object] = {}
    recorded = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        results["channel"] = channel
        results["codec"] = channel.media.encoding if channel.media else None
        results["srtp"] = channel.media.srtp is not None if channel.media else None
        results["transport"] = channel.request.headers.get("Via")
        record = await channel.record(max_seconds=20, terminators="#")
        results["record"] = record
        recorded.set()
        await channel.play(record.audio)  # the message, heard back
        await channel.hangup()

    tls = None
    account = None
    extra = ""
    if transport.startswith("tls"):
        cert, key = make_cert(tmp_path / "certs", "imapvm.test")
        tls = TlsSettings(cert, key)
        srtp = ";mediaenc=srtp-mand" if transport == "tls+srtp" else ""
        account = ("<sip:caller@127.0.0.1;transport=tls>;regint=0;"
                   f"audio_codecs=PCMU,G722/16000/1;mwi=no{srtp}")
        extra = f"sip_cafile {cert}\nmodule srtp.so\n"
    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(32000, 32998), tls=tls,
                           tls_port=0, srtp="required" if transport == "tls+srtp" else "optional")
    async with SipServer(settings, handler) as server:
        host, port = server.address
        dial = f"sip:1234@{host}:{port}"
        if server.tls_address is not None:
            dial = f"sip:1234@{host}:{server.tls_address[1]};transport=tls"
        phone = await start_baresip(tmp_path / "baresip", padded, dial=dial,
                                    codec="PCMU,G722/16000/1", account=account,
                                    extra_config=extra)
        try:
            await phone.wait_event("CALL_ESTABLISHED")
            # the caller's audio has reached us, and 0.7 s of its padding after it
            await until(lambda: heard_frames(results) >= (len(source) / 16000 + 0.7) / 0.02,
                        30, "the caller's audio received")
            await phone.send_digit("#")
            await asyncio.wait_for(recorded.wait(), 5)
            await phone.wait_event("CALL_CLOSED", within=15)
        finally:
            await phone.stop()

    assert results["codec"] == "G722"
    assert results["srtp"] is (transport == "tls+srtp")
    assert f"SIP/2.0/{transport.split('+')[0].upper()}" in str(results["transport"])
    audio, reason, wide = results["record"]  # type: ignore[misc]
    assert reason == "#"
    assert wide is not None
    assert len(wide) == 2 * len(audio)
    reference = g722.decode(g722.encode(source))
    correlation = best_correlation(reference, wide)
    narrow = best_correlation(g722.downsample(reference), audio)
    print(f"G.722: correlation {correlation:.4f} at 16 kHz, {narrow:.4f} at 8 kHz")
    assert correlation > 0.9
    assert narrow > 0.8
    # the 6 kHz part of the caller's audio survived: wideband end to end
    assert _band_energy(wide, 16000, 5800, 6200) > 0.5 * _band_energy(source, 16000, 5800, 6200)
    heard, rate = sf.read(str(phone.recordings[-1]), dtype="int16")
    heard = heard if heard.ndim == 1 else heard[:, 0]
    assert rate == 16000
    back = best_correlation(audio, g722.downsample(heard))
    print(f"the message heard back: correlation {back:.4f}")
    assert back > 0.8
