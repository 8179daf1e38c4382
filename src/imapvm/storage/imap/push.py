"""Push mode: the IMAP server says which folders changed, imapvm holds no connection per mailbox.

The portable watcher (`watch.py`) keeps one IMAP connection per login identity in IDLE or
NOTIFY. With 10,000 watched accounts that is 10,000 Dovecot sessions and ~0.5 s of Dovecot's own
notification delay. Where the server can call out on every change, push mode instead:

- receives events over HTTP (`POST /mwi/push` of imapvm's HTTP server, a bearer token): Dovecot's
  `push_notification` Lua driver (contrib/dovecot/imapvm-push.lua) posts, once per committed
  transaction, `{"user": "<login>", "mailboxes": ["INBOX", ...]}` (`parse_push`);
- marks the watched boxes of that login whose main voicemail folder is named dirty; pushes within
  `debounce` seconds are coalesced;
- recounts dirty boxes over a few connections per IMAP server (`PushOptions.connections`, each
  logged in as the box's user for the count and kept a while for that user's next change), with
  the store's counting path (`ImapStore.counts(box, conn=...)`) and the same torn-count check as
  the IDLE watcher;
- counts every box when watching starts (pushes sent while imapvm was down are lost), and again
  in a slow sweep every `safety_recount` seconds (a push lost on the network is corrected then);
- keeps one sentinel connection per IMAP server in IDLE: when it drops and cannot come back,
  every box of that server is marked stale (the lamp keeps its counts), and when it is back
  everything is recounted, as a reconnecting watcher does.

One `PushWatcher` serves every watched box of one IMAP server (host, port); the `PushHub`
routes received events to the watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass

from imapvm.storage.base import Folder, MailboxRef, Refused, StoreError
from imapvm.storage.imap import utf7
from imapvm.storage.imap.account import Account
from imapvm.storage.imap.connection import ConnectionLost, ImapConnection, ImapError
from imapvm.storage.imap.notify import changed_folder
from imapvm.storage.imap.protocol import Response
from imapvm.storage.imap.watch import WatchedStore
from imapvm.storage.imap.watch import _close_quickly as close_quickly
from imapvm.storage.watching import (
    ConnectionLimiter,
    CountsReceiver,
    Watcher,
    WatchMode,
    WatchOptions,
)

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
"""Largest push body accepted (bytes): one transaction's folder names, with room to spare."""
_MAX_MAILBOXES = 1000
_MAX_NAME = 1024
_MAX_TORN = 3


@dataclass(frozen=True)
class PushEvent:
    """One push: `mailboxes` (UTF-8 names, as Dovecot shows them) of login `user` changed."""

    user: str
    mailboxes: tuple[str, ...]


