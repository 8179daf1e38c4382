"""SIP transports: UDP datagrams and TCP streams in and out of the sans-I/O core, IPv4 or IPv6.

TCP is server-side only: we answer and send in-dialog requests on connections peers opened;
we never open one ourselves (unsolicited NOTIFY goes over UDP).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import cast

from .sip.kinds import SipTransport

log = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address], None]


class UdpSipTransport(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: DatagramHandler) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP error: %s", exc)  # ICMP port unreachable from a vanished peer

    def send(self, data: bytes, address: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, address)

    @property
    def local_address(self) -> Address:
        assert self.transport is not None
        sock = self.transport.get_extra_info("sockname")
        return str(sock[0]), int(sock[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_udp(host: str, port: int, on_datagram: DatagramHandler) -> UdpSipTransport:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpSipTransport(on_datagram), local_addr=(host, port)
    )
    return protocol


MessageHandler = Callable[[bytes, Address, SipTransport], None]
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)


class TcpSipTransport:
    """SIP over TCP (RFC 3261 §18.3): messages framed by Content-Length, one reader per
    connection, responses and in-dialog requests sent back on the connection they came from.

    A connection that sends an oversized or unframeable message is closed: on a stream there
    is no way to find the next message boundary after a framing error.
    """

    name: SipTransport = "TCP"

    def __init__(self, on_message: MessageHandler, max_message_bytes: int = 65535) -> None:
        self._on_message = on_message
        self._max = max_message_bytes
        self._server: asyncio.Server | None = None
        self._writers: dict[Address, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    @property
    def local_address(self) -> Address:
        assert self._server is not None
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = (str(peer[0]), int(peer[1]))
        self._writers[address] = writer
        try:
            while True:
                data = await self._read_message(reader)
                if data is None:
                    break
                self._on_message(data, address, self.name)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if self._writers.get(address) is writer:
                del self._writers[address]
            writer.close()

    async def _read_message(self, reader: asyncio.StreamReader) -> bytes | None:
        while True:  # keep-alive CRLFs between messages are skipped (RFC 5626 §3.5.1)
            head = (await reader.readuntil(b"\r\n\r\n")).lstrip(b"\r\n")
            if head:
                break
        if len(head) > self._max:
            log.info("closing TCP connection: header section too large")
            return None
        match = _CONTENT_LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        if len(head) + length > self._max:
            log.info("closing TCP connection: message too large")
            return None
        body = await reader.readexactly(length) if length else b""
        return head + body

    def send(self, data: bytes, address: Address) -> None:
        writer = self._writers.get(address)
        if writer is None or writer.is_closing():
            log.info("no TCP connection to %s:%d; message dropped", *address)
            return
        writer.write(data)

    async def close(self) -> None:
        for writer in list(self._writers.values()):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
