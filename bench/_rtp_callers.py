"""Callers for bench/sip_load.py when sipp cannot play the part (G.722, SRTP): N Python SIP
phones in this separate process (its CPU is not the server's), each INVITEs, listens through
the prompt, talks G.722 or G.711 for a while (SRTP-protected with SDES when asked), hangs up.

    python bench/_rtp_callers.py HOST PORT CALLS CODEC SRTP PROMPT TALK RATE
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pylibsrtp  # noqa: E402
from tests.telephony.pyphone import PyPhone  # noqa: E402

from imapvm.audio import g711, g722  # noqa: E402
from imapvm.telephony.rtp.packet import build_rtp  # noqa: E402
from imapvm.telephony.sip.errors import SipParseError  # noqa: E402
from imapvm.telephony.sip.message import SipRequest, SipResponse  # noqa: E402


class BenchPhone(PyPhone):
    """A PyPhone that skips datagrams which are not SIP: with hundreds of sockets in this
    process, one phone's SIP port is often another call's RTP port + 1, where the server
    rightly sends that call's RTCP (RFC 3550 §11)."""

    async def next_sip(self, within: float = 5.0) -> SipRequest | SipResponse:
        while True:
            try:
                return await super().next_sip(within)
            except SipParseError:
                continue


def offer(phone: PyPhone, pt: int, name: str, key: bytes | None) -> bytes:
    host, port = phone._addr(phone.rtp)
    proto = "RTP/SAVP" if key else "RTP/AVP"
    crypto = (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}\r\n"
              if key else "")
    return (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} {proto} {pt} 101\r\na=rtpmap:{pt} {name}/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n{crypto}a=sendrecv\r\n").encode()


async def one_call(host: str, port: int, codec: str, srtp: bool, prompt: float, talk: float,
                   frames: list[bytes], started: asyncio.Queue[float]) -> None:
    phone = BenchPhone("127.0.0.1", (host, port))
    await phone.open()
    pt, name = (9, "G722") if codec == "g722" else (0, "PCMU")
    key = secrets.token_bytes(30) if srtp else None
    uri = f"sip:1234@{host}:{port}"
    phone.send_request("INVITE", uri, offer(phone, pt, name, key), cseq=1)
    # Bounded as a whole: next_sip's own timeout restarts on every datagram, and another
    # call's RTCP lands here every few seconds.
    resp = await asyncio.wait_for(phone.final_response(), 32)
    if resp.status != 200:
        print(f"call refused: {resp.status}", file=sys.stderr)
        phone.close()
        return
    phone.to_header = resp.headers.get("To") or ""
    phone.uri = uri
    for line in resp.body.decode().splitlines():
        if line.startswith("m=audio"):
            phone.remote_rtp = (host, int(line.split()[1]))
    phone.send_request("ACK", uri, cseq=1)
    await started.put(time.monotonic())
    tx = pylibsrtp.Session(policy=pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)) if key else None
    await asyncio.sleep(prompt)
    assert phone.rtp.transport is not None
    assert phone.remote_rtp is not None
    t0 = time.monotonic()
    n = int(talk / 0.02)
    for i in range(n):
        packet = build_rtp(pt, i & 0xFFFF, i * 160, phone.ssrc, frames[i % len(frames)])
        phone.rtp.transport.sendto(tx.protect(packet) if tx else packet, phone.remote_rtp)
        phone.drain_rtp()
        delay = t0 + (i + 1) * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    phone.send_request("BYE", uri)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(phone.final_response(), 10)
    phone.close()


async def main() -> None:
    host, port, calls, codec, srtp, prompt, talk, rate = sys.argv[1:9]
    t = np.arange(16000 * 4) / 16000
    voice = (6000 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2)
    pcm16 = voice.astype(np.int16)
    if codec == "g722":
        data = g722.encode(pcm16)
        frames = [data[i : i + 160] for i in range(0, len(data), 160)]
    else:
        data = g711.encode("PCMU", g722.downsample(pcm16))
        frames = [data[i : i + 160] for i in range(0, len(data), 160)]
    started: asyncio.Queue[float] = asyncio.Queue()
    tasks = []
    for _ in range(int(calls)):
        tasks.append(asyncio.create_task(one_call(host, int(port), codec, srtp == "1",
                                                  float(prompt), float(talk), frames,
                                                  started)))
        await asyncio.sleep(1 / float(rate))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    # One call that failed (a lost INVITE or response: UDP, and no retransmission here) must
    # not end the others: each is reported, and the exit status says some failed.
    failed = [r for r in results if isinstance(r, BaseException)]
    for r in failed[:10]:
        print(f"call failed: {type(r).__name__} {r}", file=sys.stderr)
    if failed:
        print(f"{len(failed)}/{len(results)} calls failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
