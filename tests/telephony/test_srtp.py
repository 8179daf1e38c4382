"""SRTP with SDES keys: an INVITE over TLS offering RTP/SAVP 9 0 101 with a=crypto is answered
RTP/SAVP, a=crypto and G.722, and audio flows encrypted both ways (libsrtp on our side of the
test too); "required" refuses a plain offer with 488; SDES over plain UDP is refused."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from pathlib import Path

import numpy as np
import pylibsrtp
import pytest

from imapvm.audio import g722
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.rtp.packet import build_rtp, parse_rtp
from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.transport_tls import TlsSettings

from .pyphone import PyPhone, _Inbox
from .tls_support import TlsClient, make_cert, request

pytestmark = [pytest.mark.timeout(60)]


def savp_offer(rtp_port: int, key: bytes, proto: str = "RTP/SAVP",
               suite: str = "AES_CM_128_HMAC_SHA1_80") -> str:
    crypto = f"a=crypto:1 {suite} inline:{base64.b64encode(key).decode()}\r\n"
    return (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} {proto} 9 0 101\r\na=rtpmap:9 G722/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n{crypto if proto == 'RTP/SAVP' else ''}"
            "a=sendrecv\r\n")


def policy(key: bytes, inbound: bool, suite: str) -> pylibsrtp.Policy:
    profile = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80 if suite.endswith("80")
               else pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32)
    return pylibsrtp.Policy(key=key, srtp_profile=profile, ssrc_type=(
        pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND))


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
async def test_invite_over_tls_with_sdes_gets_srtp_and_g722(tmp_path: Path, suite: str) -> None:
    cert, key = make_cert(tmp_path / "certs", "imapvm.test")
    results: dict[str, object] = {}
    done = asyncio.Event()
    t = np.arange(16000) / 16000
    heard_tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    said_tone = (8000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        results["record"] = await channel.record(max_seconds=3, silence_seconds=None,
                                                 terminators="#")
        await channel.play(g722.downsample(heard_tone))
        done.set()
        await channel.hangup()

    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(37000, 37998),
                           tls=TlsSettings(cert, key), tls_port=0, srtp="required")
    async with SipServer(settings, handler) as server:
        tls = server.tls_address
        assert tls is not None
        rtp = _Inbox()
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: rtp, local_addr=("127.0.0.1", 0))
        assert rtp.transport is not None
        rtp_port = rtp.transport.get_extra_info("sockname")[1]
        our_key = secrets.token_bytes(30)
        client = await TlsClient.connect(tls[1], ca=cert)
        uri = f"sip:1234@127.0.0.1:{tls[1]};transport=tls"
        client.send(request("INVITE", uri, client.local_port, "srtp1",
                            "Content-Type: application/sdp\r\n", savp_offer(rtp_port, our_key,
                                                                            suite=suite)))
        while True:
            answer = await client.message()
            if answer.startswith("SIP/2.0 200"):
                break
            assert answer.startswith("SIP/2.0 1")
        body = answer.split("\r\n\r\n", 1)[1]
        assert re.search(r"^m=audio (\d+) RTP/SAVP 9 101\r?$", body, re.M), body
        crypto = re.search(rf"^a=crypto:1 {suite} inline:(\S+)\r?$", body, re.M)
        assert crypto is not None, body
        their_key = base64.b64decode(crypto.group(1))
        assert len(their_key) == 30
        assert their_key != our_key
        server_rtp = ("127.0.0.1", int(re.search(r"^m=audio (\d+)", body, re.M).group(1)))
        to = re.search(r"(?im)^To: (.*)$", answer).group(1).strip()
        client.send(request("ACK", uri, client.local_port, "srtp1", "", cseq=1)
                    .replace(f"To: <{uri}>", f"To: {to}"))
        # the caller speaks (G.722, encrypted), then presses nothing: the recording hits 3 s
        tx = pylibsrtp.Session(policy=policy(our_key, False, suite))
        payload = g722.encode(said_tone)
        for i in range(0, len(payload), 160):
            rtp.transport.sendto(tx.protect(build_rtp(9, i // 160, i, 0x4242,
                                                      payload[i:i + 160])), server_rtp)
            await asyncio.sleep(0.02)  # a phone's pacing
        await asyncio.wait_for(done.wait(), 15)
        rx = pylibsrtp.Session(policy=policy(their_key, True, suite))
        packets = []
        while not rtp.queue.empty():
            data, _ = rtp.queue.get_nowait()
            assert parse_rtp(data) is not None
            plain = parse_rtp(rx.unprotect(data))
            assert plain is not None
            packets.append(plain)
        client.close()
        rtp.transport.close()
    assert {p.payload_type for p in packets} == {9}
    decoder = g722.G722Decoder()
    heard = np.concatenate([decoder.decode(p.payload) for p in packets])
    spectrum = np.abs(np.fft.rfft(heard.astype(np.float64)))
    assert abs(float(np.argmax(spectrum[1:]) + 1) * 16000 / len(heard) - 1000) < 20
    _audio, reason, wide = results["record"]  # type: ignore[misc]
    assert reason == "max"
    assert wide is not None
    spectrum = np.abs(np.fft.rfft(wide.astype(np.float64)))
    assert abs(float(np.argmax(spectrum[1:]) + 1) * 16000 / len(wide) - 6000) < 20


async def test_required_refuses_plain_offers_and_sdes_needs_tls(tmp_path: Path) -> None:
    async def no_call(channel: SipChannel) -> None:
        raise AssertionError("no call expected")

    for srtp, proto in (("required", "RTP/AVP"), ("optional", "RTP/SAVP")):
        settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(37000, 37998), srtp=srtp)
        async with SipServer(settings, no_call) as server:
            phone = PyPhone("127.0.0.1", server.address)
            await phone.open()
            try:
                uri = f"sip:1234@127.0.0.1:{server.address[1]}"
                offer = savp_offer(phone._addr(phone.rtp)[1], secrets.token_bytes(30), proto)
                phone.send_request("INVITE", uri, offer.encode(), cseq=1)
                resp = await phone.final_response()
                assert resp.status == 488, (srtp, proto)  # over plain UDP: keys never accepted
            finally:
                phone.close()
