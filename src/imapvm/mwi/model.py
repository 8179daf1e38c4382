"""What the MWI layer publishes: one `MwiUpdate` per published name and change.

A *published name* is what a phone or the PBX subscribes to: a mailbox (`100@default`), an alias
from `aliasescontext` (`5100@aliases`, same counts as its target) or a comma-separated list of
mailboxes (`100@default,101@default`, counts summed, as Asterisk's `inboxcount2`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imapvm.storage.base import MailboxRef


@dataclass(frozen=True)
class MwiUpdate:
    """The state of one published name.

    `new` excludes urgent, as Asterisk's `inboxcount2` (what externnotify receives); the lamp
    shows `mwi_new` = new + urgent (`queue_mwi_event`). `stale` means IMAP could not be reached:
    the counts are the last known ones, kept rather than turned to zero. `counts_changed` is
    False when only `stale` changed (sinks that only carry numbers, such as externnotify or AMI,
    skip those)."""

    name: str
    mailbox: str
    context: str
    new: int
    old: int
    urgent: int
    stale: bool = False
    counts_changed: bool = True

    @property
    def mwi_new(self) -> int:
        return self.new + self.urgent

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name, "mailbox": self.mailbox, "context": self.context,
            "new": self.mwi_new, "old": self.old, "urgent": self.urgent,
            "new_not_urgent": self.new, "stale": self.stale,
        }


def parse_boxes(spec: str | MailboxRef | Sequence[MailboxRef],
                default_context: str = "default") -> tuple[str, list[MailboxRef]]:
    """`"100@default,101"` -> (normalised published name, component mailboxes). Both `,` and `&`
    separate mailboxes (Asterisk's `has_voicemail` accepts either)."""
    if isinstance(spec, MailboxRef):
        return str(spec), [spec]
    if not isinstance(spec, str):
        boxes = list(dict.fromkeys(spec))
        return ",".join(str(b) for b in boxes), boxes
    parts = [p for p in spec.replace("&", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError(f"no mailbox in {spec!r}")
    boxes = list(dict.fromkeys(MailboxRef.parse(p, default_context) for p in parts))
    return ",".join(str(b) for b in boxes), boxes
