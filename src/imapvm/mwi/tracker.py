"""The counts tracker: the single place that decides what the lamp shows.

Rules (DESIGN.md principle 5, Asterisk known issues #4 and #5):
- publish only when a published name's (new, old, urgent) or staleness changes;
- never a transient zero: a local change (deposit, phone session) is applied at once, and a
  recount that was already running when it happened is discarded instead of published (it may
  predate the change), so the lamp never goes back and forth;
- never an older state over a newer one: a recount that began before one already accepted is
  discarded (several may run for one box: the watcher's, a takeover's on another connection),
  so a slow count that read the server before a change cannot undo the change on the lamp;
- never negative: local deltas are clamped at zero;
- IMAP unreachable: the last counts stay, marked stale (published once), never turned into zero;
  the next successful recount clears the mark.

The tracker does no I/O and owns no clock: watchers call it, `publish` is a plain callback
(the sink fan-out), which makes it testable with plain values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from imapvm.mwi.model import MwiUpdate
from imapvm.storage.base import Counts, MailboxRef

log = logging.getLogger(__name__)


@dataclass
class _Box:
    counts: Counts | None = None
    stale: bool = False
    floor: int = 0  # recounts numbered below it are discarded (older than what is known)
    open_local: int = 0  # local changes on their way to the server: no recount is trusted
    pending: Counts = field(default_factory=Counts)  # accepted (outbox), not yet on the server
    names: set[str] = field(default_factory=set)


@dataclass
class _Name:
    boxes: tuple[MailboxRef, ...]
    mailbox: str
    context: str
    last: MwiUpdate | None = None


class CountsTracker:
    """Counts per mailbox and what was last published per name."""

    def __init__(self, publish: Callable[[MwiUpdate], None]) -> None:
        self._publish = publish
        self._boxes: dict[MailboxRef, _Box] = {}
        self._names: dict[str, _Name] = {}
        self._seq = 0  # numbers recounts as they begin, and local changes (all boxes)

    # -- published names --------------------------------------------------------------------
    def add_name(self, name: str, boxes: Sequence[MailboxRef], *, mailbox: str = "",
                 context: str = "") -> None:
        """Publish `name` with the sum of `boxes`' counts. `mailbox`/`context` are what
        externnotify and AMI receive (default: the single box's, or the name itself)."""
        if name in self._names:
            return
        if not mailbox:
            if len(boxes) == 1:
                mailbox, context = boxes[0].mailbox, boxes[0].context
            else:
                mailbox, context = name, ""
        self._names[name] = _Name(tuple(boxes), mailbox, context)
        for b in boxes:
            if b not in self._boxes:  # a recount begun before it was watched (again) is void
                self._seq += 1
                self._boxes[b] = _Box(floor=self._seq)
            self._boxes[b].names.add(name)
        self._emit(name)  # known counts (another name watched the same box) publish at once

    def remove_name(self, name: str) -> list[MailboxRef]:
        """Forget a name; returns the boxes no name needs any more."""
        entry = self._names.pop(name, None)
        orphans = []
        for b in entry.boxes if entry else ():
            box = self._boxes.get(b)
            if box is not None:
                box.names.discard(name)
                if not box.names:
                    del self._boxes[b]
                    orphans.append(b)
        return orphans

    def names(self) -> list[str]:
        return list(self._names)

    def boxes_of(self, name: str) -> tuple[MailboxRef, ...]:
        entry = self._names.get(name)
        return entry.boxes if entry else ()

    def boxes(self) -> list[MailboxRef]:
        return list(self._boxes)

    # -- reading ----------------------------------------------------------------------------
    def counts(self, box: MailboxRef) -> Counts | None:
        b = self._boxes.get(box)
        return b.counts if b else None

    def is_stale(self, box: MailboxRef) -> bool:
        b = self._boxes.get(box)
        return bool(b and b.stale)

    def last_published(self, name: str) -> MwiUpdate | None:
        entry = self._names.get(name)
        return entry.last if entry else None

    # -- changes ----------------------------------------------------------------------------
    def begin_recount(self, box: MailboxRef) -> int:
        """Call before asking the server; pass the token to `confirm`."""
        b = self._boxes.get(box)
        self._seq += 1
        return self._seq if b is not None else 0

    def confirm(self, box: MailboxRef, counts: Counts, token: int) -> bool:
        """A recount's result. Returns False when it was discarded: a local change happened
        while it ran (the caller should recount again), or a recount that began after it was
        accepted first (its result is at least as new as this one's)."""
        b = self._boxes.get(box)
        if b is None:
            return True  # nobody watches it any more
        if token < b.floor or b.open_local:
            return False
        b.floor = token + 1
        b.counts, b.stale = counts, False
        self._changed(b)
        return True

    def _fence(self, b: _Box) -> None:
        """A local change: recounts that began before it may predate it."""
        self._seq += 1
        b.floor = self._seq

    def begin_local(self, box: MailboxRef) -> None:
        """A local change is about to reach the server. Recounts completing before
        `apply_local` (or `cancel_local`), or started before it, may or may not include it, so
        their results are discarded; the delta is then applied to the counts confirmed before
        the change, exactly once."""
        b = self._boxes.get(box)
        if b is not None:
            self._fence(b)
            b.open_local += 1

    def cancel_local(self, box: MailboxRef) -> None:
        """The change announced by `begin_local` failed: nothing to apply."""
        b = self._boxes.get(box)
        if b is not None:
            self._fence(b)
            b.open_local = max(0, b.open_local - 1)

    def apply_local(self, box: MailboxRef, delta: Counts | None = None, *,
                    counts: Counts | None = None) -> None:
        """A change imapvm made itself, applied before the server confirms it: `delta` (e.g.
        Counts(new=1) for a deposit) or exact `counts` (a phone session knows them). With
        unknown counts a delta is ignored: the first recount will bring the truth."""
        b = self._boxes.get(box)
        if b is None:
            return
        self._fence(b)
        b.open_local = max(0, b.open_local - 1)
        if counts is not None:
            b.counts = counts
        elif delta is not None and b.counts is not None:
            b.counts = _add(b.counts, delta)
        else:
            return
        self._changed(b)

    def add_pending(self, box: MailboxRef, delta: Counts) -> None:
        """A change accepted but not yet on the server (a deposit held by the outbox while
        IMAP is down): shown on top of the server's counts until `settle_pending`, so neither
        a recount nor a reconnect can turn the lamp off in between."""
        b = self._boxes.get(box)
        if b is not None:
            b.pending = _add(b.pending, delta)
            self._changed(b)

    def settle_pending(self, box: MailboxRef, delta: Counts, *, delivered: bool) -> None:
        """The pending change reached the server (call between `begin_local` and here, so no
        recount racing the delivery is trusted), or was given up (`delivered=False`)."""
        b = self._boxes.get(box)
        if b is None:
            return
        b.pending = _add(b.pending, Counts(-delta.new, -delta.old, -delta.urgent))
        if delivered:
            self._fence(b)
            b.open_local = max(0, b.open_local - 1)
            if b.counts is not None:
                b.counts = _add(b.counts, delta)
        self._changed(b)

    def mark_stale(self, boxes: Iterable[MailboxRef]) -> None:
        """IMAP is unreachable for these boxes: keep their counts, mark them stale."""
        for box in boxes:
            b = self._boxes.get(box)
            if b is not None and not b.stale:
                b.stale = True
                self._changed(b)

    # -- publication ------------------------------------------------------------------------
    def _changed(self, b: _Box) -> None:
        for name in sorted(b.names):
            self._emit(name)

    def _emit(self, name: str) -> None:
        entry = self._names[name]
        parts = [self._boxes[b] for b in entry.boxes]
        if any(p.counts is None for p in parts):
            return  # never publish a guess: wait until every part has been counted
        shown = [_add(p.counts, p.pending) for p in parts if p.counts]
        new = sum(c.new for c in shown)
        old = sum(c.old for c in shown)
        urgent = sum(c.urgent for c in shown)
        stale = any(p.stale for p in parts)
        last = entry.last
        if last is not None and (last.new, last.old, last.urgent, last.stale) == (
                new, old, urgent, stale):
            return
        changed = last is None or (last.new, last.old, last.urgent) != (new, old, urgent)
        update = MwiUpdate(name, entry.mailbox, entry.context, new, old, urgent, stale, changed)
        entry.last = update
        log.debug("mwi %s: new %d old %d urgent %d%s", name, new, old, urgent,
                  " (stale)" if stale else "")
        self._publish(update)


def _add(a: Counts, b: Counts) -> Counts:
    """Sum, clamped at zero: counts are never negative."""
    return Counts(new=max(0, a.new + b.new), old=max(0, a.old + b.old),
                  urgent=max(0, a.urgent + b.urgent))
