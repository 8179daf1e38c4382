"""A minimal scripted SIP phone in Python for fast, deterministic Channel tests.

Unlike baresip it can send RTP out of order, drop packets, repeat RFC 4733 end packets and
send INFO, which is what the media edge cases need. Speaks just enough SIP for one call.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import cast

from imapvm.telephony.rtp.dtmf import build_event, event_code
from imapvm.telephony.rtp.packet import RtpPacket, build_rtp, parse_rtp
from imapvm.telephony.sip.message import SipRequest, SipResponse, parse_message
from imapvm.telephony.sip.uri import format_host


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:  # type: ignore[override]
        self.queue.put_nowait((data, (str(addr[0]), int(addr[1]))))


@dataclass
class PyPhone:
    host: str
    server: tuple[str, int]
    sip: _Inbox = field(default_factory=_Inbox)
    rtp: _Inbox = field(default_factory=_Inbox)
    call_id: str = field(default_factory=lambda: secrets.token_hex(8))
    from_tag: str = field(default_factory=lambda: secrets.token_hex(4))
    to_header: str = ""
    cseq: int = 1
    remote_rtp: tuple[str, int] | None = None
    answer_sdp: bytes = b""
    requests: list[SipRequest] = field(default_factory=list)
    ssrc: int = 0x1234
    #: Route headers of the dialog when the answer came through a record-routing proxy.
    route: str = ""
    last_request: bytes = b""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self.sip, local_addr=(self.host, 0))
        await loop.create_datagram_endpoint(lambda: self.rtp, local_addr=(self.host, 0))

    def close(self) -> None:
        for inbox in (self.sip, self.rtp):
            if inbox.transport:
                inbox.transport.close()

    def _addr(self, inbox: _Inbox) -> tuple[str, int]:
        assert inbox.transport is not None
        name = inbox.transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    def _headers(self, method: str, cseq: int, to: str) -> str:
        host, port = self._addr(self.sip)
        return (
            f"Via: SIP/2.0/UDP {format_host(host)}:{port};branch=z9hG4bK{secrets.token_hex(6)}"
            ";rport\r\n"
            f"From: <sip:caller@{format_host(host)}>;tag={self.from_tag}\r\n"
            f"To: {to}\r\nCall-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:caller@{format_host(host)}:{port}>\r\nMax-Forwards: 70\r\n"
        )

    def send_request(self, method: str, uri: str, body: bytes = b"",
                     content_type: str = "application/sdp", cseq: int | None = None,
                     extra: str = "") -> None:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to = self.to_header or f"<{uri}>"
        head = self._headers(method, cseq, to) + extra
        if body:
            head += f"Content-Type: {content_type}\r\n"
        data = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        assert self.sip.transport is not None
        self.last_request = f"{method} {uri} SIP/2.0\r\n".encode() + data
        self.sip.transport.sendto(self.last_request, self.server)

    def retransmit(self) -> None:
        """Send the last request again, byte for byte (same branch): a UDP retransmission."""
        assert self.sip.transport is not None
        self.sip.transport.sendto(self.last_request, self.server)

    def respond(self, req: SipRequest, status: int, reason: str = "OK",
                extra: tuple[str, ...] = ()) -> None:
        """Answer a request the server sent us (BYE, REFER, NOTIFY, PUBLISH)."""
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in req.headers.get_all("Via")]
        for name in ("From", "To", "Call-ID", "CSeq"):
            lines.append(f"{name}: {req.headers.get(name)}")
        lines += list(extra)
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        assert self.sip.transport is not None
        self.sip.transport.sendto(data, self.server)

    def offer(self, codecs: str = "0 8", direction: str = "sendrecv") -> bytes:
        host, port = self._addr(self.rtp)
        family = "IP6" if ":" in host else "IP4"
        return (
            f"v=0\r\no=- 1 1 IN {family} {host}\r\ns=-\r\nc=IN {family} {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {codecs} 101\r\na=rtpmap:101 telephone-event/8000\r\n"
            f"a={direction}\r\n"
        ).encode()

    async def next_sip(self, within: float = 5.0) -> SipRequest | SipResponse:
        while True:
            data, _ = await asyncio.wait_for(self.sip.queue.get(), within)
            msg = parse_message(data)
            if isinstance(msg, SipRequest):
                self.requests.append(msg)
            if msg is not None:
                return msg

    async def final_response(self) -> SipResponse:
        while True:
            msg = await self.next_sip()
            if isinstance(msg, SipResponse) and msg.status >= 200:
                return msg

    async def call(self, user: str = "1234", codecs: str = "0 8", extra: str = "",
                   params: str = "") -> SipResponse:
        """INVITE (``params``: URI parameters such as ``;target=1234``), wait for the final
        response, ACK a 200."""
        uri = f"sip:{user}@{format_host(self.server[0])}:{self.server[1]}{params}"
        self.send_request("INVITE", uri, self.offer(codecs), cseq=1, extra=extra)
        resp = await self.final_response()
        if resp.status == 200:
            self.to_header = resp.headers.get("To") or ""
            self.answer_sdp = resp.body
            self.uri = uri
            routes = resp.headers.get_all("Record-Route")
            if routes:  # through a proxy (Kamailio): in-dialog requests follow the route set
                contact = resp.headers.get("Contact") or ""
                self.uri = contact.strip().split(">")[0].lstrip("<") if contact else uri
                self.route = "".join(f"Route: {r}\r\n" for r in reversed(routes))
            for line in resp.body.decode().splitlines():
                if line.startswith("m=audio"):
                    port = int(line.split()[1])
                if line.startswith("c=IN"):
                    host = line.split()[2]
            self.remote_rtp = (host, port)
            self.send_request("ACK", self.uri, cseq=1, extra=self.route)
        return resp

    def send_rtp(self, seq: int, payload: bytes, pt: int = 0, ts: int | None = None,
                 marker: bool = False) -> None:
        assert self.rtp.transport is not None
        assert self.remote_rtp is not None
        packet = build_rtp(pt, seq, ts if ts is not None else seq * 160, self.ssrc, payload,
                           marker)
        self.rtp.transport.sendto(packet, self.remote_rtp)

    async def send_dtmf(self, digit: str, seq: int, ts: int, steps: int = 4) -> int:
        """An RFC 4733 event: ``steps`` updates then three end packets. Returns the next seq."""
        code = event_code(digit)
        for i in range(1, steps + 1):
            self.send_rtp(seq, build_event(code, False, 160 * i), pt=101, ts=ts, marker=i == 1)
            seq += 1
            await asyncio.sleep(0.005)
        for _ in range(3):
            self.send_rtp(seq, build_event(code, True, 160 * (steps + 1)), pt=101, ts=ts)
            seq += 1
        return seq

    async def rtp_packets(self, count: int, within: float = 5.0) -> list[RtpPacket]:
        out = []
        while len(out) < count:
            data, _ = await asyncio.wait_for(self.rtp.queue.get(), within)
            packet = parse_rtp(data)
            if packet is not None:
                out.append(packet)
        return out

    def drain_rtp(self) -> int:
        n = 0
        while not self.rtp.queue.empty():
            self.rtp.queue.get_nowait()
            n += 1
        return n
