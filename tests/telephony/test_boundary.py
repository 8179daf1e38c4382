"""The asyncio boundary of the SIP core: a bug inside the core is logged with its traceback,
counted (``imapvm_sip_internal_errors_total``), and the server keeps answering."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from imapvm.metrics import Registry
from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.sip.core import SipCore
from imapvm.telephony.sip.message import SipResponse, parse_message

from .sipmsgs import request

pytestmark = pytest.mark.timeout(20)


async def test_core_bug_is_logged_counted_and_survived(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(channel: object) -> None:
        raise AssertionError("no calls in this test")

    registry = Registry()
    counter = registry.counter("imapvm_sip_internal_errors_total", "bugs")
    failed = asyncio.Event()

    def on_error() -> None:
        counter.inc()
        failed.set()

    original = SipCore.receive

    def broken(self: SipCore, data: bytes, *args: object, **kw: object) -> None:
        if b"BOOM" in data:
            raise RuntimeError("a bug in the core")
        original(self, data, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(SipCore, "receive", broken)
    loop = asyncio.get_running_loop()
    async with SipServer(SipSettings(port=0), handler, on_internal_error=on_error) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        try:
            with caplog.at_level(logging.ERROR, "imapvm.telephony.server"):
                sock.sendto(request("OPTIONS", branch="z9hG4bK-BOOM"), server.address)
                await asyncio.wait_for(failed.wait(), 10)
            assert server.internal_errors == 1
            assert server.stats()["sip_internal_errors"] == 1
            assert "imapvm_sip_internal_errors_total 1" in registry.render()
            assert "a bug in the core" in caplog.text
            assert "Traceback" in caplog.text
            # the next datagram is answered as usual
            port = sock.getsockname()[1]
            options = request("OPTIONS", branch="z9hG4bK-ok").replace(
                b"10.0.0.1:5062", f"127.0.0.1:{port}".encode())
            sock.sendto(options, server.address)
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 10)
            answer = parse_message(data)
            assert isinstance(answer, SipResponse)
            assert answer.status == 200
        finally:
            sock.close()
