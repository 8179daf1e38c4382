"""What imapvm knows of one IMAP folder, kept across restarts.

Counting a mailbox exactly needs to know which messages of the folder are its voicemails: IMAP's
HEADER search matches substrings, so each candidate's identifying headers are fetched once and
compared (store.py). Headers never change, so what was identified stays identified for the
folder's UIDVALIDITY; this module keeps that knowledge (``FolderIndex``) and, on servers with
CONDSTORE (RFC 7162), the last exact view of the folder together with the folder's STATUS
(UIDNEXT, MESSAGES, HIGHESTMODSEQ) when that view was taken. While STATUS is unchanged nothing in
the folder changed (any flag change, arrival or expunge moves HIGHESTMODSEQ or MESSAGES), so the
view is still exact and opening the mailbox costs one STATUS, whatever the folder's size.

``IndexFiles`` persists indexes as small JSON files (one per account, folder and UIDVALIDITY),
so the first open after a restart costs what a warm one does. The files are a cache: unreadable
or stale ones are ignored and rebuilt, a directory that cannot be written costs only speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

Who = tuple[str, str]  # (extension tag, context)
#: STATUS of a folder: (UIDNEXT, MESSAGES, HIGHESTMODSEQ).
Status = tuple[int, int, int]
#: 3: indexes written before the header scan ignored NOTIFY's reports of other messages may
#: lack a voicemail for good (checked past it, never matched); they are rebuilt once.
#: 4: types are grouped by type (``{"Message": [uids]}``), read without a loop per message.
_VERSION = 4


class _OtherVersion(ValueError):
    """An index of another version: rebuilt without a warning (every folder after an upgrade)."""


@dataclass(frozen=True)
class Key:
    """The identifying headers of one message (a saved index keeps the type, not the
    Message-ID, which only operations on a proven message read, from the server)."""

    ext: str
    ctx: str
    mtype: str
    message_id: str


@dataclass
class View:
    """One box's exact view of the folder as it was at ``status``: its undeleted messages and
    which of them are \\Seen or \\Flagged (only the box's own messages are kept)."""

    status: Status
    present: set[int]
    seen: set[int]
    flagged: set[int]


@dataclass
class FolderIndex:
    keys: dict[int, Key] = field(default_factory=dict)
    checked: dict[Who, int] = field(default_factory=dict)  # highest UID examined, per box
    matches: dict[Who, set[int]] = field(default_factory=dict)
    views: dict[Who, View] = field(default_factory=dict)
    # Not saved: per (box, greeting kind), the view the store last answered from and its
    # answer (the store's scan), reused while that very view object is current.
    answers: dict[tuple[Who, str | None], tuple[View, object]] = field(
        default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict[str, object]:
        boxes = []
        for who, top in self.checked.items():
            uids = [u for u in sorted(self.matches.get(who, ())) if u in self.keys]
            types: dict[str, list[int]] = {}
            for u in uids:
                if mtype := self.keys[u].mtype:
                    types.setdefault(mtype, []).append(u)
            view = self.views.get(who)
            boxes.append({
                "ext": who[0], "ctx": who[1], "checked": top,
                "matches": uids,
                "types": types,
                "view": None if view is None else {
                    "status": list(view.status), "present": sorted(view.present),
                    "seen": sorted(view.seen), "flagged": sorted(view.flagged)},
            })
        return {"version": _VERSION, "boxes": boxes}

    @classmethod
    def from_json(cls, data: object) -> FolderIndex:
        """Raises ValueError (or KeyError/TypeError) on anything not written by `to_json`."""
        if isinstance(data, dict) and isinstance(data.get("version"), int) \
                and data["version"] != _VERSION:
            raise _OtherVersion(f"an index of version {data['version']}")
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ValueError("not an index of this version")
        # Read at the first open of a folder in a new process, so kept to C-level loops: one
        # shared Key per box and type (Keys are frozen), map(int) for the UID lists (a Key per
        # message took 8 ms for 5,000 voicemails, a fifth of the cold open).
        index = cls()
        for box in data["boxes"]:
            who = (str(box["ext"]), str(box["ctx"]))
            index.checked[who] = int(box["checked"])
            uids = list(map(int, box["matches"]))
            matched = index.matches.setdefault(who, set())
            matched.update(uids)
            index.keys.update(dict.fromkeys(uids, Key(who[0], who[1], "", "")))
            types = box["types"]
            if not isinstance(types, dict):
                raise TypeError("types is not an object")
            for mtype, typed in types.items():
                key = Key(who[0], who[1], str(mtype), "")
                # types are kept for this box's matches only
                index.keys.update(dict.fromkeys(matched.intersection(map(int, typed)), key))
            view = box.get("view")
            if view is not None:
                a, b, c = map(int, view["status"])
                index.views[who] = View((a, b, c), set(map(int, view["present"])),
                                        set(map(int, view["seen"])),
                                        set(map(int, view["flagged"])))
        return index


class IndexFiles:
    """Folder indexes on disk under ``directory`` (None: kept in memory only)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._writing: dict[Path, asyncio.Task[None]] = {}
        self._dirty: dict[Path, FolderIndex] = {}
        self._warned = False

    def _path(self, account: str, folder: str, validity: int) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(f"{account}\0{folder}".encode()).hexdigest()[:32]
        return self.directory / f"{digest}-{validity}.json"

    def load(self, account: str, folder: str, validity: int) -> FolderIndex:
        """The saved index of this folder (an empty one when there is none or it is unusable).
        Small files: read in the caller's thread (a few ms for a folder of 10,000 messages)."""
        path = self._path(account, folder, validity)
        if path is None:
            return FolderIndex()
        try:
            return FolderIndex.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return FolderIndex()
        except _OtherVersion as exc:
            log.debug("folder index %s is %s; rebuilding it", path, exc)
            return FolderIndex()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("folder index %s unusable (%s); rebuilding it", path, exc)
            return FolderIndex()

    def save(self, account: str, folder: str, validity: int, index: FolderIndex) -> None:
        """Write the index in the background; writes of one folder never overlap, and a burst
        of changes costs one write after the one running."""
        path = self._path(account, folder, validity)
        if path is None:
            return
        self._dirty[path] = index
        if path not in self._writing:
            self._writing[path] = asyncio.get_running_loop().create_task(self._writer(path))

    async def _writer(self, path: Path) -> None:
        try:
            while path in self._dirty:
                index = self._dirty.pop(path)
                data = json.dumps(index.to_json(), separators=(",", ":")).encode()
                await asyncio.to_thread(self._write, path, data)
        finally:
            self._writing.pop(path, None)

    def _write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot write folder indexes under %s (%s); the first open of "
                            "each folder after a restart will scan it", self.directory, exc)

    async def flush(self) -> None:
        """Wait for the writes in progress (tests, shutdown)."""
        while self._writing:
            await asyncio.gather(*list(self._writing.values()))