def parse_push(body: bytes) -> PushEvent:
    """The JSON body the Lua script posts. Raises ValueError (with a short reason) for anything
    else: the HTTP endpoint answers 400."""
    if len(body) > MAX_BODY:
        raise ValueError(f"body larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    user = data.get("user")
    boxes = data.get("mailboxes")
    if not isinstance(user, str) or not user or len(user) > _MAX_NAME:
        raise ValueError("'user' must be a non-empty string")
    if not isinstance(boxes, list) or len(boxes) > _MAX_MAILBOXES or not all(
            isinstance(b, str) and 0 < len(b) <= _MAX_NAME for b in boxes):
        raise ValueError("'mailboxes' must be a list of folder names")
    return PushEvent(user, tuple(boxes))


@dataclass(frozen=True)
class PushOptions:
    connections: int = 8
    """Counting connections per IMAP server (besides the sentinel); as many idle ones are
    kept for their users' next changes."""
    safety_recount: float = 300.0
    """Every watched box is recounted once per this many seconds, spread evenly: a lost push is
    corrected within it."""
    sweep_rate: float = 10.0
    """At most this many boxes a second are recounted by the sweep: 10,000 boxes take
    1,000 s, and the server's steady load stays at 10 logins a second whatever the size."""
    idle_close: float = 30.0
    """A counting connection unused this long is logged out."""
    retry: float = 5.0
    """A box whose count failed (while its server is up) is tried again after this long
    (doubling up to `WatchOptions.backoff_max` times ten)."""


class PushHub:
    """Routes pushes to the push watchers (one per IMAP server) and counts what it saw."""

    def __init__(self, options: PushOptions | None = None) -> None:
        self.options = options or PushOptions()
        self._watchers: list[PushWatcher] = []
        self.received = 0  # pushes accepted
        self.unknown = 0  # pushes naming no watched box

    def new_watcher(self, store: WatchedStore, receiver: CountsReceiver, options: WatchOptions,
                    limiter: ConnectionLimiter, label: str) -> PushWatcher:
        return PushWatcher(self, store, receiver, options, limiter, label)

    def receive(self, body: bytes) -> int:
        """Handle one POSTed body; returns how many watched boxes it marked for a recount.
        Raises ValueError for a malformed body."""
        event = parse_push(body)
        self.received += 1
        marked = sum(w.pushed(event) for w in list(self._watchers))
        if not marked:
            self.unknown += 1
        return marked

    def _register(self, watcher: PushWatcher) -> None:
        if watcher not in self._watchers:
            self._watchers.append(watcher)

    def _unregister(self, watcher: PushWatcher) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(watcher)


def _same_folder(a: str, b: str) -> bool:
    if a == b:
        return True
    return a.upper() == "INBOX" and b.upper() == "INBOX"


class PushWatcher(Watcher):
    """Every watched box of one IMAP server, recounted when a push names it (module docstring)."""

    mode = WatchMode.PUSH

    def __init__(self, hub: PushHub, store: WatchedStore, tracker: CountsReceiver,
                 options: WatchOptions, limiter: ConnectionLimiter, label: str) -> None:
        super().__init__(tracker, options, label)
        self.hub = hub
        self.store = store
        self.limiter = limiter
        self.connected = asyncio.Event()  # the sentinel is up
        self.down = False  # the sentinel found the server unreachable: boxes are stale
        self.pushes = 0  # pushes that named one of this watcher's boxes
        self.logins = 0  # counting connections opened
        self._users: dict[str, set[MailboxRef]] = {}  # lower-case login -> boxes
        self._user_of: dict[MailboxRef, str] = {}
        # waiting to be counted: pushed (and asked for) first, then the bulk (the first count,
        # the sweep), so a push never queues behind thousands of routine recounts
        self._due: OrderedDict[MailboxRef, float] = OrderedDict()
        self._background: OrderedDict[MailboxRef, float] = OrderedDict()
        self._busy: set[MailboxRef] = set()  # being counted
        self._pushed_at: dict[MailboxRef, float] = {}  # first unanswered push, per box
        self._failures: dict[MailboxRef, int] = {}
        self._queue: asyncio.Queue[MailboxRef] = asyncio.Queue()
        self._idle: OrderedDict[Account, ImapConnection] = OrderedDict()  # kept after a count
        self._idle_since: dict[Account, float] = {}
        self._sentinel_box: MailboxRef | None = None

    # -- boxes --------------------------------------------------------------------------------
    def add(self, box: MailboxRef) -> None:
        if box in self.boxes:
            return
        self.boxes.add(box)
        user = self.store.account(box)[1].user.lower()
        self._user_of[box] = user
        self._users.setdefault(user, set()).add(box)
        self._mark(box, 0.0, background=True)

    def remove(self, box: MailboxRef) -> None:
        self.boxes.discard(box)
        self._due.pop(box, None)
        self._background.pop(box, None)
        self._pushed_at.pop(box, None)
        self._failures.pop(box, None)
        user = self._user_of.pop(box, None)
        if user is not None:
            boxes = self._users.get(user, set())
            boxes.discard(box)
            if not boxes:
                self._users.pop(user, None)
        if box == self._sentinel_box:
            self._sentinel_box = None

    def refresh(self, box: MailboxRef | None = None) -> None:
        """Recount `box` soon (ahead of routine recounts), or every box (behind pushes)."""
        if box is not None:
            if box in self.boxes:
                self._mark(box, 0.0)
            return
        for b in list(self.boxes):
            self._mark(b, 0.0, background=True)

    def _mark(self, box: MailboxRef, delay: float, pushed: float | None = None, *,
              background: bool = False) -> None:
        if pushed is not None:
            self._pushed_at.setdefault(box, pushed)
        if background:
            if box not in self._due and box not in self._background:
                self._background[box] = time.monotonic() + delay
        else:
            self._background.pop(box, None)
            if box not in self._due:
                self._due[box] = time.monotonic() + delay
        self._wake.set()

    def pushed(self, event: PushEvent) -> int:
        """A push: mark the boxes of `event.user` whose main folder it names (all of the
        user's boxes while their folder names are not known yet)."""
        boxes = self._users.get(event.user.lower())
        if not boxes:
            return 0
        now = time.monotonic()
        marked = 0
        for box in boxes:
            folder = self._folder(box)
            if folder is None or any(_same_folder(folder, m) for m in event.mailboxes):
                self._mark(box, self.options.debounce, pushed=now)
                marked += 1
        if marked:
            self.pushes += 1
        return marked

    def _folder(self, box: MailboxRef) -> str | None:
        """The main folder's name as Dovecot reports it (UTF-8), once the server is known."""
        acct = self.store.account(box)[0]
        if acct.info is None:
            return None
        return utf7.decode(acct.folder_name(Folder.INBOX))

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.hub._register(self)
        super().start()

    async def stop(self) -> None:
        self.hub._unregister(self)
        await super().stop()

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._dispatch(), name=f"mwi-push-dispatch-{self.label}"),
                 asyncio.create_task(self._sentinel(), name=f"mwi-push-sentinel-{self.label}"),
                 asyncio.create_task(self._sweep(), name=f"mwi-push-sweep-{self.label}"),
                 asyncio.create_task(self._reap(), name=f"mwi-push-reap-{self.label}")]
        tasks += [asyncio.create_task(self._worker(), name=f"mwi-push-count-{self.label}-{i}")
                  for i in range(max(1, self.hub.options.connections))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            idle, self._idle = list(self._idle.values()), OrderedDict()
            self._idle_since.clear()
            await asyncio.gather(*(close_quickly(c) for c in idle), return_exceptions=True)

    async def _dispatch(self) -> None:
        """Hand due boxes to the counting workers, no more than there are idle workers (the
        rest stay queued, where new pushes coalesce with them): pushed ones first."""
        workers = max(1, self.hub.options.connections)
        while True:
            self._wake.clear()
            wait_s: float | None = None
            if not self.down:
                now = time.monotonic()
                waits = [self._take(q, now, workers) for q in (self._due, self._background)]
                wait_s = min((w for w in waits if w is not None), default=None)
                if (self._due or self._background) and wait_s is None and \
                        len(self._busy) < workers:
                    wait_s = 0.05  # only busy boxes are due: look again shortly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    def _take(self, queue: OrderedDict[MailboxRef, float], now: float, workers: int,
              ) -> float | None:
        """Move due boxes of `queue` to the workers while some are idle; returns how long
        until its next box is due (None: nothing to wait for)."""
        picked: list[MailboxRef] = []
        wait_s: float | None = None
        for box, due in queue.items():  # stops early: at most `workers` are skipped as busy
            if len(self._busy) + len(picked) >= workers:
                break
            if box in self._busy:
                continue
            if due > now:
                wait_s = due - now
                break
            picked.append(box)
        for box in picked:
            del queue[box]
            self._busy.add(box)
            self._queue.put_nowait(box)
        return wait_s

    async def _worker(self) -> None:
        while True:
            box = await self._queue.get()
            try:
                await self._count(box)
            finally:
                self._busy.discard(box)
                self._wake.set()

    # -- counting ----------------------------------------------------------------------------
    async def _count(self, box: MailboxRef) -> None:
        """Count `box` on an idle connection of its login if one is kept (a user reading
        several messages in a row costs one login), else on a new one."""
        if box not in self.boxes:
            return
        acct, s = self.store.account(box)
        conn = self._idle.pop(acct, None)
        try:
            if conn is None or conn.closed:
                async with self.limiter.login(s.host, s.port):
                    conn = await acct.open_connection()
                self.logins += 1
            await self._count_on(conn, box)
            self._failures.pop(box, None)
        except asyncio.CancelledError:
            if conn is not None:
                await close_quickly(conn)
            raise
        except (StoreError, ConnectionLost, ImapError, OSError) as exc:
            if conn is not None:
                await close_quickly(conn)
            self._failed(box, exc)
            return
        await self._keep(acct, conn)

    async def _keep(self, acct: Account, conn: ImapConnection) -> None:
        """Keep `conn` for the next count of the same login; at most `connections` idle ones
        per server, the least recently used one logged out first."""
        old = self._idle.pop(acct, None)
        self._idle[acct] = conn
        self._idle_since[acct] = time.monotonic()
        extra = [old] if old is not None and old is not conn else []
        while len(self._idle) > max(1, self.hub.options.connections):
            lru = next(iter(self._idle))
            extra.append(self._idle.pop(lru))
            self._idle_since.pop(lru, None)
        for c in extra:
            await close_quickly(c)

    async def _reap(self) -> None:
        """Log out connections idle for `idle_close` seconds: nothing is held for long."""
        while True:
            await asyncio.sleep(max(1.0, self.hub.options.idle_close / 2))
            now = time.monotonic()
            for acct, since in list(self._idle_since.items()):
                if now - since >= self.hub.options.idle_close and acct in self._idle:
                    del self._idle_since[acct]
                    await close_quickly(self._idle.pop(acct))

    async def _count_on(self, conn: ImapConnection, box: MailboxRef) -> None:
        """As `ImapWatcher._count`: NOOP, count, NOOP, and count again (at most `_MAX_TORN`
        times) if the server reported a change of the folder meanwhile, so that counts that
        never existed together are not published."""
        changes = 0

        def on_untagged(r: Response) -> None:
            nonlocal changes
            sel = conn.selected
            if sel is not None and changed_folder(r, sel.name) == sel.name:
                changes += 1

        conn.on_untagged = on_untagged
        try:
            for attempt in range(1, _MAX_TORN + 1):
                await self.store.select_main_folder(box, conn)
                await conn.execute("NOOP")
                before = changes
                token = self.tracker.begin_recount(box)
                counts = await self.store.counts(box, conn=conn)
                await conn.execute("NOOP")
                self.recounts += 1
                if changes != before and attempt < _MAX_TORN:
                    continue
                pushed = self._pushed_at.pop(box, None)
                if not self.tracker.confirm(box, counts, token):
                    self._retry_later(box)
                elif pushed is not None and self.options.on_latency is not None:
                    self.options.on_latency(time.monotonic() - pushed)
                return
        finally:
            conn.on_untagged = None

    def _failed(self, box: MailboxRef, exc: BaseException) -> None:
        """A count failed: the box is stale. While the server is up it is tried again later
        (backing off); while it is down the sentinel's recovery recounts everything."""
        s = self.store.account(box)[1]
        self.limiter.connection_failed(s.host, s.port, self.label, exc)
        self.tracker.mark_stale([box])
        if self.down:
            return
        n = self._failures[box] = self._failures.get(box, 0) + 1
        delay = min(self.hub.options.retry * 2 ** (n - 1), self.options.backoff_max * 10)
        asyncio.get_running_loop().call_later(delay * (0.5 + random.random()),
                                              self._retry_failed, box)

    def _retry_failed(self, box: MailboxRef) -> None:
        if box in self.boxes and not self.down:
            self._mark(box, 0.0)

    # -- outage detection ---------------------------------------------------------------------
    def _pick_sentinel(self) -> MailboxRef | None:
        box = self._sentinel_box
        if box is None or box not in self.boxes:
            box = self._sentinel_box = next(iter(self.boxes), None)
        return box

    async def _sentinel(self) -> None:
        """One connection per server, in IDLE, to learn of an outage at once."""
        backoff = self.options.backoff_initial
        while True:
            box = self._pick_sentinel()
            if box is None:
                await asyncio.sleep(1.0)
                continue
            acct, s = self.store.account(box)
            was_connected = False
            try:
                async with self.limiter.login(s.host, s.port):
                    conn = await acct.open_connection()
            except (StoreError, ConnectionLost, ImapError, OSError) as exc:
                self.limiter.connection_failed(s.host, s.port, self.label, exc)
                if isinstance(exc, Refused):  # that user's login, not the server: another one
                    boxes = sorted(self.boxes)
                    if box in boxes and len(boxes) > 1:
                        self._sentinel_box = boxes[(boxes.index(box) + 1) % len(boxes)]
                    await asyncio.sleep(self.options.backoff_initial)
                    continue
                self._outage()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.options.backoff_max)
                continue
            self.limiter.connection_ok(s.host, s.port)
            backoff = self.options.backoff_initial
            if self.down:
                self.down = False
                log.info("mwi %s: IMAP server reachable again, recounting %d box(es)",
                         self.label, len(self.boxes))
                self.refresh()
                self._wake.set()  # the dispatcher held everything back while it was down
            self.connected.set()
            was_connected = True
            try:
                while not conn.closed:
                    async with conn.idle():
                        closed = asyncio.ensure_future(conn.wait_closed())
                        try:
                            await asyncio.wait({closed}, timeout=self.options.idle_renew)
                        finally:
                            closed.cancel()
            except (ConnectionLost, ImapError, OSError):
                pass
            finally:
                self.connected.clear()
                await close_quickly(conn)
            if was_connected:
                # A dropped session gets one immediate reconnect before anything is marked
                # stale: a load balancer's reset or an IDLE timeout is not an outage.
                await asyncio.sleep(0.05 * random.random())

    def _outage(self) -> None:
        if not self.down:
            self.down = True
            log.warning("mwi %s: IMAP server unreachable; %d lamp(s) keep their counts, "
                        "marked stale", self.label, len(self.boxes))
        self.tracker.mark_stale(self.boxes)

    # -- the safety sweep ---------------------------------------------------------------------
    async def _sweep(self) -> None:
        """Recount every box once per `safety_recount` seconds, a few each second, so a lost
        push is corrected and the server never sees the whole population at once; at most
        `sweep_rate` a second (each costs the server a login): with many boxes a sweep takes
        longer than `safety_recount`."""
        period = max(1.0, self.hub.options.safety_recount)
        await asyncio.sleep(period * (0.5 + random.random() / 2))
        while True:
            boxes = sorted(self.boxes)
            if not boxes:
                await asyncio.sleep(period)
                continue
            per_tick = max(1, min(-(-len(boxes) // int(period)),  # ceil(n / period) a second
                                  int(self.hub.options.sweep_rate)))
            ticks = 0
            for i in range(0, len(boxes), per_tick):
                if not self.down:
                    for box in boxes[i:i + per_tick]:
                        if box in self.boxes:
                            self._mark(box, 0.0, background=True)
                await asyncio.sleep(1.0)
                ticks += 1
            if ticks < period:
                await asyncio.sleep(period - ticks)
