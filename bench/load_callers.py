"""Callers for bench/sip_load.py that sipp 3.6 cannot be: G.722 and SRTP (SDES) phones.

Run as its own process (so the server's CPU figure holds only the server):
  python bench/load_callers.py HOST PORT CALLS RATE PROMPT TALK CODEC SRTP AUDIO
Each call: INVITE (RTP/AVP or RTP/SAVP with an a=crypto line), ACK, silence for PROMPT seconds
while the prompt plays, TALK seconds of 20 ms frames of AUDIO (raw 16-bit 8 kHz mono), BYE.
All calls share one 20 ms ticker. What the server sends is counted, not decoded.
Last line: ``callers_ok=N callers_failed=M``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import pylibsrtp  # noqa: E402

from imapvm.audio import g722  # noqa: E402
from imapvm.audio.g711 import ulaw_encode  # noqa: E402
from imapvm.telephony.rtp.packet import build_rtp  # noqa: E402

SUITE = "AES_CM_128_HMAC_SHA1_80"


class SipSocket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.inbox: dict[str, asyncio.Queue[str]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        text = data.decode("utf-8", "replace")
        m = re.search(r"(?im)^(?:Call-ID|i)\s*:\s*(\S+)", text)
        if m and m.group(1) in self.inbox:
            self.inbox[m.group(1)].put_nowait(text)


class Drain(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received += 1


class Call:
    def __init__(self, index: int, rtp: Drain, frames: list[bytes], pt: int,
                 srtp: pylibsrtp.Session | None) -> None:
        self.index, self.rtp, self.frames, self.pt, self.srtp = index, rtp, frames, pt, srtp
        self.ssrc = 0x10000 + index
        self.seq = 0
        self.remote: tuple[str, int] | None = None
        self.talking = False

    def send_frame(self) -> None:
        assert self.rtp.transport is not None
        assert self.remote is not None
        payload = self.frames[self.seq % len(self.frames)]
        packet = build_rtp(self.pt, self.seq & 0xFFFF, (self.seq * 160) & 0xFFFFFFFF, self.ssrc,
                           payload)
        if self.srtp is not None:
            packet = self.srtp.protect(packet)
        self.rtp.transport.sendto(packet, self.remote)
        self.seq += 1


def request(method: str, host: str, port: int, local: int, call_id: str, cseq: int,
            to: str, body: str = "") -> bytes:
    uri = f"sip:1234@{host}:{port}"
    extra = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            f"From: <sip:load@127.0.0.1:{local}>;tag={call_id}\r\n"
            f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:load@127.0.0.1:{local}>\r\nMax-Forwards: 70\r\n{extra}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()


async def transact(sip: SipSocket, call_id: str, message: bytes, server: tuple[str, int],
                   final: bool = True) -> str:
    """Send (retransmitting every 0.5 s, 20 times at most) until a final response arrives."""
    assert sip.transport is not None
    queue = sip.inbox[call_id]
    for _ in range(20):
        sip.transport.sendto(message, server)
        deadline = time.monotonic() + 0.5
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            status = re.match(r"SIP/2\.0 (\d{3})", text)
            if status and int(status.group(1)) >= 200:
                return text
            if status:  # provisional: stop retransmitting, keep waiting
                deadline = time.monotonic() + 30
    raise RuntimeError(f"no final response for {call_id}")


async def run(host: str, port: int, calls: int, rate: float, prompt: float, talk: float,
              codec: str, use_srtp: bool, audio: Path) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    pcm = np.frombuffer(await asyncio.to_thread(audio.read_bytes), dtype=np.int16)
    if codec == "g722":
        pt, name, payload = 9, "G722/8000", g722.encode(g722.upsample(pcm))
    else:
        pt, name, payload = 0, "PCMU/8000", ulaw_encode(pcm)
    frames = [payload[i:i + 160] for i in range(0, len(payload) - 159, 160)]
    sip_transport, sip = await loop.create_datagram_endpoint(SipSocket,
                                                             local_addr=("127.0.0.1", 0))
    sip.transport = sip_transport  # connection_made runs only on the next loop pass
    local = sip.transport.get_extra_info("sockname")[1]
    server = (host, port)
    active: list[Call] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        start = time.monotonic()
        tick = 0
        while not stop.is_set():
            for call in active:
                if call.talking:
                    call.send_frame()
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))

    async def one(index: int) -> bool:
        call_id = f"load{index}-{os.getpid()}"
        sip.inbox[call_id] = asyncio.Queue()
        rtp_transport, rtp = await loop.create_datagram_endpoint(Drain,
                                                                 local_addr=("127.0.0.1", 0))
        rtp.transport = rtp_transport
        rtp_port = rtp.transport.get_extra_info("sockname")[1]
        key = secrets.token_bytes(30)
        session = pylibsrtp.Session(policy=pylibsrtp.Policy(
            key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)) if use_srtp else None
        proto = "RTP/SAVP" if use_srtp else "RTP/AVP"
        crypto = (f"a=crypto:1 {SUITE} inline:{base64.b64encode(key).decode()}\r\n"
                  if use_srtp else "")
        sdp = (f"v=0\r\no=- {index} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp_port} {proto} {pt} 101\r\na=rtpmap:{pt} {name}\r\n"
               f"a=rtpmap:101 telephone-event/8000\r\n{crypto}a=sendrecv\r\n")
        call = Call(index, rtp, frames, pt, session)
        try:
            to = f"<sip:1234@{host}:{port}>"
            answer = await transact(sip, call_id, request("INVITE", host, port, local, call_id,
                                                          1, to, sdp), server)
            if not answer.startswith("SIP/2.0 200"):
                print(f"call {index}: {answer.splitlines()[0]}", file=sys.stderr)
                return False
            to_hdr = re.search(r"(?im)^(?:To|t)\s*:\s*(.*?)\r?$", answer)
            media = re.search(r"(?m)^m=audio (\d+) (\S+)", answer)
            assert to_hdr is not None
            assert media is not None
            if media.group(2) != proto:
                print(f"call {index}: answered {media.group(2)}", file=sys.stderr)
                return False
            call.remote = ("127.0.0.1", int(media.group(1)))
            assert sip.transport is not None
            sip.transport.sendto(request("ACK", host, port, local, call_id, 1,
                                         to_hdr.group(1)), server)
            active.append(call)
            await asyncio.sleep(prompt)
            call.talking = True
            await asyncio.sleep(talk)
            call.talking = False
            bye = await transact(sip, call_id, request("BYE", host, port, local, call_id, 2,
                                                       to_hdr.group(1)), server)
            return bye.startswith("SIP/2.0 200") and rtp.received > 0
        finally:
            if call in active:
                active.remove(call)
            rtp.transport.close()

    tick = asyncio.create_task(ticker())
    tasks = []
    for i in range(calls):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(1 / rate)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
    await tick
    for r in results:
        if isinstance(r, BaseException):
            print(f"call failed: {r}", file=sys.stderr)
    ok = sum(1 for r in results if r is True)
    return ok, calls - ok


def main() -> None:
    host, port, calls, rate, prompt, talk, codec, srtp, audio = sys.argv[1:10]
    ok, failed = asyncio.run(run(host, int(port), int(calls), float(rate), float(prompt),
                                 float(talk), codec, srtp == "1", Path(audio)))
    print(f"callers_ok={ok} callers_failed={failed}", flush=True)


if __name__ == "__main__":
    main()
