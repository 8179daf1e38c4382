"""The counts tracker: the single place that decides what the lamp shows.

Rules (DESIGN.md principle 5, Asterisk known issues #4 and #5):
- publish only when a published name's (new, old, urgent) or staleness changes;
- never a transient zero: a local change (deposit, phone session) is applied at once, and a
  recount that was already running when it happened is discarded instead of published (it may
  predate the change), so the lamp never goes back and forth;
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
    local_seq: int = 0  # bumped by every local change; recounts started before it are discarded
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
            self._boxes.setdefault(b, _Box()).names.add(name)
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
        return b.local_seq if b else 0

    def confirm(self, box: MailboxRef, counts: Counts, token: int) -> bool:
        """A recount's result. Returns False when it was discarded because a local change
        happened while it ran (the caller should recount again)."""
        b = self._boxes.get(box)
        if b is None:
            return True  # nobody watches it any more
        if b.local_seq != token:
            return False
        b.counts, b.stale = counts, False
        self._changed(b)
        return True

    def apply_local(self, box: MailboxRef, delta: Counts | None = None, *,
                    counts: Counts | None = None) -> None:
        """A change imapvm made itself, applied before the server confirms it: `delta` (e.g.
        Counts(new=1) for a deposit) or exact `counts` (a phone session knows them). With
        unknown counts a delta is ignored: the first recount will bring the truth."""
        b = self._boxes.get(box)
        if b is None:
            return
        b.local_seq += 1
        if counts is not None:
            b.counts = counts
        elif delta is not None and b.counts is not None:
            c = b.counts
            b.counts = Counts(new=max(0, c.new + delta.new), old=max(0, c.old + delta.old),
                              urgent=max(0, c.urgent + delta.urgent))
        else:
            return
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
        new = sum(p.counts.new for p in parts if p.counts)
        old = sum(p.counts.old for p in parts if p.counts)
        urgent = sum(p.counts.urgent for p in parts if p.counts)
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
