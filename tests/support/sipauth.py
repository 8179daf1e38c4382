"""A SIP digest client that guesses: SUBSCRIBE from a chosen loopback source address, answer
the 401 with a password, report the final status. Used by the lockout tests and by
bench/auth_guess.py (traffic to 127.0.0.0/8 only)."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from typing import cast

from imapvm.telephony.sip.digest import digest_response, parse_auth_params
from imapvm.telephony.sip.message import SipResponse, parse_message


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:  # type: ignore[override]
        self.queue.put_nowait(data)


class DigestGuesser:
    """One source address (127.x.y.z) trying passwords for one mailbox."""

    def __init__(self, source: str, server: tuple[str, int], mailbox: str = "1234",
                 algorithm: str = "SHA-256") -> None:
        if not ipaddress.ip_address(source).is_loopback or not ipaddress.ip_address(
                server[0]).is_loopback:
            raise ValueError("guessing traffic stays on 127.0.0.0/8")
        self.source, self.server, self.mailbox, self.algorithm = source, server, mailbox, algorithm
        self.inbox = _Inbox()
        self._n = 0

    async def open(self) -> DigestGuesser:
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: self.inbox, local_addr=(self.source, 0))
        return self

    def close(self) -> None:
        if self.inbox.transport is not None:
            self.inbox.transport.close()

    def _send(self, call_id: str, cseq: int, authorization: str = "") -> None:
        assert self.inbox.transport is not None
        port = self.inbox.transport.get_extra_info("sockname")[1]
        uri = f"sip:{self.mailbox}@{self.server[0]}:{self.server[1]}"
        lines = [
            f"SUBSCRIBE {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.source}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.mailbox}@{self.source}>;tag={call_id[:8]}",
            f"To: <sip:{self.mailbox}@{self.server[0]}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} SUBSCRIBE",
            f"Contact: <sip:{self.mailbox}@{self.source}:{port}>",
            "Event: message-summary",
            "Accept: application/simple-message-summary",
            "Expires: 60",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        self.inbox.transport.sendto(data, self.server)

    async def _final(self, within: float) -> SipResponse | None:
        try:
            async with asyncio.timeout(within):
                while True:
                    msg = parse_message(await self.inbox.queue.get())
                    if isinstance(msg, SipResponse) and msg.status >= 200:
                        return msg
        except TimeoutError:
            return None  # dropped (rate limited)

    async def attempt(self, password: str, within: float = 2.0) -> int:
        """Final status of one guess: 200 right, 401 wrong, 403 locked, 0 no answer. A 401
        with ``stale=true`` is answered again with the new nonce, as phones do."""
        self._n += 1
        call_id = f"guess-{self.source}-{self._n}-{secrets.token_hex(4)}"
        self._send(call_id, 1)
        challenge = await self._final(within)
        for cseq in (2, 4):
            if challenge is None:
                return 0
            if challenge.status != 401:
                return challenge.status
            challenge = await self._answer(challenge, password, call_id, cseq, within)
            if challenge is None or challenge.status != 401 or "stale=true" not in (
                    challenge.headers.get("WWW-Authenticate") or ""):
                break
        return challenge.status if challenge is not None else 0

    async def _answer(self, challenge: SipResponse, password: str, call_id: str, cseq: int,
                      within: float) -> SipResponse | None:
        offered = challenge.headers.get_all("WWW-Authenticate")
        www = next((c for c in offered if f"algorithm={self.algorithm}" in c), offered[0])
        p = parse_auth_params(www)
        uri = f"sip:{self.mailbox}@{self.server[0]}:{self.server[1]}"
        cnonce = secrets.token_hex(4)
        algorithm = p.get("algorithm", "MD5")
        response = digest_response(self.mailbox, p["realm"], password, "SUBSCRIBE", uri,
                                   p["nonce"], "auth", "00000001", cnonce, algorithm)
        self._send(call_id, cseq, (
            f'Digest username="{self.mailbox}", realm="{p["realm"]}", nonce="{p["nonce"]}", '
            f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, '
            f'nc=00000001, cnonce="{cnonce}"'))
        return await self._final(within)
