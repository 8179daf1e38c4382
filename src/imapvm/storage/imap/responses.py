"""Interpretation of parsed IMAP data (FETCH, STATUS, ESEARCH, SEARCH, LIST, NAMESPACE, QUOTA).

`protocol.py` gives values close to the wire; these helpers turn them into plain Python values
and never raise on odd but legal server output: unknown items are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from imapvm.storage.imap.protocol import Response, Value


def _text(v: Value) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else ""


def _int(v: Value) -> int | None:
    return int(v) if isinstance(v, bytes) and v.isdigit() else None


@dataclass
class FetchItem:
    """One message's FETCH data, merged across responses (servers may split them)."""

    seq: int
    uid: int | None = None
    flags: frozenset[str] | None = None
    size: int | None = None
    modseq: int | None = None
    sections: dict[str, bytes] | None = None  # upper-cased "BODY[...]" name -> content

    def section(self, prefix: str) -> bytes | None:
        """The first section whose name starts with `prefix` (e.g. "BODY[HEADER")."""
        for name, data in (self.sections or {}).items():
            if name.startswith(prefix.upper()):
                return data
        return None


def fetch_items(responses: Iterable[Response]) -> dict[int, FetchItem]:
    """FETCH responses keyed by sequence number, merged per message.

    Responses are taken in order, and an EXPUNGE among them (a server may send one during a
    UID command, and NOTIFY pushes others' expunges at any time) renumbers the messages after
    it, as it does on the server: without that, the data of two different messages that held
    the same number before and after the expunge would be merged into one item, under the
    wrong UID. A message expunged after its data arrived keeps that data, under a key below
    zero (out of the way of the sequence numbers)."""
    out: dict[int, FetchItem] = {}
    gone = 0
    for r in responses:
        if r.name == "EXPUNGE" and r.number is not None:
            shifted: dict[int, FetchItem] = {}
            for seq, item in out.items():
                if seq == r.number:
                    gone += 1
                    shifted[-gone] = item
                else:
                    shifted[seq - 1 if seq > r.number else seq] = item
            out = shifted
            continue
        if r.name != "FETCH" or r.number is None or not r.values:
            continue
        data = r.values[0]
        if not isinstance(data, list):
            continue
        item = out.setdefault(r.number, FetchItem(seq=r.number))
        for i in range(0, len(data) - 1, 2):
            key, val = data[i], data[i + 1]
            if not isinstance(key, bytes):
                continue
            k = key.upper()
            if k == b"UID":
                item.uid = _int(val)
            elif k == b"FLAGS" and isinstance(val, list):
                item.flags = frozenset(_text(f) for f in val if isinstance(f, bytes))
            elif k == b"RFC822.SIZE":
                item.size = _int(val)
            elif k == b"MODSEQ" and isinstance(val, list) and val:
                item.modseq = _int(val[0])
            elif k.startswith((b"BODY[", b"BINARY[", b"RFC822")):
                if item.sections is None:
                    item.sections = {}
                item.sections[k.decode("ascii", "replace")] = val if isinstance(val, bytes) else b""
    return out


def by_uid(items: dict[int, FetchItem]) -> dict[int, FetchItem]:
    return {i.uid: i for i in items.values() if i.uid is not None}


def status_items(responses: Iterable[Response]) -> dict[str, dict[str, int]]:
    """STATUS responses: folder name (as sent by the server, still modified UTF-7) -> items."""
    out: dict[str, dict[str, int]] = {}
    for r in responses:
        if r.name != "STATUS" or len(r.values) < 2 or not isinstance(r.values[1], list):
            continue
        items = r.values[1]
        d = out.setdefault(_text(r.values[0]), {})
        for i in range(0, len(items) - 1, 2):
            n = _int(items[i + 1])
            if isinstance(items[i], bytes) and n is not None:
                d[_text(items[i]).upper()] = n
    return out


