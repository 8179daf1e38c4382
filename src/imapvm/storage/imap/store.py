"""The IMAP back end of the Store protocol.

Promises kept here (DESIGN.md, principles 1-3):
- Voicemail is recognised by an *exact* match of X-Asterisk-VM-Extension (or imapvmshareid) and
  X-Asterisk-VM-Context. IMAP's HEADER search matches substrings, so its hits are only candidates,
  filtered by the header values (cached per UIDVALIDITY: headers never change).
- Everything is addressed by UID + UIDVALIDITY; a stale reference raises MessageGone.
- Reading never marks anything read (BODY.PEEK); `mark_heard` sets \\Seen explicitly.
- Deleting never expunges any other message (see `expunge.py` for the strategy per server).
- Counting costs a constant number of round trips whatever the folder size: one SEARCH for the
  candidates, one FETCH of their flags (plus headers of candidates never seen before).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from imapvm.storage.audio_parts import AudioPart, VoicemailAudio, extract_audio
from imapvm.storage.base import (
    Counts,
    Folder,
    GreetingKind,
    MailboxFull,
    MailboxRef,
    MessageGone,
    MessageRef,
    NotAVoicemail,
    QuotaInfo,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)
from imapvm.storage.imap import expunge
from imapvm.storage.imap.account import Account, ImapSettings, labelled
from imapvm.storage.imap.connection import (
    ConnectionLost,
    ImapConnection,
    ImapError,
    Result,
    default_tls_context,
)
from imapvm.storage.imap.folder_index import FolderIndex, IndexFiles, Key, Status, View
from imapvm.storage.imap.protocol import Literal, Raw, quote
from imapvm.storage.imap.push import PushHub
from imapvm.storage.imap.responses import (
    by_uid,
    compress_set,
    fetch_items,
    quota,
    search_uids,
    status_items,
)
from imapvm.storage.imap.watch import ImapWatcher
from imapvm.storage.lockout import LockoutUnsupported
from imapvm.storage.watching import (
    BoxWatcher,
    ConnectionLimiter,
    CountsReceiver,
    WatchOptions,
)

log = logging.getLogger(__name__)

EXT = "X-Asterisk-VM-Extension"
CTX = "X-Asterisk-VM-Context"
TYPE = "X-Asterisk-VM-Message-Type"
_KEY_FIELDS = f"({EXT} {CTX} {TYPE} Message-ID)"
_GREETING_TYPES = {k.value for k in GreetingKind}
T = TypeVar("T")


def _lockout_entry(box: MailboxRef) -> bytes:
    """`/private/vendor/imapvm/lockout-<context>-<mailbox>` (RFC 5464 vendor entry)."""
    parts = [re.sub(r"[^A-Za-z0-9_.+-]", "_", p) for p in (box.context, box.mailbox)]
    return f"/private/vendor/imapvm/lockout-{parts[0]}-{parts[1]}".encode()


@dataclass(frozen=True)
class _Scan:
    """One view's answer, shared by every caller while the folder is unchanged: read-only."""

    validity: int
    uids: list[int]  # exactly this box's undeleted messages of the wanted kind, oldest first
    seen: set[int]
    flagged: set[int]
    _folders: dict[Folder, list[int]] = field(default_factory=dict, compare=False, repr=False)

    def in_folder(self, folder: Folder) -> list[int]:
        """The UIDs of ``folder``'s view (INBOX new, Old, Urgent), oldest first; worked out
        once per scan, so an unchanged folder of any size is counted and listed in O(1)."""
        got = self._folders.get(folder)
        if got is None:  # as _in_view, in set operations (a call per message took 3 ms)
            uids, seen, flagged = self.uids, self.seen, self.flagged
            if folder is Folder.INBOX:
                got = [u for u in uids if u not in seen and u not in flagged]
            elif folder is Folder.OLD:
                got = [u for u in uids if u in seen]
            elif folder is Folder.URGENT:
                got = [u for u in uids if u in flagged and u not in seen]
            else:
                got = list(uids)
            self._folders[folder] = got
        return got


@dataclass(frozen=True)
class _Proof:
    """A message proven to be a voicemail of the box, with its flags when it was proven."""

    flags: frozenset[str]
    message_id: str


