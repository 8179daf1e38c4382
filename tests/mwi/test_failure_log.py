"""An IMAP outage with many watched accounts is one log line per server, not one per mailbox
per retry: 10,000 watchers retrying every few seconds would otherwise flood the log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from imapvm.mwi.engine import MwiEngine
from imapvm.storage.base import ConnectionLimiter, MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import Timeouts
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.watching import WatchOptions
from tests.mwi.helpers import Recorder
from tests.support.net import free_port


def test_failures_are_counted_and_reported_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    limiter = ConnectionLimiter(10)
    with caplog.at_level(logging.WARNING, logger="imapvm.storage.base"):
        for i in range(100):
            limiter.connection_failed("imap.example", 143, f"u{i}@imap.example", "refused")
        limiter.connection_failed("other.example", 143, "x@other.example", "refused")
        limiter.connection_ok("imap.example", 143)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "imap.example:143: watcher connection lost or refused (u0@imap.example" in lines[0]
    assert "other.example:143" in lines[1]
    assert "succeed again (99 failure(s) since the last report)" in lines[2]
    assert limiter.failures_total == 101


async def test_many_watchers_on_a_dead_server_log_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there: every connection is refused at once
    boxes = [MailboxRef(str(100 + i), "default") for i in range(30)]
    store = ImapStore(lambda box: ImapSettings(
        host="127.0.0.1", port=port, user=f"user{box.mailbox}", password="pw",
        vm_tag=box.mailbox, context=box.context, timeouts=Timeouts(open=2, read=2, close=1)))
    engine = MwiEngine(lambda _box: store, [Recorder()],
                       WatchOptions(backoff_initial=0.02, backoff_max=0.05))
    await engine.start()
    try:
        with caplog.at_level(logging.WARNING):
            for box in boxes:
                await engine.watch(box)
            async with asyncio.timeout(30):
                while engine.limiter.failures_total < 5 * len(boxes):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
    finally:
        await engine.stop()
        await store.aclose()
    lines = [r.getMessage() for r in caplog.records if "watcher connection" in r.getMessage()]
    assert len(lines) == 1, lines
