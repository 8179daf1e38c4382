"""The Store's watch capability: how the MWI engine learns of changes without knowing the back end.

A store hands out watchers (`Store.watch_key` / `Store.new_watcher`): the IMAP back end one per
login identity, pushed by NOTIFY or IDLE (`storage/imap/watch.py`); the spool (and any store
without push) a `PollWatcher`. A watcher recounts the boxes it was given and reports to a
`CountsReceiver` (the MWI tracker), which decides what reaches the lamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from imapvm.storage.base import (
    BoxWatcher,
    ConnectionLimiter,
    Counts,
    CountsReceiver,
    MailboxRef,
    WatchMode,
    WatchOptions,
)

__all__ = [
    "BoxWatcher", "ConnectionLimiter", "CountsReceiver", "PollWatcher", "WatchMode",
    "WatchOptions", "Watcher",
]

log = logging.getLogger(__name__)

RETRY_DISCARDED = 0.2  # seconds


class Watcher:
    """A `BoxWatcher` base: the set of boxes, the wake-up event and the task."""

    mode: WatchMode = WatchMode.UNCONNECTED

    def __init__(self, receiver: CountsReceiver, options: WatchOptions, label: str) -> None:
        self.tracker = receiver
        self.options = options
        self.label = label
        self.boxes: set[MailboxRef] = set()
        self._dirty: set[MailboxRef] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stopping = False
        self.recounts = 0

    def add(self, box: MailboxRef) -> None:
        if box not in self.boxes:
            self.boxes.add(box)
            self.refresh(box)

    def remove(self, box: MailboxRef) -> None:
        self.boxes.discard(box)
        self._dirty.discard(box)

    def refresh(self, box: MailboxRef | None = None) -> None:
        """Recount `box` (or every box) soon."""
        self._dirty.update([box] if box is not None else self.boxes)
        self._wake.set()

    def _retry_later(self, box: MailboxRef) -> None:
        """A local change raced this count, which was discarded: count again shortly (not at
        once: the change may still be on its way to the server)."""
        asyncio.get_running_loop().call_later(RETRY_DISCARDED, self.refresh, box)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mwi-watch-{self.label}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.stopping = True
        while not task.done():  # cancel again if something on the way swallowed it
            task.cancel()
            await asyncio.wait([task], timeout=1)
        self.stopping = False

    async def _run(self) -> None:
        raise NotImplementedError


class CountingStore(Protocol):
    async def counts(self, box: MailboxRef) -> Counts: ...


class PollWatcher(Watcher):
    """Recounts every `pollfreq` seconds (and on `refresh`): for stores without push."""

    mode = WatchMode.POLL

    def __init__(self, store: CountingStore, receiver: CountsReceiver, options: WatchOptions,
                 label: str) -> None:
        super().__init__(receiver, options, label)
        self.store = store

    async def _run(self) -> None:
        while True:
            batch = sorted(self._dirty & self.boxes)
            self._dirty.clear()
            failed = []
            for box in batch:
                token = self.tracker.begin_recount(box)
                try:
                    counts = await self.store.counts(box)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("mwi %s: cannot count %s: %s", self.label, box, exc)
                    failed.append(box)
                    continue
                self.recounts += 1
                if not self.tracker.confirm(box, counts, token):
                    self._retry_later(box)
            self.tracker.mark_stale(failed)
            if self._dirty:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.pollfreq)
            if not self._wake.is_set():
                self._dirty.update(self.boxes)
