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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imapvm.storage.audio_parts import AudioPart, VoicemailAudio, extract_audio
from imapvm.storage.base import (
    Counts,
    Folder,
    GreetingKind,
    MailboxFull,
    MailboxRef,
    MessageGone,
    MessageRef,
    QuotaInfo,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)
from imapvm.storage.imap import expunge
from imapvm.storage.imap.account import Account, ImapSettings
from imapvm.storage.imap.connection import ConnectionLost, ImapConnection, ImapError, Result
from imapvm.storage.imap.protocol import Literal, Raw
from imapvm.storage.imap.responses import (
    by_uid,
    compress_set,
    fetch_items,
    quota,
    search_uids,
)

log = logging.getLogger(__name__)

EXT = "X-Asterisk-VM-Extension"
CTX = "X-Asterisk-VM-Context"
TYPE = "X-Asterisk-VM-Message-Type"
_KEY_FIELDS = f"({EXT} {CTX} {TYPE} Message-ID)"
_GREETING_TYPES = {k.value for k in GreetingKind}


@dataclass
class _FolderCache:
    """What is known of one folder (per UIDVALIDITY): headers never change, so a UID once
    identified stays identified."""

    keys: dict[int, _Key] = field(default_factory=dict)
    checked: dict[tuple[str, str], int] = field(default_factory=dict)  # (tag, ctx) -> top UID
    matches: dict[tuple[str, str], set[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Scan:
    validity: int
    uids: list[int]  # exactly this box's undeleted messages of the wanted kind, oldest first
    seen: set[int]
    flagged: set[int]


@dataclass(frozen=True)
class _Key:
    """The identifying headers of one message (cached by folder, UIDVALIDITY and UID)."""

    ext: str
    ctx: str
    mtype: str
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

    def __init__(self, settings_for: Callable[[MailboxRef], ImapSettings]) -> None:
        self._settings_for = settings_for
        self._accounts: dict[tuple[object, ...], Account] = {}
        self._folders: dict[tuple[str, str, int], _FolderCache] = {}
        self._greetings: dict[tuple[str, str, int, int], AudioPart] = {}

    # -- plumbing -------------------------------------------------------------------------
    def account(self, box: MailboxRef) -> tuple[Account, ImapSettings]:
        s = self._settings_for(box)
        acct = self._accounts.get(s.identity)
        if acct is None:
            acct = self._accounts[s.identity] = Account(s)
        return acct, s

    async def drop_idle_connections(self) -> None:
        """Log out pooled connections but keep what was learnt (server info, header cache)."""
        for acct in self._accounts.values():
            await acct.drop_idle()

    async def aclose(self) -> None:
        for acct in self._accounts.values():
            await acct.aclose()
        self._accounts.clear()

    async def _select(self, conn: ImapConnection, name: str) -> int:
        """SELECT `name` unless it already is; returns its UIDVALIDITY."""
        state = getattr(conn, "vm_selected", None)
        if state is not None and state[0] == name:
            return int(state[1])
        res = await conn.execute("SELECT", name)
        validity = 0
        for r in res.untagged:
            if r.code == "UIDVALIDITY" and r.code_args and isinstance(r.code_args[0], bytes):
                validity = int(r.code_args[0])
        conn.vm_selected = (name, validity)  # type: ignore[attr-defined]
        return validity

    async def _select_ref(self, conn: ImapConnection, ref: MessageRef) -> None:
        validity = await self._select(conn, ref.location)
        if validity != ref.validity:
            raise MessageGone(f"{ref}: folder was recreated (UIDVALIDITY {validity})")

    async def _scan(self, conn: ImapConnection, acct: Account, s: ImapSettings, name: str,
                    *, greetings: GreetingKind | None = None) -> _Scan:
        """This box's undeleted voicemails (or greetings of one kind) in folder `name`, exactly
        matched, with their \\Seen and \\Flagged state.

        Two round trips in the steady state, whatever the folder size: a NOOP, then pipelined
        (where ESEARCH tags the answers) the undeleted,
        seen and unseen-flagged UID sets (flag searches the server answers from its index), and
        a HEADER search restricted to UIDs above the highest one already examined (headers never
        change, so what was matched once stays matched). Only new candidates cost a FETCH of
        their identifying headers."""
        validity = await self._select(conn, name)
        cache = self._folders.setdefault((acct.label, name, validity), _FolderCache())
        who = (s.vm_tag, s.context)
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
        if missing:
            res = await conn.execute(
                "UID", "FETCH", Raw(compress_set(missing).encode()),
                Raw(f"(UID BODY.PEEK[HEADER.FIELDS {_KEY_FIELDS}])".encode()),
            )
            for uid, item in by_uid(fetch_items(res.untagged)).items():
                h = _headers(item.section("BODY[HEADER") or b"")
                cache.keys[uid] = _Key(h.get(EXT.lower(), ""), h.get(CTX.lower(), ""),
                                       h.get(TYPE.lower(), ""), h.get("message-id", ""))
        matches = cache.matches.setdefault(who, set())
        for uid in candidates:
            key = cache.keys.get(uid)
            if key is not None and key.ext == s.vm_tag and key.ctx == s.context:
                matches.add(uid)
        matches &= present | candidates  # forget expunged messages
        if present:
            cache.checked[who] = max(upto, max(present))
        want = greetings.value if greetings else None
        uids = []
        for uid in sorted(matches & present):
            mtype = cache.keys[uid].mtype.lower()
            if mtype == want if want else mtype not in _GREETING_TYPES:
                uids.append(uid)
        return _Scan(validity, uids, seen, flagged)

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
            raise StoreUnavailable(f"{acct.label}: {exc}") from exc
        except ImapError as exc:
            raise StoreError(f"{acct.label}: {exc}") from exc
        return name

    async def counts(self, box: MailboxRef, *, conn: ImapConnection | None = None) -> Counts:
        """New, old and urgent of `box`. With `conn`, on that connection (an MWI watcher counts
        on the connection it idles on, so a watched account costs one connection, not two);
        else on a pooled one."""
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> Counts:
            name = acct.folder_name(Folder.INBOX)
            await acct.ensure_folder(conn, name)
            scan = await self._scan(conn, acct, s, name)
            new = old = urgent = 0
            for uid in scan.uids:
                if uid in scan.seen:
                    old += 1
                elif uid in scan.flagged:
                    urgent += 1
                else:
                    new += 1
            return Counts(new=new, old=old, urgent=urgent,
                          folders={"INBOX": new, "Old": old, "Urgent": urgent})

        if conn is not None:
            try:
                return await op(conn)
            except ConnectionLost as exc:
                raise StoreUnavailable(f"{acct.label}: {exc}") from exc
            except ImapError as exc:
                raise StoreError(f"{acct.label}: {exc}") from exc
        return await acct.run(op)

    async def list(self, box: MailboxRef, folder: Folder,
                   limit: int | None = None) -> list[StoredMessage]:
        """Oldest first; with `limit`, only the first `limit` messages of the view (a phone
        session needs the first message at once, not the headers of a whole folder)."""
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> list[StoredMessage]:
            name = acct.folder_name(folder)
            await acct.ensure_folder(conn, name)
            scan = await self._scan(conn, acct, s, name)
            validity = scan.validity
            uids = [u for u in scan.uids if _in_view(folder, u in scan.seen, u in scan.flagged)]
            if limit is not None:
                uids = uids[:limit]
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
        acct, _ = self.account(box)

        async def op(conn: ImapConnection) -> bytes:
            await self._select_ref(conn, ref)
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
    async def _store(self, box: MailboxRef, ref: MessageRef, op_flags: str, flags: str) -> None:
        acct, _ = self.account(box)

        async def op(conn: ImapConnection) -> None:
            await self._select_ref(conn, ref)
            res = await conn.execute("UID", "STORE", ref.uid, op_flags, Raw(flags.encode()))
            # Non-silent STORE answers with the message's FETCH; none means it is gone.
            if ref.uid not in by_uid(fetch_items(res.untagged)):
                raise MessageGone(f"{ref}: no such message (expunged or moved)")

        await acct.run(op)

    async def mark_heard(self, box: MailboxRef, ref: MessageRef) -> None:
        await self._store(box, ref, "+FLAGS", "(\\Seen)")

    async def mark_unheard(self, box: MailboxRef, ref: MessageRef) -> None:
        await self._store(box, ref, "-FLAGS", "(\\Seen)")

    async def undelete(self, box: MailboxRef, ref: MessageRef) -> None:
        """Clear \\Deleted (useful only where a deletion was left unexpunged)."""
        await self._store(box, ref, "-FLAGS", "(\\Deleted)")

    # -- delete and move ------------------------------------------------------------------
    async def delete(self, box: MailboxRef, refs: Sequence[MessageRef]) -> None:
        acct, s = self.account(box)
        by_location: dict[tuple[str, int], list[int]] = {}
        for ref in refs:
            by_location.setdefault((ref.location, ref.validity), []).append(ref.uid)

        async def op(conn: ImapConnection) -> None:
            for (location, validity), uids in by_location.items():
                await self._select_ref(conn, MessageRef(location, validity, 0))
                await expunge.delete_exactly(conn, acct, uids, expunge=s.expunge_on_hangup)

        await acct.run(op)

    async def save_to_folder(self, box: MailboxRef, ref: MessageRef, folder: Folder) -> MessageRef:
        acct, _ = self.account(box)
        target = acct.folder_name(folder)
        if target == ref.location:  # Old <-> INBOX is a flag change, as in Asterisk
            if folder is Folder.OLD:
                await self.mark_heard(box, ref)
            elif folder is Folder.INBOX:
                await self._store(box, ref, "-FLAGS", "(\\Seen)")
            return ref

        async def op(conn: ImapConnection) -> MessageRef:
            await acct.ensure_folder(conn, target)
            await self._select_ref(conn, ref)
            res = await conn.execute("UID", "FETCH", ref.uid,
                                     Raw(b"(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
            item = by_uid(fetch_items(res.untagged)).get(ref.uid)
            if item is None:
                raise MessageGone(f"{ref}: no such message (expunged or moved)")
            message_id = _headers(item.section("BODY[HEADER") or b"").get("message-id", "")
            new = await expunge.move_exactly(conn, acct, ref.uid, target)
            if new is None:  # no UIDPLUS: find it again by Message-ID
                if not message_id:
                    raise StoreError(f"{ref}: moved to {target}, but cannot tell its new UID")
                new = await self.find_by_message_id(conn, target, message_id)
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
            await acct.ensure_folder(conn, name)
            uids = await self._voicemail_uids(conn, acct, s, name)
            used = limit = None
            if conn.has("QUOTA"):
                try:
                    q = quota((await conn.execute("GETQUOTAROOT", name)).untagged)
                    used, limit = q.storage_used, q.storage_limit
                except ImapError as exc:
                    log.info("%s: GETQUOTAROOT refused: %s", acct.label, exc)
            return QuotaInfo(storage_used=used, storage_limit=limit, messages=len(uids),
                             maxmsg=s.maxmsg or None)

        return await acct.run(op)

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False) -> MessageRef:
        """APPEND a new voicemail. Raises MailboxFull before trying when over maxmsg or quota.

        Not retried here: a deposit that may or may not have landed is the outbox's business
        (it searches by Message-ID before trying again, so nothing lands twice)."""
        acct, s = self.account(box)
        q = await self.quota(box)
        if q.full(incoming_kib=(len(email) + 1023) // 1024):
            raise MailboxFull(f"{box}: mailbox full ({q.messages} of {s.maxmsg} messages, "
                              f"{q.storage_used} of {q.storage_limit} KiB)")
        name = acct.folder_name(Folder.INBOX)
        return await self._append(acct, name, email, "(\\Flagged)" if urgent else "()")

    async def _append(self, acct: Account, name: str, email: bytes, flags: str) -> MessageRef:
        async def op(conn: ImapConnection) -> MessageRef:
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
            await acct.ensure_folder(conn, name)
            return await self._search_message_id(conn, name, message_id)

        return await acct.run(op)

    # -- greetings ------------------------------------------------------------------------
    async def get_greeting(self, box: MailboxRef, kind: GreetingKind) -> AudioPart | None:
        """The newest greeting of that kind. Cached by UID: a callers' greeting costs one SEARCH
        (plus a FETCH only when it changed), not a scan of the folder (Asterisk §6 #1)."""
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> AudioPart | None:
            name = acct.greetings_folder_name()
            await acct.ensure_folder(conn, name)
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
        name = acct.greetings_folder_name()
        new = await self._append(acct, name, email, "(\\Seen)")

        async def op(conn: ImapConnection) -> None:
            uids = await self._voicemail_uids(conn, acct, s, name, greetings=kind)
            old = [u for u in uids if u != new.uid]
            if old:
                await expunge.delete_exactly(conn, acct, old, expunge=True)

        await acct.run(op)

    async def delete_greeting(self, box: MailboxRef, kind: GreetingKind) -> None:
        acct, s = self.account(box)

        async def op(conn: ImapConnection) -> None:
            name = acct.greetings_folder_name()
            await acct.ensure_folder(conn, name)
            uids = await self._voicemail_uids(conn, acct, s, name, greetings=kind)
            if uids:
                await expunge.delete_exactly(conn, acct, uids, expunge=True)

        await acct.run(op)


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
