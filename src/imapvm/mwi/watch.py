"""Watchers: learn of changes as the IMAP server pushes them, and recount.

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

`PollWatcher` serves stores without push (the file spool): it recounts every `pollfreq` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from imapvm.mwi.tracker import CountsTracker
from imapvm.storage.base import Folder, MailboxRef, Store, StoreError
from imapvm.storage.imap.connection import ConnectionLost, ImapConnection, ImapError
from imapvm.storage.imap.protocol import Raw, Response, quote
from imapvm.storage.imap.store import ImapStore

log = logging.getLogger(__name__)

_MAX_TORN = 3
_RETRY_DISCARDED = 0.2  # seconds
_FOLDER_EVENTS = b"(MessageNew MessageExpunge FlagChange)"
_SELECTED_EVENTS = b"(selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))"


@dataclass(frozen=True)
class WatchOptions:
    """Tuning of the watchers. `pollfreq` is voicemail.conf's (default 30 s)."""

    pollfreq: float = 30.0
    debounce: float = 0.03
    idle_renew: float = 25 * 60.0  # RFC 2177: servers may drop an IDLE after 30 minutes
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    modes: tuple[str, ...] = ("notify", "idle", "poll")  # what watchers may use, best first
    max_connections_per_server: int = 1000
    #: Told the seconds from a server push to the confirmed recount of its mailbox (what the
    #: `imapvm_mwi_latency_seconds` histogram shows); None: not measured.
    on_latency: Callable[[float], None] | None = None
    max_logins_per_server: int = 32  # connections logging in at the same time


class ConnectionLimiter:
    """At most `per_server` watcher connections per IMAP server (host, port), and at most
    `logins_per_server` of them logging in at once: after a restart a thousand watchers
    reconnecting together would otherwise queue up behind the server's login processes and time
    out. A watcher waiting for a slot polls meanwhile (a short connection every `pollfreq`)."""

    def __init__(self, per_server: int, logins_per_server: int = 32) -> None:
        self.per_server = max(1, per_server)
        self.logins_per_server = max(1, logins_per_server)
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._logins: dict[tuple[str, int], asyncio.Semaphore] = {}

    def slots(self, host: str, port: int) -> asyncio.Semaphore:
        return self._slots.setdefault((host, port), asyncio.Semaphore(self.per_server))

    @contextlib.asynccontextmanager
    async def login(self, host: str, port: int) -> AsyncIterator[None]:
        key = (host, port)
        sem = self._logins.setdefault(key, asyncio.Semaphore(self.logins_per_server))
        async with sem:
            yield


class _Watcher:
    """What both watchers share: the set of boxes, the wake-up event and the task."""

    def __init__(self, tracker: CountsTracker, options: WatchOptions, label: str) -> None:
        self.tracker = tracker
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
        asyncio.get_running_loop().call_later(_RETRY_DISCARDED, self.refresh, box)

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


class ImapWatcher(_Watcher):
    """Watches the boxes of one IMAP login identity over one connection."""

    def __init__(self, store: ImapStore, tracker: CountsTracker, options: WatchOptions,
                 limiter: ConnectionLimiter, label: str) -> None:
        super().__init__(tracker, options, label)
        self.store = store
        self.limiter = limiter
        self.mode = ""  # "notify", "idle" or "poll" once connected
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
                log.warning("mwi %s: IMAP connection lost or refused: %s", self.label, exc)
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
        self.mode = "waiting"
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
            log.warning("mwi %s: poll while waiting for a connection slot failed: %s",
                        self.label, exc)
            self.tracker.mark_stale(self.boxes)

    async def _session(self, conn: ImapConnection) -> None:
        self._conn = conn
        conn.on_untagged = self._on_untagged
        modes = self.options.modes
        if "notify" in modes and conn.has("NOTIFY"):
            self.mode = "notify"
        elif "idle" in modes and conn.has("IDLE"):
            self.mode = "idle"
        else:
            self.mode = "poll"
        self._notified = frozenset()
        self._dirty.update(self.boxes)  # a full recount after every (re)connect
        await self._recount(conn)
        self.connected.set()
        log.info("mwi %s: watching %d box(es) by %s", self.label, len(self.boxes), self.mode)
        next_poll = time.monotonic() + self.options.pollfreq
        while True:
            if self.mode == "poll" or (self.mode == "idle" and self._others()):
                now = time.monotonic()
                if now >= next_poll:
                    self._dirty.update(self.boxes if self.mode == "poll" else self._others())
                    next_poll = now + self.options.pollfreq
                wait_s = max(0.0, min(next_poll - now, self.options.idle_renew))
            else:
                wait_s = self.options.idle_renew
            if not self._dirty:
                if self.mode == "poll":
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
        if not self._dirty:
            closed = asyncio.ensure_future(conn.wait_closed())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({closed, woken}, timeout=wait_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                woken.cancel()
        if self._dirty and not conn.closed:
            await asyncio.sleep(self.options.debounce)  # let a burst of pushes coalesce

    # -- pushes -----------------------------------------------------------------------------
    def _on_untagged(self, r: Response) -> None:
        """Which watched folder did this response say changed? Responses to our own FETCH of
        headers (BODY sections) are not changes; anything else that could be is."""
        if r.name == "STATUS":
            name = r.values[0] if r.values else b""
            folder = name.decode("utf-8", "replace") if isinstance(name, bytes) else ""
            if folder == self._selected():
                self._changes += 1
            self._mark_folder(folder)
        elif r.name in ("EXISTS", "EXPUNGE", "VANISHED") or (
                r.name == "FETCH" and b"BODY[" not in r.raw.upper()):
            self._changes += 1
            self._mark_folder(self._selected())

    def _selected(self) -> str:
        state = getattr(self._conn, "vm_selected", None)
        return str(state[0]) if state else ""

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
        if self.mode == "notify":
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
        spec = _SELECTED_EVENTS
        if others:
            names = b" ".join(quote(f) for f in sorted(others))
            spec += b" (mailboxes (" + names + b") " + _FOLDER_EVENTS + b")"
        await conn.execute("NOTIFY", "SET", Raw(spec))
        self._notified = others | {self._primary}


class PollWatcher(_Watcher):
    """Recounts every `pollfreq` seconds (and on `refresh`): for stores without push."""

    def __init__(self, store: Store, tracker: CountsTracker, options: WatchOptions,
                 label: str) -> None:
        super().__init__(tracker, options, label)
        self.store = store
        self.mode = "poll"

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


async def _close_quickly(conn: ImapConnection) -> None:
    """Log out, but never wait long for a server that is going away."""
    if conn.closed:
        await conn.close()
        return
    with contextlib.suppress(TimeoutError, Exception):
        await asyncio.wait_for(conn.close(), 2)
