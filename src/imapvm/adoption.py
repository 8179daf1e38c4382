"""Adopting another node's outbox: what a dead node had accepted still gets delivered.

A node started with ``--adopt-outbox DIR`` watches DIR's lock (``storage.lease``). While the
owner lives the lock is held and this node never touches DIR. Once the owner is gone the lock
is free: this node takes it, turns the recordings the owner was making into partial messages
(``ivr.recovered``), delivers every pending deposit and queued notification e-mail through its
own store connections, and releases the lock again when DIR is empty, so that the owner (or
its replacement) can start on DIR again. Nothing is delivered twice: only the lock holder
works a directory, and each item is checked by Message-ID before a retried append.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Protocol

from imapvm.config.loader import LoadedConfig
from imapvm.ivr.recovered import deliver_unfinished
from imapvm.ivr.session import Session
from imapvm.notify.notifier import Notifier, mail_queue
from imapvm.notify.queue import Deleter
from imapvm.storage.lease import OutboxLock
from imapvm.storage.outbox import DepositTarget, Outbox
from imapvm.storage.recording import unfinished
from imapvm.storage.router import RoutingStore


class Node(Protocol):
    """What adoption uses of the running server (`server.VoicemailServer`): its own deposit
    path, notifier, store and session, so adopted items are delivered exactly as its own."""

    @property
    def loaded(self) -> LoadedConfig: ...

    @property
    def deposits(self) -> DepositTarget: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def store(self) -> RoutingStore: ...

    @property
    def session(self) -> Session: ...

    @property
    def _deleted_after_mail(self) -> Deleter: ...

log = logging.getLogger(__name__)


class AdoptedOutbox:
    """One adopted directory and the task that waits for, drains and releases it."""

    def __init__(self, directory: Path, server: Node, *, poll: float = 0.5) -> None:
        self.directory = Path(directory)
        self.server = server
        self.poll = poll
        self.lock = OutboxLock(self.directory)
        self.state = "waiting"
        #: Items (deposits and partial recordings) this node delivered from the directory.
        self.adopted_items = 0
        #: Monotonic time of the last takeover that found work (for health and benchmarks).
        self.taken_at: float | None = None

    def health(self) -> dict[str, object]:
        return {"state": self.state, "adopted_items": self.adopted_items}

    async def run(self) -> None:
        while True:
            if await asyncio.to_thread(self.lock.try_acquire):
                try:
                    await self._drain()
                finally:
                    self.lock.release()
                    self.state = "waiting"
            # The lock can only be polled: its release by a dead process is not an event here.
            await asyncio.sleep(self.poll)

    async def _drain(self) -> None:
        found = await asyncio.to_thread(unfinished, self.directory / "recording")
        outbox = Outbox(self.directory, self.server.deposits,
                        on_delivered=self.server.notifier.stored)
        mail = mail_queue(self.directory, lambda: self.server.loaded.settings.smtp,
                          self.server.store, self.server._deleted_after_mail)
        depth = await asyncio.to_thread(outbox.depth)
        if not found and depth == 0 and await asyncio.to_thread(mail.depth) == 0:
            return
        self.state = "delivering"
        self.taken_at = time.monotonic()
        log.warning("adopting outbox %s: %d deposit(s) and %d unfinished recording(s) of a "
                    "node that is gone", self.directory, depth, len(found))
        if found:
            self.adopted_items += await deliver_unfinished(self.server.session, found, outbox)
        self.adopted_items += depth
        tasks = [asyncio.create_task(outbox.run(), name=f"adopted {self.directory}"),
                 asyncio.create_task(mail.run(), name=f"adopted mail {self.directory}")]
        try:
            while not await outbox.flush(5.0):
                pass
            while not await mail.flush(5.0):
                pass
            log.info("adopted outbox %s delivered; released", self.directory)
        finally:
            outbox.stop()
            mail.stop()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