def _headers(data: bytes) -> dict[str, str]:
    """Header block -> {lower-case name: unfolded value} (first occurrence wins).

    Deliberately small and fast (it runs once per new message in a folder): names are matched
    case-insensitively because Exchange lowercases them; values are kept as sent."""
    text = _FOLD.sub(" ", data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace"))
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name and not name[0].isspace() and " " not in name.strip():
            out.setdefault(name.strip().lower(), value.strip())
    return out


_FOLD = re.compile(r"\r?\n[ \t]+")


class ImapStore:
    """Store over IMAP. `settings_for` maps a mailbox to its IMAP settings (from config)."""

    def __init__(self, settings_for: Callable[[MailboxRef], ImapSettings],
                 index_dir: Path | None = None, push: PushHub | None = None) -> None:
        """`index_dir`: where folder indexes persist across restarts (None: memory only).
        `push`: watch in push mode (storage/imap/push.py) instead of a connection per login."""
        self._settings_for = settings_for
        self.push = push
        self._accounts: dict[tuple[object, ...], Account] = {}
        self._folders: dict[tuple[str, str, int], FolderIndex] = {}
        self.index_files = IndexFiles(index_dir)
        self._greetings: dict[tuple[str, str, int, int], AudioPart] = {}

    # -- plumbing -------------------------------------------------------------------------
    def account(self, box: MailboxRef) -> tuple[Account, ImapSettings]:
        s = self._settings_for(box)
        acct = self._accounts.get(s.identity)
        if acct is None:
            acct = self._accounts[s.identity] = Account(s)
        return acct, s

    # -- watching (the Store's watch capability) ------------------------------------------
    def watch_key(self, box: MailboxRef) -> Hashable:
        """Boxes of one login identity share a watcher and its connection; in push mode, the
        boxes of one IMAP server share one push watcher."""
        s = self.account(box)[1]
        if self.push is not None:
            return ("imap-push", s.host, s.port)
        return ("imap", s.identity)

    def new_watcher(self, box: MailboxRef, receiver: CountsReceiver,
                    options: WatchOptions, limiter: ConnectionLimiter) -> BoxWatcher:
        s = self.account(box)[1]
        if self.push is not None:
            return self.push.new_watcher(self, receiver, options, limiter,
                                         f"push {s.host}:{s.port}")
        return ImapWatcher(self, receiver, options, limiter, f"{s.user}@{s.host}:{s.port}")

    async def drop_idle_connections(self) -> None:
        """Log out pooled connections but keep what was learnt (server info, header cache)."""
        for acct in self._accounts.values():
            await acct.drop_idle()

    async def prewarm(self) -> None:
        """Work every first connection of a process would otherwise pay (the TLS context's CA
        store), done at start-up off the event loop."""
        await default_tls_context()

    async def aclose(self) -> None:
        for acct in self._accounts.values():
            await acct.aclose()
        self._accounts.clear()
        await self.index_files.flush()

    async def _select(self, conn: ImapConnection, name: str) -> int:
        """SELECT `name` unless it already is; returns its UIDVALIDITY."""
        if conn.selected is None or conn.selected.name != name:
            await conn.execute("SELECT", name)
        selected = conn.selected
        if selected is None or selected.name != name:  # an OK that selected nothing
            raise ImapError("SELECT", "NO", f"{name} was not selected")
        return selected.uidvalidity

    async def _select_refs(self, conn: ImapConnection, acct: Account, box: MailboxRef,
                           refs: Sequence[MessageRef]) -> None:
        """SELECT the folder of `refs` (all of one location and UIDVALIDITY), after checking
        that it is one of the box's voicemail folders: an id is user input."""
        ref = refs[0]
        if ref.location not in acct.voicemail_folder_names():
            raise NotAVoicemail(f"{_show(refs)}: {ref.location} is not a voicemail folder "
                                f"of {box}; not a voicemail of {box}")
        try:
            validity = await self._select(conn, ref.location)
        except ImapError as exc:
            acct.forget_folder(ref.location)
            raise MessageGone(f"{_show(refs)}: no such message (cannot open {ref.location}: "
                              f"{exc.text})") from None
        if validity != ref.validity:
            raise MessageGone(f"{_show(refs)}: folder was recreated (UIDVALIDITY {validity}); "
                              "no such message")

    async def _prove(self, conn: ImapConnection, acct: Account, s: ImapSettings, box: MailboxRef,
                     refs: Sequence[MessageRef], *, deleted_ok: bool = False,
                     ) -> tuple[dict[int, _Proof], list[MessageGone]]:
        """Which of `refs` (one location and UIDVALIDITY) are voicemails of `box`, proven by an
        exact match of their identifying headers, as listing matches them; the rest come back as
        errors (NotAVoicemail or MessageGone), untouched. A \\Deleted voicemail counts as gone
        unless `deleted_ok` (undelete). Leaves the folder selected."""
        await self._select_refs(conn, acct, box, refs)
        await conn.execute("NOOP")  # let the server report other clients' expunges first
        res = await conn.execute(
            "UID", "FETCH", Raw(compress_set(r.uid for r in refs).encode()),
            Raw(f"(UID FLAGS BODY.PEEK[HEADER.FIELDS {_KEY_FIELDS}])".encode()))
        items = by_uid(fetch_items(res.untagged))
        proven: dict[int, _Proof] = {}
        errors: list[MessageGone] = []
        for ref in refs:
            item = items.get(ref.uid)
            if item is None:
                errors.append(MessageGone(f"{ref}: no such message (expunged or moved)"))
                continue
            h = _headers(item.section("BODY[HEADER") or b"")
            if (h.get(EXT.lower(), "") != s.vm_tag or h.get(CTX.lower(), "") != s.context
                    or h.get(TYPE.lower(), "").lower() in _GREETING_TYPES):
                errors.append(NotAVoicemail(f"{ref}: not a voicemail of {box}"))
                continue
            flags = item.flags or frozenset()
            if "\\Deleted" in flags and not deleted_ok:
                errors.append(MessageGone(f"{ref}: no such message (deleted)"))
                continue
            proven[ref.uid] = _Proof(flags, h.get("message-id", ""))
        return proven, errors

    async def _prove_one(self, conn: ImapConnection, acct: Account, s: ImapSettings,
                         box: MailboxRef, ref: MessageRef, *, deleted_ok: bool = False) -> _Proof:
        proven, errors = await self._prove(conn, acct, s, box, [ref], deleted_ok=deleted_ok)
        if errors:
            raise errors[0]
        return proven[ref.uid]

    async def _scan(self, conn: ImapConnection, acct: Account, s: ImapSettings, name: str,
                    *, greetings: GreetingKind | None = None, reuse: bool = True) -> _Scan:
        """This box's undeleted voicemails (or greetings of one kind) in folder `name`, exactly
        matched, with their \\Seen and \\Flagged state.

        Two round trips in the steady state, whatever the folder size: a NOOP, then pipelined
        (where ESEARCH tags the answers) the undeleted,
        seen and unseen-flagged UID sets (flag searches the server answers from its index), and
        a HEADER search restricted to UIDs above the highest one already examined (headers never
        change, so what was matched once stays matched). Only new candidates cost a FETCH of
        their identifying headers.

        With `reuse` on a CONDSTORE server, one STATUS first: when the folder's UIDNEXT,
        MESSAGES and HIGHESTMODSEQ are those of the last exact view, nothing changed and that
        view is the answer (folder_index.py). Not on a watcher's connection (`reuse=False`),
        where an untagged STATUS would read as a push, and where a recount follows a change
        anyway."""
        validity = await self._select(conn, name)
        cache = self._index(acct, name, validity)
        who = (s.vm_tag, s.context)
        status = await self._status(conn, name) if reuse else None
        view = cache.views.get(who)
        if status is not None and view is not None and view.status == status:
            return self._result(cache, who, validity, view, greetings)
        upto = cache.checked.get(who, 0)
        esearch = conn.has("ESEARCH")
        ret = ("RETURN", Raw(b"(ALL)")) if esearch else ()
        # Sync the session's view with other clients' changes first. Not in the pipeline:
        # Dovecot would run the searches in parallel with it, on the stale view.
        await conn.execute("NOOP")
        commands: list[tuple[str, tuple[bytes | str | int, ...]]] = [
            ("UID", ("SEARCH", *ret, "UNDELETED")),
            ("UID", ("SEARCH", *ret, "UNDELETED", "SEEN")),
            ("UID", ("SEARCH", *ret, "UNDELETED", "UNSEEN", "FLAGGED")),
            # after the flag searches: whatever arrives in between is searched again next time
            ("UID", ("SEARCH", *ret, "UID", Raw(f"{upto + 1}:*".encode()),
                     "HEADER", EXT, s.vm_tag, "HEADER", CTX, s.context)),
        ]
        results: list[Result | ImapError]
        if esearch:  # ESEARCH responses carry their command's tag: safe to pipeline
            results = await conn.pipeline(commands)
        else:  # plain SEARCH responses could interleave: one at a time
            results = [await conn.execute(name, *args) for name, args in commands]
        sets: list[set[int]] = []
        for r in results:
            if isinstance(r, ImapError):
                raise r
            sets.append(set(search_uids(r.untagged)))
        present, seen, flagged, candidates = sets
        missing = sorted(u for u in candidates if u not in cache.keys)
        unanswered: set[int] = set()
        if missing:
            res = await conn.execute(
                "UID", "FETCH", Raw(compress_set(missing).encode()),
                Raw(f"(UID BODY.PEEK[HEADER.FIELDS {_KEY_FIELDS}])".encode()),
            )
            items = by_uid(fetch_items(res.untagged))
            # Only the headers asked for, as answered. On a watcher's connection NOTIFY also
            # reports new messages (`FETCH (UID n FLAGS ())`) while the command runs: taken as
            # answers, they filed those messages as not voicemail, for good (their UIDs are
            # not searched again), and the lamp stayed one message behind on that node.
            for uid in missing:
                item = items.get(uid)
                header = item.section("BODY[HEADER") if item is not None else None
                if header is None:
                    unanswered.add(uid)  # expunged meanwhile, or not answered: asked again
                    continue
                h = _headers(header)
                cache.keys[uid] = Key(h.get(EXT.lower(), ""), h.get(CTX.lower(), ""),
                                       h.get(TYPE.lower(), ""), h.get("message-id", ""))
        matches = cache.matches.setdefault(who, set())
        for uid in candidates:
            key = cache.keys.get(uid)
            if key is not None and key.ext == s.vm_tag and key.ctx == s.context:
                matches.add(uid)
        # Never forget a match here: a message missing from `present` may only be flagged
        # \\Deleted (and come back when the flag goes); UIDs are never reused within a
        # UIDVALIDITY, so keeping an expunged one is harmless (`matches & present` below).
        if present:
            top = max(present)
            if unanswered:  # search those again next time
                top = min(top, min(unanswered) - 1)
            cache.checked[who] = max(upto, top)
        if log.isEnabledFor(logging.DEBUG):  # what a wrong count would be traced back to
            def uids(s: Iterable[int]) -> str:
                return compress_set(s)[:80] if s else "-"

            log.debug("%s %s: %d undeleted, %d matched (not: %s); above %d: candidates %s, "
                      "fetched %s", acct.label, name, len(present), len(present & matches),
                      uids(present - matches), upto, uids(candidates), uids(missing))
        view = View(status or (0, 0, 0), present & matches, seen & matches, flagged & matches)
        if status is not None:
            cache.views[who] = view
        self.index_files.save(acct.label, name, validity, cache)
        return self._result(cache, who, validity, view, greetings)

    def _index(self, acct: Account, name: str, validity: int) -> FolderIndex:
        """The folder's index: in memory, else as saved by an earlier process."""
        key = (acct.label, name, validity)
        cache = self._folders.get(key)
        if cache is None:
            cache = self._folders[key] = self.index_files.load(acct.label, name, validity)
        return cache

    async def _status(self, conn: ImapConnection, name: str) -> Status | None:
        """The folder's (UIDNEXT, MESSAGES, HIGHESTMODSEQ), None without CONDSTORE."""
        if not conn.has("CONDSTORE"):
            return None
        # Dovecot answers STATUS of the selected folder from the session's view: sync it first
        # (not pipelined: Dovecot would run both at once).
        await conn.execute("NOOP")
        res = await conn.execute("STATUS", name, Raw(b"(UIDNEXT MESSAGES HIGHESTMODSEQ)"))
        for items in status_items(res.untagged).values():
            if {"UIDNEXT", "MESSAGES", "HIGHESTMODSEQ"} <= items.keys():
                return items["UIDNEXT"], items["MESSAGES"], items["HIGHESTMODSEQ"]
        return None

    @staticmethod
    def _result(cache: FolderIndex, who: tuple[str, str], validity: int, view: View,
                greetings: GreetingKind | None) -> _Scan:
        """The scan answered by ``view``: worked out once per view object (a new one after
        every change), so opening an unchanged folder costs the same at 100 messages as at
        10,000 (sorting and filtering 5,000 voicemails took ~3 ms per open)."""
        want = greetings.value if greetings else None
        known = cache.answers.get((who, want))
        if known is not None and known[0] is view and isinstance(known[1], _Scan):
            return known[1]
        keys, ours = cache.keys, sorted(view.present & cache.matches.get(who, set()))
        # one lower() per type, not per message: 5,000 voicemails share a few Keys' types
        kinds = {k.mtype for k in map(keys.__getitem__, ours)}
        wanted = {m for m in kinds if (m.lower() == want if want else
                                       m.lower() not in _GREETING_TYPES)}
        uids = ours if wanted == kinds else [u for u in ours if keys[u].mtype in wanted]
        scan = _Scan(validity, uids, view.seen, view.flagged)
        if cache.views.get(who) is view:  # a view kept for the next open (CONDSTORE): so is
            cache.answers[(who, want)] = (view, scan)  # its answer; none held otherwise
        return scan

    async def _voicemail_uids(self, conn: ImapConnection, acct: Account, s: ImapSettings,
                              name: str, *, greetings: GreetingKind | None = None) -> list[int]:
        return (await self._scan(conn, acct, s, name, greetings=greetings)).uids

    # -- counting and listing -------------------------------------------------------------
    async def select_main_folder(self, box: MailboxRef, conn: ImapConnection) -> str:
        """SELECT `box`'s main voicemail folder on `conn` (unless it already is) and return its
        name: an MWI watcher keeps it selected, so IDLE and NOTIFY report its changes."""
        acct, _ = self.account(box)
        name = acct.folder_name(Folder.INBOX)
        try:
            await acct.ensure_folder(conn, name)
            await self._select(conn, name)
        except ConnectionLost as exc:
            raise StoreUnavailable(labelled(acct.label, exc)) from exc
        except ImapError as exc:
            raise StoreError(labelled(acct.label, exc)) from exc
        return name

    async def counts(self, box: MailboxRef, *, conn: ImapConnection | None = None) -> Counts:
        """New, old and urgent of `box`. With `conn`, on that connection (an MWI watcher counts
        on the connection it idles on, so a watched account costs one connection, not two);
        else on a pooled one. A main folder that does not exist yet counts as empty."""
        acct, s = self.account(box)
        reuse = conn is None  # a watcher's connection: see _scan

        async def op(conn: ImapConnection) -> Counts:
            name = acct.folder_name(Folder.INBOX)
            if not await acct.folder_exists(conn, name):
                return Counts(folders={"INBOX": 0, "Old": 0, "Urgent": 0})
            scan = await self._scan(conn, acct, s, name, reuse=reuse)
            new, old = len(scan.in_folder(Folder.INBOX)), len(scan.in_folder(Folder.OLD))
            urgent = len(scan.in_folder(Folder.URGENT))
            return Counts(new=new, old=old, urgent=urgent,
                          folders={"INBOX": new, "Old": old, "Urgent": urgent})

        if conn is not None:
            try:
                return await op(conn)
            except ConnectionLost as exc:
                raise StoreUnavailable(labelled(acct.label, exc)) from exc
            except ImapError as exc:
                raise StoreError(labelled(acct.label, exc)) from exc
        return await acct.run(op)

    async def list(self, box: MailboxRef, folder: Folder,
                   limit: int | None = None) -> list[StoredMessage]:
        """Oldest first; with `limit`, only the first `limit` messages of the view (a phone
        session needs the first message at once, not the headers of a whole folder). A folder
        that does not exist yet is empty (and is not created: reading creates nothing)."""
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> list[StoredMessage]:
            name = acct.folder_name(folder)
            if not await acct.folder_exists(conn, name):
                return []
            scan = await self._scan(conn, acct, s, name)
            validity = scan.validity
            uids = scan.in_folder(folder)
            uids = uids[:limit] if limit is not None else list(uids)
            if not uids:
                return []
            res = await conn.execute(
                "UID", "FETCH", Raw(compress_set(uids).encode()),
                Raw(b"(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])"),
            )
            out = []
            for uid, item in sorted(by_uid(fetch_items(res.untagged)).items()):
                flags = item.flags or frozenset()
                seen, flagged = "\\Seen" in flags, "\\Flagged" in flags
                if "\\Deleted" in flags or not _in_view(folder, seen, flagged):
                    continue
                headers = _headers(item.section("BODY[HEADER") or b"")
                out.append(StoredMessage(
                    ref=MessageRef(name, validity, uid), folder=folder, seen=seen,
                    urgent=flagged and not seen, deleted=False, size=item.size or 0,
                    headers=headers,
                ))
            return out

        return await acct.run(op)

    async def fetch(self, box: MailboxRef, ref: MessageRef) -> bytes:
        """The whole voicemail, once `ref` is proven to be one of `box`'s (never marks read)."""
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> bytes:
            await self._prove_one(conn, acct, s, box, ref)
            res = await conn.execute("UID", "FETCH", ref.uid, Raw(b"(UID BODY.PEEK[])"))
            item = by_uid(fetch_items(res.untagged)).get(ref.uid)
            data = item.section("BODY[]") if item else None
            if data is None:
                raise MessageGone(f"{ref}: no such message (expunged or moved)")
            return data

        return await acct.run(op)

    async def fetch_audio(self, box: MailboxRef, ref: MessageRef,
                          prefer: tuple[str, ...] = ("wav", "wav49", "gsm")) -> VoicemailAudio:
        raw = await self.fetch(box, ref)
        return await asyncio.to_thread(extract_audio, raw, prefer)

    # -- flags ----------------------------------------------------------------------------
    async def _store_proven(self, conn: ImapConnection, ref: MessageRef, op_flags: str,
                            flags: str) -> None:
        """UID STORE on a proven message of the selected folder. A STORE that changes nothing
        may come back OK without a FETCH (Dovecot): only a UID SEARCH can say it is gone."""
        res = await conn.execute("UID", "STORE", ref.uid, op_flags, Raw(flags.encode()))
        if ref.uid in by_uid(fetch_items(res.untagged)):
            return
        found = await conn.execute("UID", "SEARCH", "UID", ref.uid)
        if ref.uid not in search_uids(found.untagged):
            raise MessageGone(f"{ref}: no such message (expunged or moved)")

    async def _store(self, box: MailboxRef, ref: MessageRef, op_flags: str, flags: str,
                     *, deleted_ok: bool = False) -> None:
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> None:
            await self._prove_one(conn, acct, s, box, ref, deleted_ok=deleted_ok)
            await self._store_proven(conn, ref, op_flags, flags)

        await acct.run(op)

    async def mark_heard(self, box: MailboxRef, ref: MessageRef) -> None:
        await self._store(box, ref, "+FLAGS", "(\\Seen)")

    async def mark_unheard(self, box: MailboxRef, ref: MessageRef) -> None:
        await self._store(box, ref, "-FLAGS", "(\\Seen)")

    async def undelete(self, box: MailboxRef, ref: MessageRef) -> None:
        """Clear \\Deleted (useful only where a deletion was left unexpunged)."""
        await self._store(box, ref, "-FLAGS", "(\\Deleted)", deleted_ok=True)

    # -- delete and move ------------------------------------------------------------------
    async def delete(self, box: MailboxRef, refs: Sequence[MessageRef]) -> None:
        """Delete the proven voicemails among `refs`; then, if any ref was not one (gone, or
        not a voicemail of `box`), raise MessageGone (NotAVoicemail if any was foreign) naming
        them. Only proven UIDs are ever flagged or expunged."""
        acct, s = self.account(box)
        by_location: dict[tuple[str, int], list[MessageRef]] = {}
        for ref in refs:
            by_location.setdefault((ref.location, ref.validity), []).append(ref)

        async def op(conn: ImapConnection) -> list[MessageGone]:
            errors: list[MessageGone] = []
            for group in by_location.values():
                try:
                    proven, refused = await self._prove(conn, acct, s, box, group)
                except MessageGone as exc:
                    errors.append(exc)
                    continue
                errors += refused
                await expunge.delete_exactly(conn, acct, sorted(proven),
                                             expunge=s.expunge_on_hangup)
            return errors

        errors = await acct.run(op)
        if errors:
            kind = NotAVoicemail if any(isinstance(e, NotAVoicemail) for e in errors) \
                else MessageGone
            raise kind("; ".join(str(e) for e in errors))

    async def save_to_folder(self, box: MailboxRef, ref: MessageRef, folder: Folder) -> MessageRef:
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> MessageRef:
            target = acct.folder_name(folder)  # here: the separator is known once connected
            proof = await self._prove_one(conn, acct, s, box, ref)
            if target == ref.location:  # Old <-> INBOX is a flag change, as in Asterisk
                if folder is Folder.OLD:
                    await self._store_proven(conn, ref, "+FLAGS", "(\\Seen)")
                elif folder is Folder.INBOX:
                    await self._store_proven(conn, ref, "-FLAGS", "(\\Seen)")
                return ref
            await acct.ensure_folder(conn, target)
            await self._select_refs(conn, acct, box, [ref])
            new = await expunge.move_exactly(conn, acct, ref.uid, target)
            if new is None:  # no UIDPLUS: find it again by Message-ID
                if not proof.message_id:
                    raise StoreError(f"{ref}: moved to {target}, but cannot tell its new UID")
                new = await self.find_by_message_id(conn, target, proof.message_id)
            if folder is Folder.OLD:
                await self._select(conn, target)
                await conn.execute("UID", "STORE", new.uid, "+FLAGS.SILENT", Raw(b"(\\Seen)"))
            return new

        # Not retried: a move is not idempotent once the copy is made.
        return await acct.run(op, retries=0)

    # -- deposits -------------------------------------------------------------------------
    async def quota(self, box: MailboxRef) -> QuotaInfo:
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> QuotaInfo:
            name = acct.folder_name(Folder.INBOX)
            exists = await acct.folder_exists(conn, name)
            uids = await self._voicemail_uids(conn, acct, s, name) if exists else []
            used = limit = None
            if conn.has("QUOTA"):
                try:
                    root = name if exists else "INBOX"
                    q = quota((await conn.execute("GETQUOTAROOT", root)).untagged)
                    used, limit = q.storage_used, q.storage_limit
                except ImapError as exc:
                    log.info("%s: GETQUOTAROOT refused: %s", acct.label, exc)
            return QuotaInfo(storage_used=used, storage_limit=limit, messages=len(uids),
                             maxmsg=s.maxmsg or None)

        return await acct.run(op)

    # -- login lockout state (storage.lockout) -------------------------------------------
    async def read_lockout(self, box: MailboxRef) -> bytes | None:
        """The mailbox's failed-login state from a private METADATA entry of its voicemail
        folder (RFC 5464): every node logging in as this user sees the same value, and no
        mail client shows it. LockoutUnsupported when the server has no METADATA."""
        acct, _ = self.account(box)
        entry = _lockout_entry(box)

        async def op(conn: ImapConnection) -> bytes | None:
            name = await self._metadata_folder(conn, acct)
            res = await conn.execute("GETMETADATA", name, Raw(b"(" + entry + b")"))
            for r in res.named("METADATA"):
                pairs = r.values[1] if len(r.values) > 1 else None
                if isinstance(pairs, list):
                    for key, value in zip(pairs[::2], pairs[1::2], strict=False):
                        if isinstance(key, bytes) and key.lower() == entry.lower():
                            return value if isinstance(value, bytes) else None
            return None

        return await self._lockout_op(acct, op)

    async def write_lockout(self, box: MailboxRef, data: bytes | None) -> None:
        acct, _ = self.account(box)
        entry = _lockout_entry(box)
        value = quote(data) if data else b"NIL"

        async def op(conn: ImapConnection) -> None:
            name = await self._metadata_folder(conn, acct)
            await conn.execute("SETMETADATA", name, Raw(b"(" + entry + b" " + value + b")"))

        await self._lockout_op(acct, op)

    async def _metadata_folder(self, conn: ImapConnection, acct: Account) -> str:
        if not conn.has("METADATA"):
            raise LockoutUnsupported(f"{acct.label}: the IMAP server offers no METADATA")
        name = acct.folder_name(Folder.INBOX)
        await acct.ensure_folder(conn, name)
        return name

    async def _lockout_op(self, acct: Account, op: Callable[[ImapConnection], Awaitable[T]]) -> T:
        async def guarded(conn: ImapConnection) -> T:
            try:
                return await op(conn)
            except ImapError as exc:
                if exc.status != "NO" or not exc.command.endswith("METADATA"):
                    raise
                # Stock Cyrus refuses entries it has no definition for.
                raise LockoutUnsupported(
                    f"{acct.label}: the server refuses the METADATA entry ({exc.text}); on "
                    "Cyrus set annotation_allow_undefined: 1 or define /private/vendor/imapvm/ "
                    "entries in annotation_definitions") from exc

        try:
            return await acct.run(guarded)
        except ImapError as exc:
            raise StoreError(f"{acct.label}: {exc}") from exc
        except ConnectionLost as exc:
            raise StoreUnavailable(f"{acct.label}: {exc}") from exc

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False) -> MessageRef:
        """APPEND a new voicemail. Raises MailboxFull before trying when over maxmsg or quota.

        Not retried here: a deposit that may or may not have landed is the outbox's business
        (it searches by Message-ID before trying again, so nothing lands twice)."""
        acct, _ = self.account(box)
        q = await self.quota(box)
        incoming = (len(email) + 1023) // 1024
        if q.full(incoming_kib=incoming):
            raise MailboxFull(f"{box}: mailbox full ({q.describe(incoming)})")
        return await self._append(acct, lambda: acct.folder_name(Folder.INBOX), email,
                                  "(\\Flagged)" if urgent else "()")

    async def _append(self, acct: Account, name_of: Callable[[], str], email: bytes,
                      flags: str) -> MessageRef:
        """APPEND to the folder `name_of()` names (asked once connected: names need the
        server's separator), creating it on first use."""
        async def op(conn: ImapConnection) -> MessageRef:
            name = name_of()
            await acct.ensure_folder(conn, name)
            try:
                res = await conn.execute("APPEND", name, Raw(flags.encode()), Literal(email))
            except ImapError as exc:
                if "OVERQUOTA" in exc.code.upper() or "quota" in exc.text.lower():
                    raise MailboxFull(f"{acct.label}: {exc.text}") from None
                raise
            if res.code == "APPENDUID" and len(res.code_args) >= 2:
                v, u = res.code_args[0], res.code_args[1]
                if isinstance(v, bytes) and isinstance(u, bytes):
                    return MessageRef(name, int(v), int(u))
            return await self.find_by_message_id(conn, name, _message_id(email))

        return await acct.run(op, retries=0)

    async def _search_message_id(self, conn: ImapConnection, name: str,
                                 message_id: str) -> MessageRef | None:
        validity = await self._select(conn, name)
        await conn.execute("NOOP")  # make the server report messages appended meanwhile
        res = await conn.execute("UID", "SEARCH", "HEADER", "Message-ID", message_id)
        uids = search_uids(res.untagged)
        return MessageRef(name, validity, max(uids)) if uids else None

    async def find_by_message_id(self, conn: ImapConnection, name: str,
                                 message_id: str) -> MessageRef:
        """Where APPENDUID is missing (no UIDPLUS), find the message again by its Message-ID."""
        ref = await self._search_message_id(conn, name, message_id)
        if ref is None:
            raise StoreError(f"appended message {message_id} not found in {name}")
        return ref

    async def number_taken(self, box: MailboxRef, ref: MessageRef, number: int) -> bool:
        """Does another undeleted voicemail of the box, older (lower UID) than `ref`, carry
        message number `number`? One HEADER search (a substring match: hits are checked by
        their exact header, fetched only for the few that are not ours)."""
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> bool:
            scan = await self._scan(conn, acct, s, ref.location)
            if scan.validity != ref.validity:
                return False
            res = await conn.execute("UID", "SEARCH", "UNDELETED", "UID",
                                     Raw(f"1:{max(ref.uid - 1, 1)}".encode()),
                                     "HEADER", "X-Asterisk-VM-Message-Num", str(number))
            ours = set(scan.uids)
            hits = sorted(u for u in search_uids(res.untagged) if u in ours and u < ref.uid)
            if not hits:
                return False
            res = await conn.execute(
                "UID", "FETCH", Raw(",".join(map(str, hits)).encode()),
                Raw(b"(UID BODY.PEEK[HEADER.FIELDS (X-Asterisk-VM-Message-Num)])"))
            for item in by_uid(fetch_items(res.untagged)).values():
                head = item.section("BODY[HEADER.FIELDS (X-Asterisk-VM-Message-Num)]") or b""
                value = head.partition(b":")[2].strip()
                if value == str(number).encode():
                    return True
            return False

        return await acct.run(op)

    async def contains_message_id(self, box: MailboxRef, message_id: str) -> MessageRef | None:
        """The voicemail with this Message-ID in the box's main folder, if any (for the outbox:
        after a lost connection, a deposit may already have landed)."""
        acct, _ = self.account(box)

        async def op(conn: ImapConnection) -> MessageRef | None:
            name = acct.folder_name(Folder.INBOX)
            if not await acct.folder_exists(conn, name):
                return None
            return await self._search_message_id(conn, name, message_id)

        return await acct.run(op)

    # -- greetings ------------------------------------------------------------------------
    async def get_greeting(self, box: MailboxRef, kind: GreetingKind) -> AudioPart | None:
        """The newest greeting of that kind. Cached by UID: a callers' greeting costs one SEARCH
        (plus a FETCH only when it changed), not a scan of the folder (Asterisk §6 #1)."""
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> AudioPart | None:
            name = acct.greetings_folder_name()
            if not await acct.folder_exists(conn, name):
                return None
            validity = await self._select(conn, name)
            uids = await self._voicemail_uids(conn, acct, s, name, greetings=kind)
            if not uids:
                return None
            key = (acct.label, name, validity, max(uids))
            if key in self._greetings:
                return self._greetings[key]
            res = await conn.execute("UID", "FETCH", max(uids), Raw(b"(UID BODY.PEEK[])"))
            item = by_uid(fetch_items(res.untagged)).get(max(uids))
            raw = item.section("BODY[]") if item else None
            if raw is None:
                return None
            part = (await asyncio.to_thread(extract_audio, raw)).message
            self._greetings[key] = part
            return part

        return await acct.run(op)

    async def put_greeting(self, box: MailboxRef, kind: GreetingKind, email: bytes) -> None:
        """APPEND the new greeting first, then delete the old ones: never a moment without."""
        acct, s = self.account(box)
        new = await self._append(acct, acct.greetings_folder_name, email, "(\\Seen)")

        async def op(conn: ImapConnection) -> None:
            uids = await self._voicemail_uids(conn, acct, s, new.location, greetings=kind)
            old = [u for u in uids if u != new.uid]
            if old:
                await expunge.delete_exactly(conn, acct, old, expunge=True)

        await acct.run(op)

    async def delete_greeting(self, box: MailboxRef, kind: GreetingKind) -> None:
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> None:
            name = acct.greetings_folder_name()
            if not await acct.folder_exists(conn, name):
                return
            uids = await self._voicemail_uids(conn, acct, s, name, greetings=kind)
            if uids:
                await expunge.delete_exactly(conn, acct, uids, expunge=True)

        await acct.run(op)

def _show(refs: Sequence[MessageRef]) -> str:
    return ", ".join(str(r) for r in refs)


def _in_view(folder: Folder, seen: bool, flagged: bool) -> bool:
    if folder is Folder.INBOX:
        return not seen and not flagged
    if folder is Folder.OLD:
        return seen
    if folder is Folder.URGENT:
        return flagged and not seen
    return True


def _message_id(email: bytes) -> str:
    h = _headers(email.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    mid = h.get("message-id", "")
    if not mid:
        raise StoreError("a deposit must carry a Message-ID")
    return mid