def search_uids(responses: Iterable[Response]) -> list[int]:
    """Numbers from SEARCH, or the ALL set of an ESEARCH response."""
    out: list[int] = []
    for r in responses:
        if r.name == "SEARCH":
            out += [n for v in r.values if (n := _int(v)) is not None]
        elif r.name == "ESEARCH":
            res = esearch(r)
            if "ALL" in res:
                out += expand_set(res["ALL"])
    return out


def esearch(r: Response) -> dict[str, str]:
    """ESEARCH result items, e.g. {"COUNT": "17", "ALL": "1:3,9"}."""
    vals = [v for v in r.values if not isinstance(v, list)]  # drop the (TAG "x") correlator
    if vals and isinstance(vals[0], bytes) and vals[0].upper() == b"UID":
        vals = vals[1:]
    out: dict[str, str] = {}
    for i in range(0, len(vals) - 1, 2):
        out[_text(vals[i]).upper()] = _text(vals[i + 1])
    return out


def expand_set(text: str) -> list[int]:
    """'1:3,9' -> [1, 2, 3, 9] (no '*': servers never send it in results)."""
    out: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        a, _, b = part.partition(":")
        lo, hi = int(a), int(b or a)
        if lo > hi:
            lo, hi = hi, lo
        out.extend(range(lo, hi + 1))
    return out


def compress_set(uids: Iterable[int]) -> str:
    """[1, 2, 3, 9] -> '1:3,9' (what UID commands take)."""
    nums = sorted(set(uids))
    if not nums:
        raise ValueError("empty message set")
    parts: list[str] = []
    start = prev = nums[0]
    for n in nums[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = n
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


@dataclass(frozen=True)
class ListEntry:
    attributes: frozenset[str]
    delimiter: str | None
    name: str  # still modified UTF-7


def list_entries(responses: Iterable[Response]) -> list[ListEntry]:
    out = []
    for r in responses:
        if r.name not in ("LIST", "LSUB") or len(r.values) < 3:
            continue
        attrs, delim, name = r.values[0], r.values[1], r.values[2]
        out.append(ListEntry(
            attributes=frozenset(_text(a).upper() for a in attrs if isinstance(a, bytes))
            if isinstance(attrs, list) else frozenset(),
            delimiter=_text(delim) if isinstance(delim, bytes) else None,
            name=_text(name),
        ))
    return out


def personal_namespace(responses: Iterable[Response]) -> tuple[str, str | None] | None:
    """(prefix, delimiter) of the first personal namespace, or None if the server gave none."""
    for r in responses:
        if r.name == "NAMESPACE" and r.values and isinstance(r.values[0], list) and r.values[0]:
            first = r.values[0][0]
            if isinstance(first, list) and len(first) >= 2:
                delim = first[1]
                return _text(first[0]), _text(delim) if isinstance(delim, bytes) else None
    return None


@dataclass(frozen=True)
class Quota:
    """STORAGE usage and limit in KiB, MESSAGE usage and limit in messages (None = no limit)."""

    storage_used: int | None = None
    storage_limit: int | None = None
    messages_used: int | None = None
    messages_limit: int | None = None


def quota(responses: Iterable[Response]) -> Quota:
    """The tightest limits across the QUOTA responses of GETQUOTAROOT."""
    su = sl = mu = ml = None
    best_storage: float = -1.0
    best_messages: float = -1.0
    for r in responses:
        if r.name != "QUOTA" or len(r.values) < 2 or not isinstance(r.values[1], list):
            continue
        items = r.values[1]
        for i in range(0, len(items) - 2, 3):
            res, used, limit = _text(items[i]).upper(), _int(items[i + 1]), _int(items[i + 2])
            if used is None or not limit:
                continue
            ratio = used / limit
            if res == "STORAGE" and ratio > best_storage:
                best_storage, su, sl = ratio, used, limit
            elif res == "MESSAGE" and ratio > best_messages:
                best_messages, mu, ml = ratio, used, limit
    return Quota(su, sl, mu, ml)
