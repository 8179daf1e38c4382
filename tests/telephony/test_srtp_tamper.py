"""Tampered SRTP is dropped, never played, and the call goes on: forged authentication tags,
flipped ciphertext, plain RTP slipped into an SRTP call, replays and runts are each refused and
counted (libsrtp on both sides; SDES over UDP with ``sdes_in_clear``, as a LAN test would)."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets

import numpy as np
import pylibsrtp
import pytest

from imapvm.audio.g711 import ulaw_encode
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.rtp.dtmf import build_event, event_code
from imapvm.telephony.rtp.packet import build_rtp, parse_rtp
from imapvm.telephony.server import SipServer, SipSettings

from .pyphone import PyPhone

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

SSRC = 0x5151


def session(key: bytes, inbound: bool, suite: str) -> pylibsrtp.Session:
    profile = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80 if suite.endswith("80")
               else pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32)
    return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, srtp_profile=profile, ssrc_type=(
        pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND)))


def tone(freq: float, amplitude: int, samples: int) -> np.ndarray:
    t = np.arange(samples) / 8000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def power_at(audio: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    index = round(freq * len(audio) / 8000)
    return float(spectrum[max(0, index - 3):index + 4].max())


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
async def test_tampered_srtp_is_dropped_and_counted_and_the_call_goes_on(
    suite: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="imapvm.telephony.server")
    results: dict[str, object] = {}
    done = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        results["record"] = await channel.record(max_seconds=10, silence_seconds=None,
                                                 terminators="#")
        assert channel.rtp is not None
        results["failures"] = channel.rtp.stats.extra.get("srtp_auth_failures", 0)
        results["failed"] = channel.rtp.failed
        await channel.play(tone(440, 4000, 1600))  # the caller still hears us afterwards
        done.set()
        await channel.hangup()

    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(37000, 37998), srtp="required",
                           sdes_in_clear=True)
    async with SipServer(settings, handler) as server:
        phone = PyPhone("127.0.0.1", server.address)
        await phone.open()
        try:
            our_key = secrets.token_bytes(30)
            port = phone._addr(phone.rtp)[1]
            offer = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                     f"t=0 0\r\nm=audio {port} RTP/SAVP 0 101\r\n"
                     "a=rtpmap:101 telephone-event/8000\r\n"
                     f"a=crypto:1 {suite} inline:{base64.b64encode(our_key).decode()}\r\n"
                     "a=sendrecv\r\n")
            uri = f"sip:1234@127.0.0.1:{server.address[1]}"
            phone.send_request("INVITE", uri, offer.encode(), cseq=1)
            resp = await phone.final_response()
            assert resp.status == 200
            body = resp.body.decode()
            assert re.search(r"(?m)^m=audio \d+ RTP/SAVP 0 101\r?$", body), body
            crypto = re.search(rf"(?m)^a=crypto:1 {suite} inline:(\S+)\r?$", body)
            assert crypto is not None, body
            their_key = base64.b64decode(crypto.group(1))
            media = re.search(r"(?m)^m=audio (\d+)", body)
            assert media is not None
            remote = ("127.0.0.1", int(media.group(1)))
            phone.to_header = resp.headers.get("To") or ""
            phone.send_request("ACK", uri, cseq=1)
            assert phone.rtp.transport is not None
            send = phone.rtp.transport.sendto

            tx = session(our_key, False, suite)
            good = ulaw_encode(tone(1000, 8000, 8000))  # 1 s the caller really says
            forged = ulaw_encode(tone(3000, 16000, 160))  # what an attacker slips in
            tampered = 0
            last_good = b""
            for i in range(50):
                if i % 5 == 0:
                    kind = (i // 5) % 5
                    fake = build_rtp(0, i, i * 160, SSRC, forged)
                    # the same key in a context of its own (ours may not protect seq i twice)
                    forger = session(our_key, False, suite)
                    if kind == 0:  # a forged authentication tag
                        wire = bytearray(forger.protect(fake))
                        wire[-1] ^= 0x01
                    elif kind == 1:  # ciphertext flipped in flight
                        wire = bytearray(forger.protect(fake))
                        wire[14] ^= 0x80
                    elif kind == 2:  # plain RTP into an SRTP call
                        wire = bytearray(fake)
                    elif kind == 3:  # a replay of the previous good packet
                        wire = bytearray(last_good)
                    else:  # a runt shorter than any header and tag
                        wire = bytearray(b"\x80\x00\x00")
                    send(bytes(wire), remote)
                    tampered += 1
                last_good = tx.protect(build_rtp(0, i, i * 160, SSRC, good[i * 160:i * 160 + 160]))
                send(last_good, remote)
                await asyncio.sleep(0.02)  # a phone's pacing
            seq, ts = 50, 50 * 160
            code = event_code("#")
            for step in range(1, 5):
                send(tx.protect(build_rtp(101, seq, ts, SSRC, build_event(code, False,
                                                                          160 * step),
                                          step == 1)), remote)
                seq += 1
                await asyncio.sleep(0.005)
            for _ in range(3):
                send(tx.protect(build_rtp(101, seq, ts, SSRC, build_event(code, True, 800))),
                     remote)
                seq += 1
            await asyncio.wait_for(done.wait(), 20)
            rx = session(their_key, True, suite)
            heard = []
            while not phone.rtp.queue.empty():
                data, _ = phone.rtp.queue.get_nowait()
                plain = parse_rtp(rx.unprotect(data))  # everything we get authenticates
                assert plain is not None
                heard.append(plain)
            for _ in range(100):  # the end-of-call lines follow the handler's hang-up
                if "failed authentication" in caplog.text:
                    break
                await asyncio.sleep(0.05)
        finally:
            phone.close()
    assert "SRTP: 10 packets failed authentication and were dropped" in caplog.text
    assert tampered == 10
    assert results["failed"] is None
    assert results["failures"] == tampered
    audio, reason, _wide = results["record"]  # type: ignore[misc]
    assert reason == "#"
    assert len(audio) >= 7000  # the real second, none of it lost to the forgeries
    assert power_at(audio, 3000) < 0.01 * power_at(audio, 1000)  # no forged audio played
    assert len(heard) >= 5
