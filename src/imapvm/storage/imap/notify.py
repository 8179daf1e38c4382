"""What a watcher asks of the server and how it reads the answers: NOTIFY SET arguments
(RFC 5465) and the sorting of untagged pushes into "this folder changed". Pure functions."""

from __future__ import annotations

from collections.abc import Iterable

from imapvm.storage.imap.protocol import Raw, Response, quote

_FOLDER_EVENTS = b"(MessageNew MessageExpunge FlagChange)"
_SELECTED_EVENTS = b"(selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))"


def notify_set(others: Iterable[str]) -> tuple[str, Raw]:
    """Arguments of `NOTIFY SET`: every change of the selected folder (new messages with their
    UID and flags, expunges, flag changes) plus new/expunged/flag events of `others` (reported
    as STATUS)."""
    spec = _SELECTED_EVENTS
    names = sorted(set(others))
    if names:
        spec += b" (mailboxes (" + b" ".join(quote(f) for f in names) + b") " + \
            _FOLDER_EVENTS + b")"
    return "SET", Raw(spec)


def changed_folder(r: Response, selected: str | None) -> str | None:
    """The folder whose content an untagged response says changed, or None if it says
    nothing of the sort. EXISTS / EXPUNGE / VANISHED / FETCH concern the selected folder; FETCH
    responses carrying BODY sections answer our own header fetches and are not changes; STATUS
    (NOTIFY's report for other folders) names its folder."""
    if r.kind != "untagged":
        return None
    if r.name == "STATUS":
        name = r.values[0] if r.values else b""
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else ""
    if r.name in ("EXISTS", "EXPUNGE", "VANISHED") or (
            r.name == "FETCH" and b"BODY[" not in r.raw.upper()):
        return selected or ""
    return None
