"""UDP transport for SIP: datagrams in and out of the sans-I/O core, IPv4 or IPv6.

TCP (RFC 3261 §18.3 stream framing by Content-Length) is not implemented yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

log = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address], None]


class UdpSipTransport(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: DatagramHandler) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:  # type: ignore[override]
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
