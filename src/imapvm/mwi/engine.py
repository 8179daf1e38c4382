"""The MWI engine: tracker + watchers + sinks, as the server composes them.

    engine = MwiEngine(store_for, sinks=sinks_from_config(settings.mwi, externnotify))
    await engine.start()
    await engine.watch("100@default")            # someone cares (a SIP subscription, ...)
    await engine.watch("100@default,101@default")  # a list, published with summed counts
    engine.alias(MailboxRef("5100", "aliases"), MailboxRef("100", "default"))
    engine.local_change(box, Counts(new=1))      # after a deposit was accepted
    engine.add_sink(CallbackSink(sip_notifier.on_mwi, name="sip"))
    await engine.stop()

Watchers are created only for boxes that someone watches, one per IMAP login identity (boxes
sharing a login share the watcher and its connection); boxes in other stores (the spool) are
polled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from imapvm.mwi.ami import AmiSink
from imapvm.mwi.model import MwiUpdate, parse_boxes
from imapvm.mwi.sinks import ExternNotifySink, Sink, SinkFanout
from imapvm.mwi.tracker import CountsTracker
from imapvm.mwi.watch import ConnectionLimiter, ImapWatcher, PollWatcher, WatchOptions
from imapvm.mwi.webhook import WebhookSink
from imapvm.storage.base import Counts, MailboxRef, Store
from imapvm.storage.imap.store import ImapStore

log = logging.getLogger(__name__)

_Watcher = ImapWatcher | PollWatcher


class MwiEngine:
    def __init__(self, store_for: Callable[[MailboxRef], Store], sinks: Sequence[Sink] = (),
                 options: WatchOptions | None = None, *, sink_timeout: float = 15.0) -> None:
        self.options = options or WatchOptions()
        self._store_for = store_for
        self.fanout = SinkFanout(sinks, timeout=sink_timeout)
        self.tracker = CountsTracker(self.fanout.publish)
        self.limiter = ConnectionLimiter(self.options.max_connections_per_server)
        self._watchers: dict[tuple[object, ...], _Watcher] = {}
        self._watcher_of: dict[MailboxRef, _Watcher] = {}
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
        """Start publishing `spec` (a box, `"a@ctx,b@ctx"`, or a list); returns its name."""
        name, boxes = parse_boxes(spec)
        self.tracker.add_name(name, boxes)
        for box in boxes:
            self._attach(box)
        return name

    def alias(self, alias: MailboxRef, target: MailboxRef) -> str:
        """Publish `target`'s counts under `alias` too (voicemail.conf `aliasescontext`)."""
        name = str(alias)
        self.tracker.add_name(name, [target], mailbox=alias.mailbox, context=alias.context)
        self._attach(target)
        return name

    async def unwatch(self, spec: str | MailboxRef | Sequence[MailboxRef]) -> None:
        name, _ = parse_boxes(spec) if not isinstance(spec, str) or "@" in spec else (spec, [])
        for box in self.tracker.remove_name(name):
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
        store = self._store_for(box)
        if isinstance(store, ImapStore):
            _, settings = store.account(box)
            key: tuple[object, ...] = ("imap", id(store), settings.identity)
            watcher = self._watchers.get(key)
            if watcher is None:
                label = f"{settings.user}@{settings.host}:{settings.port}"
                watcher = ImapWatcher(store, self.tracker, self.options, self.limiter, label)
        else:
            key = ("poll", id(store))
            watcher = self._watchers.get(key)
            if watcher is None:
                watcher = PollWatcher(store, self.tracker, self.options, type(store).__name__)
        self._watchers[key] = watcher
        self._watcher_of[box] = watcher
        watcher.add(box)
        if self._running:
            watcher.start()

    def watcher(self, box: MailboxRef) -> _Watcher | None:
        return self._watcher_of.get(box)

    # -- changes and queries ----------------------------------------------------------------
    def local_change(self, box: MailboxRef, delta: Counts | None = None, *,
                     counts: Counts | None = None) -> None:
        """A change imapvm made (a deposit the store accepted: `Counts(new=1)`, or `urgent=1`;
        a phone session: its exact `counts`). Published at once; the server's push confirms it
        without a second update."""
        self.tracker.apply_local(box, delta, counts=counts)

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
