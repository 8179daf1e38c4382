"""SIP over TCP: stream framing by Content-Length, keep-alives, oversized messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.sip.message import SipResponse, parse_message

from .sipmsgs import request

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def server() -> AsyncIterator[SipServer]:
    async def handler(channel: object) -> None:
        raise AssertionError("no calls in these tests")

    async with SipServer(SipSettings(port=0), handler) as srv:
        yield srv


async def read_response(reader: asyncio.StreamReader) -> SipResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    msg = parse_message(head)
    assert isinstance(msg, SipResponse)
    length = int(msg.headers.get("Content-Length") or 0)
    if length:
        await reader.readexactly(length)
    return msg


def tcp_options(n: int) -> bytes:
    return request("OPTIONS", branch=f"z9hG4bK-t{n}", cseq=n, rport=False).replace(
        b"SIP/2.0/UDP", b"SIP/2.0/TCP"
    )


async def test_pipelined_split_and_keepalive(server: SipServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        first, second, third = tcp_options(1), tcp_options(2), tcp_options(3)
        writer.write(b"\r\n\r\n" + first + second + third[:30])  # two and a half messages
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(third[30:])
        statuses = [(await read_response(reader)).cseq for _ in range(3)]
        assert statuses == [(1, "OPTIONS"), (2, "OPTIONS"), (3, "OPTIONS")]
    finally:
        writer.close()


async def test_oversized_message_closes_the_connection(server: SipServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        huge = tcp_options(1).replace(b"Content-Length: 0", b"Content-Length: 999999")
        writer.write(huge)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    # the server itself is fine
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(tcp_options(2))
        assert (await read_response(reader)).status == 200
    finally:
        writer.close()
