"""The MWI engine: tracker + watchers + sinks, as the server composes them.

    engine = MwiEngine(store_for, sinks=sinks_from_config(settings.mwi, externnotify))
    await engine.start()
    await engine.watch("100@default")            # someone cares (a SIP subscription, ...)
    await engine.watch("100@default,101@default")  # a list, published with summed counts
    engine.alias(MailboxRef("5100", "aliases"), MailboxRef("100", "default"))  # published too
    async with engine.changing(box, Counts(new=1)):  # a deposit: lit once, no blink
        await store.deposit(box, email)
    engine.local_change(box, counts=session_counts)  # a phone session knows exact counts
    engine.add_sink(CallbackSink(sip_notifier.on_mwi, name="sip"))
    await engine.stop()

Watchers are created only for boxes that someone watches, by the box's store (the Store's watch
capability): the IMAP back end gives one per login identity (boxes sharing a login share the
watcher and its connection), the spool a poller. The engine never asks which back end it has.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from imapvm.mwi.ami import AmiSink
from imapvm.mwi.model import MwiUpdate, parse_boxes
from imapvm.mwi.sinks import ExternNotifySink, Sink, SinkFanout
from imapvm.mwi.tracker import CountsTracker
from imapvm.mwi.webhook import WebhookSink
from imapvm.storage.base import (
    BoxWatcher,
    ConnectionLimiter,
    Counts,
    MailboxRef,
    Store,
    WatchOptions,
)

log = logging.getLogger(__name__)


class MwiEngine:
    def __init__(self, store_for: Callable[[MailboxRef], Store], sinks: Sequence[Sink] = (),
                 options: WatchOptions | None = None, *, sink_timeout: float = 15.0) -> None:
        self.options = options or WatchOptions()
        self._store_for = store_for
        self.fanout = SinkFanout(sinks, timeout=sink_timeout)
        self.tracker = CountsTracker(self.fanout.publish)
        self.limiter = ConnectionLimiter(self.options.max_connections_per_server,
                                         self.options.max_logins_per_server,
                                         self.options.login_rate)
        self._watchers: dict[tuple[object, ...], BoxWatcher] = {}
        self._watcher_of: dict[MailboxRef, BoxWatcher] = {}
        self._explicit: set[str] = set()  # names watched through watch(), not implied aliases
        self._aliases: dict[MailboxRef, MailboxRef] = {}  # alias -> target
        self._alias_of: dict[MailboxRef, set[MailboxRef]] = {}  # target -> aliases
        self._running = False

    # -- life -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        self.fanout.start()
        for w in self._watchers.values():
            w.start()

    async def stop(self) -> None:
        self._running = False
        for w in list(self._watchers.values()):
            await w.stop()
        await self.fanout.stop()

    def add_sink(self, sink: Sink, timeout: float | None = None) -> None:
        self.fanout.add(sink, timeout)

    # -- what is watched --------------------------------------------------------------------
    async def watch(self, spec: str | MailboxRef | Sequence[MailboxRef]) -> str:
        """Start publishing `spec` (a box, an alias, `"a@ctx,b@ctx"`, or a list of boxes);
        returns its published name. Aliases of a watched box are published with it."""
        name, boxes = parse_boxes(spec)
        self._explicit.add(name)
        if len(boxes) == 1 and boxes[0] in self._aliases:  # someone watches the alias itself
            alias = boxes[0]
            self.tracker.add_name(name, [self._aliases[alias]], mailbox=alias.mailbox,
                                  context=alias.context)
        else:
            self.tracker.add_name(name, [self._aliases.get(b, b) for b in boxes])
        for box in self.tracker.boxes_of(name):
            self._attach(box)
            for alias in self._alias_of.get(box, ()):
                self._add_alias_name(alias, box)
        return name

    def alias(self, alias: MailboxRef, target: MailboxRef) -> None:
        """`alias` (an `aliasescontext` entry) stands for `target`: whenever `target` is
        watched, its counts are also published under the alias, as Asterisk does. Registering
        an alias watches nothing by itself."""
        self._aliases[alias] = target
        self._alias_of.setdefault(target, set()).add(alias)
        if target in self._watcher_of:
            self._add_alias_name(alias, target)

    def _add_alias_name(self, alias: MailboxRef, target: MailboxRef) -> None:
        self.tracker.add_name(str(alias), [target], mailbox=alias.mailbox,
                              context=alias.context)

    async def unwatch(self, spec: str | MailboxRef | Sequence[MailboxRef]) -> None:
        """Stop publishing `spec`; a box nobody watches any more loses its watcher (and the
        connection, when it was the last box of its login)."""
        name, _ = parse_boxes(spec)
        self._explicit.discard(name)
        orphans = self.tracker.remove_name(name)
        needed = {b for n in self._explicit for b in self.tracker.boxes_of(n)}
        for n in self.tracker.names():  # aliases published only because their target was
            if n not in self._explicit and not set(self.tracker.boxes_of(n)) & needed:
                orphans += self.tracker.remove_name(n)
        for box in orphans:
            watcher = self._watcher_of.pop(box, None)
            if watcher is None:
                continue
            watcher.remove(box)
            if not watcher.boxes:
                await watcher.stop()
                for key, w in list(self._watchers.items()):
                    if w is watcher:
                        del self._watchers[key]

    def _attach(self, box: MailboxRef) -> None:
        if box in self._watcher_of:
            return
        store = self._store_for(box)  # the store says how it is watched (its watch capability)
        key: tuple[object, ...] = (id(store), store.watch_key(box))
        watcher = self._watchers.get(key)
        if watcher is None:
            watcher = store.new_watcher(box, self.tracker, self.options, self.limiter)
        self._watchers[key] = watcher
        self._watcher_of[box] = watcher
        watcher.add(box)
        if self._running:
            watcher.start()

    def watcher(self, box: MailboxRef) -> BoxWatcher | None:
        return self._watcher_of.get(box)

    # -- changes and queries ----------------------------------------------------------------
    def local_change(self, box: MailboxRef, delta: Counts | None = None, *,
                     counts: Counts | None = None) -> None:
        """A change imapvm made (a deposit the store accepted: `Counts(new=1)`, or `urgent=1`;
        a phone session: its exact `counts`). Published at once; the server's push confirms it
        without a second update. Prefer `changing` around the store call when giving a delta:
        a recount that completes between the store call and this one would already include
        the change, and the delta would count it twice until the next recount."""
        self.tracker.apply_local(box, delta, counts=counts)

    @contextlib.asynccontextmanager
    async def changing(self, box: MailboxRef, delta: Counts) -> AsyncIterator[None]:
        """`async with engine.changing(box, Counts(new=1)): await store.deposit(...)`: the
        lamp shows the change as soon as the store accepted it, exactly once, and no recount
        racing the store call can show a state in between. If the store call fails nothing is
        applied and the box is recounted."""
        self.tracker.begin_local(box)
        try:
            yield
        except BaseException:
            self.tracker.cancel_local(box)
            self.refresh(box)
            raise
        self.tracker.apply_local(box, delta)

    def pending(self, box: MailboxRef, delta: Counts) -> PendingChange:
        """A deposit the outbox accepted while IMAP cannot take it yet: the lamp shows it at
        once and keeps showing it across recounts and reconnects until it is delivered:

            change = engine.pending(box, Counts(new=1))      # outbox accepted it
            async with change.delivering():                   # later, the outbox's APPEND
                await store.deposit(box, email)
        """
        return PendingChange(self, box, delta)

    async def recount(self, box: MailboxRef) -> bool:
        """Count a watched `box` now, on a connection of its store rather than its watcher's,
        and hand the result to the tracker as a watcher's recount is (what a node taking over
        a mailbox needs at once). If the watcher's own recount began later and was accepted
        first, or a local change raced it, the tracker keeps what it has: this count may have
        read the server before a change the watcher has already seen. True when accepted;
        raises StoreError as the store does."""
        token = self.tracker.begin_recount(box)
        counts = await self._store_for(box).counts(box)
        return self.tracker.confirm(box, counts, token)

    def refresh(self, box: MailboxRef | None = None) -> None:
        """Recount now (AMI VoicemailRefresh's job): one box, or every watched box."""
        watchers = [self._watcher_of[box]] if box in self._watcher_of else (
            [] if box is not None else list(self._watchers.values()))
        for w in watchers:
            w.refresh(box)

    def current(self, spec: str | MailboxRef) -> MwiUpdate | None:
        """The last published state of a name (or box); None before its first count."""
        name = spec if isinstance(spec, str) and "@" not in spec else parse_boxes(spec)[0]
        return self.tracker.last_published(name)


def sinks_from_config(mwi: object, externnotify: str = "") -> list[Sink]:
    """Sinks from `[mwi]` of imapvm.toml (`MwiSettings`) and voicemail.conf's externnotify.
    The SIP notifier adds its own `CallbackSink` when `mwi.sip_notify` is on."""
    sinks: list[Sink] = []
    if externnotify:
        sinks.append(ExternNotifySink(externnotify))
    webhook = getattr(mwi, "webhook_url", None)
    if webhook:
        sinks.append(WebhookSink(webhook))
    ami = getattr(mwi, "ami", None)
    if ami is not None:
        sinks.append(AmiSink(ami.host, ami.port, ami.username, ami.secret))
    return sinks


class PendingChange:
    """See `MwiEngine.pending`."""

    def __init__(self, engine: MwiEngine, box: MailboxRef, delta: Counts) -> None:
        self._engine, self.box, self.delta = engine, box, delta
        self.settled = False
        engine.tracker.add_pending(box, delta)

    @contextlib.asynccontextmanager
    async def delivering(self) -> AsyncIterator[None]:
        """Around the store call that delivers it. If that call fails the change stays
        pending (the outbox will try again)."""
        tracker = self._engine.tracker
        tracker.begin_local(self.box)
        try:
            yield
        except BaseException:
            tracker.cancel_local(self.box)
            raise
        if not self.settled:
            self.settled = True
            tracker.settle_pending(self.box, self.delta, delivered=True)

    def drop(self) -> None:
        """The change will never be delivered (the message was discarded)."""
        if not self.settled:
            self.settled = True
            self._engine.tracker.settle_pending(self.box, self.delta, delivered=False)
