"""The IMAP back end's watcher: learn of changes as the server pushes them, and recount.

One `ImapWatcher` per IMAP login identity (several voicemail boxes may share one login) owns one
dedicated connection and uses the best the server offers:

- NOTIFY (RFC 5465): the main voicemail folder is selected, so every change there (a new
  message, an expunge, any flag including \\Flagged) is pushed as EXISTS / EXPUNGE / FETCH;
  other watched folders are named in a `mailboxes` filter and pushed as STATUS;
- IDLE: on the main voicemail folder; other folders are recounted every `pollfreq` seconds;
- neither: every folder is recounted every `pollfreq` seconds.

Pushes that arrive within `debounce` seconds are coalesced into one recount, which runs on the
watcher's own connection (`ImapStore.counts(box, conn=...)`: the store's constant-round-trip
count), so a watched account costs one connection. IDLE is renewed before the 29 minutes of
RFC 2177. A lost connection marks the boxes stale, then the watcher reconnects with exponential
backoff and jitter and recounts everything: changes made while it was away are never missed.
What the NOTIFY command says and which pushes mean a change: `notify.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from typing import Protocol

from imapvm.storage.base import Counts, Folder, MailboxRef, StoreError
from imapvm.storage.imap.account import Account, ImapSettings
from imapvm.storage.imap.connection import ConnectionLost, ImapConnection, ImapError
from imapvm.storage.imap.notify import changed_folder, notify_set
from imapvm.storage.imap.protocol import Response
from imapvm.storage.watching import (
    ConnectionLimiter,
    CountsReceiver,
    Watcher,
    WatchMode,
    WatchOptions,
)

log = logging.getLogger(__name__)

_MAX_TORN = 3


class WatchedStore(Protocol):
    """What a watcher needs of the IMAP store (`store.ImapStore`)."""

    def account(self, box: MailboxRef) -> tuple[Account, ImapSettings]: ...

    async def select_main_folder(self, box: MailboxRef, conn: ImapConnection) -> str: ...

    async def counts(self, box: MailboxRef, *, conn: ImapConnection | None = None) -> Counts: ...


class ImapWatcher(Watcher):
    """Watches the boxes of one IMAP login identity over one connection."""

    def __init__(self, store: WatchedStore, tracker: CountsReceiver, options: WatchOptions,
                 limiter: ConnectionLimiter, label: str) -> None:
        super().__init__(tracker, options, label)
        self.store = store
        self.limiter = limiter
        self.connected = asyncio.Event()
        self.connects = 0
        self.idles = 0  # IDLE commands issued (renewals included)
        self._folders: dict[MailboxRef, str] = {}
        self._primary = ""
        self._notified: frozenset[str] = frozenset()
        self._conn: ImapConnection | None = None
        self._changes = 0  # change reports seen on the connection (see `_count`)
        self._pushed_at: dict[MailboxRef, float] = {}  # first unanswered push, per box

    # -- life -------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self.options.backoff_initial
        while not self.stopping:
            if not self.boxes:
                self._wake.clear()
                await self._wake.wait()
                continue
            box = next(iter(self.boxes))
            acct, settings = self.store.account(box)
            was_connected = False
            slots = self.limiter.slots(settings.host, settings.port)
            try:
                await self._acquire(slots)
                try:
                    async with self.limiter.login(settings.host, settings.port):
                        conn = await acct.open_connection()
                    self.connects += 1
                    self.limiter.connection_ok(settings.host, settings.port)
                    backoff = self.options.backoff_initial
                    try:
                        await self._session(conn)
                    finally:
                        was_connected = self.connected.is_set()
                        self._conn = None
                        self.connected.clear()
                        await _close_quickly(conn)
                finally:
                    slots.release()
            except asyncio.CancelledError:
                raise
            except (StoreError, ConnectionLost, ImapError, OSError) as exc:
                self.limiter.connection_failed(settings.host, settings.port, self.label, exc)
            if was_connected:
                # A dropped session gets one immediate reconnect before the lamps are marked
                # stale: a load balancer's reset or an IDLE timeout is not an outage.
                await asyncio.sleep(0.05 * random.random())
                continue
            self.tracker.mark_stale(self.boxes)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.options.backoff_max)

    async def _acquire(self, slots: asyncio.Semaphore) -> None:
        """Take a connection slot; while none is free (the per-server limit is reached), poll
        every `pollfreq` seconds on a short-lived connection so the lamps still follow."""
        if not slots.locked():
            await slots.acquire()
            return
        self.mode = WatchMode.WAITING
        while True:
            await self._poll_once()
            try:
                await asyncio.wait_for(slots.acquire(), self.options.pollfreq)
                return
            except TimeoutError:
                continue

    async def _poll_once(self) -> None:
        box = next(iter(self.boxes))
        acct, settings = self.store.account(box)
        try:
            async with self.limiter.login(settings.host, settings.port):
                conn = await acct.open_connection()
            try:
                self._conn = conn
                conn.on_untagged = self._on_untagged
                self._dirty.update(self.boxes)
                await self._recount(conn)
            finally:
                self._conn = None
                await _close_quickly(conn)
        except (StoreError, ConnectionLost, ImapError, OSError) as exc:
            self.limiter.connection_failed(settings.host, settings.port, self.label, exc)
            self.tracker.mark_stale(self.boxes)

    async def _session(self, conn: ImapConnection) -> None:
        self._conn = conn
        conn.on_untagged = self._on_untagged
        modes = self.options.modes
        if WatchMode.NOTIFY in modes and conn.has("NOTIFY"):
            self.mode = WatchMode.NOTIFY
        elif WatchMode.IDLE in modes and conn.has("IDLE"):
            self.mode = WatchMode.IDLE
        else:
            self.mode = WatchMode.POLL
        self._notified = frozenset()
        self._dirty.update(self.boxes)  # a full recount after every (re)connect
        await self._recount(conn)
        self.connected.set()
        log.debug("mwi %s: watching %d box(es) by %s", self.label, len(self.boxes),
                 self.mode.value)
        next_poll = time.monotonic() + self.options.pollfreq
        while True:
            if self.mode is WatchMode.POLL or (self.mode is WatchMode.IDLE and self._others()):
                now = time.monotonic()
                if now >= next_poll:
                    polled = self.boxes if self.mode is WatchMode.POLL else self._others()
                    self._dirty.update(polled)
                    next_poll = now + self.options.pollfreq
                wait_s = max(0.0, min(next_poll - now, self.options.idle_renew))
            else:
                wait_s = self.options.idle_renew
            if not self._dirty:
                if self.mode is WatchMode.POLL:
                    await self._wait(conn, wait_s)
                else:
                    async with conn.idle():
                        self.idles += 1
                        await self._wait(conn, wait_s)
            if conn.closed:
                raise ConnectionLost(f"{self.label}: {await conn.wait_closed()}")
            await self._recount(conn)

    async def _wait(self, conn: ImapConnection, wait_s: float) -> None:
        """Until something is dirty (plus the debounce window), the connection drops, or
        `wait_s` passes."""
        self._wake.clear()
        if not self._dirty and not conn.closed:
            # No task per wait (two tasks per idle watcher cost ~2 KiB each, times 10,000):
            # the connection's close sets the same event a push does.
            conn.on_close = self._wake.set
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
            finally:
                conn.on_close = None
        if self._dirty and not conn.closed:
            await asyncio.sleep(self.options.debounce)  # let a burst of pushes coalesce

    # -- pushes -----------------------------------------------------------------------------
    def _on_untagged(self, r: Response) -> None:
        """Note which watched folder a push says changed (see `notify.changed_folder`)."""
        selected = self._selected()
        folder = changed_folder(r, selected)
        if folder is None:
            return
        if folder == selected:
            self._changes += 1
        self._mark_folder(folder)

    def _selected(self) -> str:
        conn = self._conn
        sel = conn.selected if conn is not None else None
        return sel.name if sel is not None else ""

    def _mark_folder(self, folder: str) -> None:
        hit = [b for b, f in self._folders.items() if f == folder and b in self.boxes]
        if hit:
            now = time.monotonic()
            for b in hit:
                self._pushed_at.setdefault(b, now)
            self._dirty.update(hit)
            self._wake.set()

    def _others(self) -> set[MailboxRef]:
        return {b for b, f in self._folders.items() if f != self._primary and b in self.boxes}

    # -- recounting -------------------------------------------------------------------------
    async def _recount(self, conn: ImapConnection) -> None:
        """Recount the dirty boxes on `conn`; the main folder's boxes last, so that it stays
        selected (it is the one IDLE and NOTIFY's `selected` filter watch)."""
        acct = None
        for box in self.boxes:
            if box not in self._folders:
                acct = acct or self.store.account(box)[0]
                self._folders[box] = acct.folder_name(Folder.INBOX)
        for box in list(self._folders):
            if box not in self.boxes:
                del self._folders[box]
        folders = Counter(self._folders.values())
        self._primary = folders.most_common(1)[0][0] if folders else ""
        if self.mode is WatchMode.NOTIFY:
            await self._set_notify(conn)
        while self._dirty:
            batch = sorted(self._dirty & self.boxes,
                           key=lambda b: (self._folders.get(b) == self._primary, b))
            self._dirty.clear()
            for box in batch:
                await self._count(conn, box)

    async def _count(self, conn: ImapConnection, box: MailboxRef) -> None:
        """Count `box` and confirm the result unless it may be torn.

        Counting takes several SEARCH commands; another client's change landing between them
        (a message flagged \\Deleted after the UNDELETED search, before the flag searches) would
        give counts that never existed, i.e. a wrong intermediate lamp. The server reports such
        a change as untagged data at the end of a command, so: flush pending reports (NOOP),
        count, NOOP again, and if any change was reported meanwhile count again instead of
        publishing (at most `_MAX_TORN` times, so a mailbox that never stops changing still
        gets counts)."""
        for attempt in range(1, _MAX_TORN + 1):
            await self.store.select_main_folder(box, conn)
            await conn.execute("NOOP")
            self._dirty.discard(box)  # what that NOOP reported, this count includes
            before = self._changes
            token = self.tracker.begin_recount(box)
            counts = await self.store.counts(box, conn=conn)
            await conn.execute("NOOP")
            self.recounts += 1
            if self._changes != before and attempt < _MAX_TORN:
                continue
            pushed = self._pushed_at.pop(box, None)
            if not self.tracker.confirm(box, counts, token):
                self._retry_later(box)
            elif pushed is not None and self.options.on_latency is not None:
                self.options.on_latency(time.monotonic() - pushed)
            return

    async def _set_notify(self, conn: ImapConnection) -> None:
        others = frozenset(f for f in self._folders.values() if f != self._primary)
        if self._notified == others | {self._primary}:
            return
        await conn.execute("NOTIFY", *notify_set(others))
        self._notified = others | {self._primary}


async def _close_quickly(conn: ImapConnection) -> None:
    """Log out, but never wait long for a server that is going away."""
    if conn.closed:
        await conn.close()
        return
    with contextlib.suppress(TimeoutError, Exception):
        await asyncio.wait_for(conn.close(), 2)
