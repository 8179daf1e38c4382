"""A full RTP port pool (issue 17, item 20): the next call gets 503 with Retry-After and one
clear log line, not an `Address already in use` traceback and a call left ringing."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from imapvm.channel import ChannelHangup
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.rtp.session import PortPool
from imapvm.telephony.server import SipServer, SipSettings

from .pyphone import PyPhone

pytestmark = pytest.mark.timeout(30)


def free_even_port() -> int:
    """An even port below the kernel's ephemeral range, free now: no socket bound to port 0
    (the phones', the server's own SIP socket) can take it before the first call does."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(min(low, 30000) - 2000, min(low, 30000), 2):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free even port below the ephemeral range")


def test_one_even_port_per_call() -> None:
    """README: one port per call, the even one; the odd one above is left for RTCP."""
    pool = PortPool(10000, 10009)
    assert len(pool) == 5
    assert sorted(pool.candidates()) == [10000, 10002, 10004, 10006, 10008]


async def test_full_pool_answers_503_with_one_clear_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    ended: list[str] = []

    async def handler(channel: SipChannel) -> None:
        try:
            await channel.answer()
            await release.wait()
        except ChannelHangup as exc:
            ended.append(str(exc))
            raise

    port = free_even_port()
    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(port, port + 1))
    caplog.set_level(logging.INFO)
    async with SipServer(settings, handler) as server:
        first, second = (PyPhone("127.0.0.1", server.address) for _ in range(2))
        await first.open()
        await second.open()
        try:
            assert (await first.call()).status == 200
            refused = await second.call()
            assert refused.status == 503
            assert refused.headers.get("Retry-After") == "5"
        finally:
            release.set()
            first.close()
            second.close()
    assert ended == ["no RTP port"]
    lines = [r.getMessage() for r in caplog.records if "with 503" in r.getMessage()]
    assert len(lines) == 1
    assert f"all 1 RTP ports of {port}-{port + 1} on 127.0.0.1 are in use" in lines[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Address already in use" not in caplog.text
