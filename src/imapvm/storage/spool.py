"""Asterisk's file spool as a Store: `<root>/<context>/<mailbox>/<Folder>/msgNNNN.{txt,<fmt>}`.

The embedded default when no `imapserver` is configured, and a migration source or target.
Files are laid out as Asterisk's file storage lays them out, so Asterisk can read and write the
same tree: `[message]` metadata in msgNNNN.txt, one audio file per format, Old and Urgent as real
directories, messages renumbered without gaps after a delete or move, greetings as
`<mailbox dir>/{unavail,busy,greet,temp}.<fmt>`, and Asterisk's `.lock` protocol (a unique file
hard-linked to `.lock`) around every change of a folder.

A MessageRef carries the message's msg_id as its key, so renumbering by Asterisk or another
imapvm never makes a reference point at another message.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import email
import email.policy
import email.utils
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

from imapvm.audio.core import Audio
from imapvm.audio.errors import AudioError, UnsupportedFormat
from imapvm.audio.formats import can_encode, decode, encode, lookup
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
    Refused,
    StoredMessage,
    StoreError,
)
from imapvm.storage.fsutil import write_durably
from imapvm.storage.watching import (
    BoxWatcher,
    ConnectionLimiter,
    CountsReceiver,
    PollWatcher,
    WatchOptions,
)

log = logging.getLogger(__name__)
_MSG = re.compile(r"^msg(\d{4})\.txt$")
LOCK_TIMEOUT = 10.0
STALE_LOCK = 60.0

# msgNNNN.txt key -> the X-Asterisk-VM-* header StoredMessage exposes it as
_TXT_TO_HEADER = {
    "context": "x-asterisk-vm-context",
    "origtime": "x-asterisk-vm-orig-time",
    "origdate": "x-asterisk-vm-orig-date",
    "duration": "x-asterisk-vm-duration",
    "category": "x-asterisk-vm-category",
    "flag": "x-asterisk-vm-flag",
    "msg_id": "x-asterisk-vm-message-id",
    "priority": "x-asterisk-vm-priority",
    "origmailbox": "x-asterisk-vm-extension",
    "imapvm_message_id": "message-id",
}
_HEADER_TO_TXT = {v: k for k, v in _TXT_TO_HEADER.items()}


@dataclass(frozen=True)
class SpoolSettings:
    maxmsg: int = 100
    #: voicemail.conf's `format` list: a deposit writes a file in every one of them, as
    #: Asterisk does (other tools on the same spool expect them), besides what the e-mail holds.
    formats: tuple[str, ...] = ()


class SpoolStore:
    def __init__(self, root: Path,
                 settings_for: Callable[[MailboxRef], SpoolSettings] | None = None) -> None:
        self.root = Path(root)
        self._settings_for = settings_for or (lambda _box: SpoolSettings())
        self._thread_locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- login lockout state (storage.lockout) -------------------------------------------
    async def read_lockout(self, box: MailboxRef) -> bytes | None:
        """`<box>/lockout.json`: shared by every node that mounts the same spool."""
        path = self.box_dir(box) / "lockout.json"
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{path}: {exc.strerror or exc}") from exc

    async def write_lockout(self, box: MailboxRef, data: bytes | None) -> None:
        path = self.box_dir(box) / "lockout.json"

        def work() -> None:
            if data is None:
                path.unlink(missing_ok=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(path, data)

        try:
            await asyncio.to_thread(work)
        except OSError as exc:
            raise StoreError(f"{path}: {exc.strerror or exc}") from exc

    # -- paths and locks ------------------------------------------------------------------
    def box_dir(self, box: MailboxRef) -> Path:
        for part in (box.context, box.mailbox):
            if not part or "/" in part or part in (".", ".."):
                raise Refused(f"invalid mailbox {box}: the spool cannot hold {part!r}")
        return self.root / box.context / box.mailbox

    def folder_dir(self, box: MailboxRef, folder: Folder) -> Path:
        return self.box_dir(box) / folder.title

    def _location(self, box: MailboxRef, folder: Folder) -> str:
        return f"{box.context}/{box.mailbox}/{folder.title}"

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        """Asterisk-compatible directory lock, plus a thread lock within this process."""
        directory.mkdir(parents=True, exist_ok=True)
        with self._guard:
            tlock = self._thread_locks.setdefault(directory, threading.Lock())
        with tlock:
            lock = directory / ".lock"
            mine = directory / f".lock-{uuid.uuid4().hex[:8]}"
            mine.write_text(f"{os.getpid()}\n")
            deadline = time.monotonic() + LOCK_TIMEOUT
            try:
                while True:
                    try:
                        os.link(mine, lock)
                        break
                    except FileExistsError:
                        with contextlib.suppress(FileNotFoundError):
                            if time.time() - lock.stat().st_mtime > STALE_LOCK:
                                lock.unlink()  # left by a crashed writer
                                continue
                        if time.monotonic() > deadline:
                            raise StoreError(f"{directory} is locked by another writer") from None
                        time.sleep(0.01)
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):
                    if os.path.samefile(mine, lock):
                        lock.unlink()
                mine.unlink(missing_ok=True)

    # -- reading --------------------------------------------------------------------------
    @staticmethod
    def _numbers(directory: Path) -> list[int]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _MSG.match(n)))

    @staticmethod
    def _read_txt(path: Path) -> dict[str, str]:
        out: dict[str, str] = {}
        in_message = False
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith("["):
                in_message = line.lower() == "[message]"
                continue
            if in_message and "=" in line:
                k, _, v = line.partition("=")
                out[k.strip().lower()] = v.strip()
        return out

    def _message(self, box: MailboxRef, folder: Folder, n: int) -> StoredMessage:
        d = self.folder_dir(box, folder)
        txt = self._read_txt(d / f"msg{n:04d}.txt")
        headers = {h: txt[k] for k, h in _TXT_TO_HEADER.items() if k in txt}
        # The voicemail context is the directory's: Asterisk's file storage writes the caller's
        # *dialplan* context (e.g. from-internal) in context= (reference §3.5).
        headers["x-asterisk-vm-context"] = box.context
        name, num = _split_callerid(txt.get("callerid", ""))
        headers["x-asterisk-vm-caller-id-name"] = name
        headers["x-asterisk-vm-caller-id-num"] = num
        headers.setdefault("x-asterisk-vm-extension", box.mailbox)
        size = sum(p.stat().st_size for p in d.glob(f"msg{n:04d}.*"))
        return StoredMessage(
            ref=MessageRef(self._location(box, folder), 0, n, key=txt.get("msg_id", "")),
            folder=folder, seen=folder is not Folder.INBOX and folder is not Folder.URGENT,
            urgent=folder is Folder.URGENT, deleted=False, size=size, headers=headers,
        )

    def _resolve(self, box: MailboxRef, ref: MessageRef) -> tuple[Folder, int]:
        """Where the referenced message is now (by msg_id, which survives renumbering)."""
        folder = self._folder_of(box, ref)
        d = self.folder_dir(box, folder)
        numbers = self._numbers(d)
        if not ref.key:
            if ref.uid in numbers:
                return folder, ref.uid
            raise MessageGone(f"{ref}: no such message")
        # Heard messages move INBOX -> Old in the spool (a flag change in IMAP): follow them, so
        # a reference stays valid across mark_heard / mark_unheard as it does in IMAP.
        candidates = [folder]
        if folder.in_main_folder:
            candidates += [f for f in (Folder.INBOX, Folder.OLD, Folder.URGENT) if f is not folder]
        for where in candidates:
            fd = self.folder_dir(box, where)
            found = self._numbers(fd)
            for n in sorted(found, key=lambda n: n != ref.uid):  # the old number first
                if self._read_txt(fd / f"msg{n:04d}.txt").get("msg_id") == ref.key:
                    return where, n
        raise MessageGone(f"{ref}: no such message (deleted or moved)")

    def _folder_of(self, box: MailboxRef, ref: MessageRef) -> Folder:
        """The box's folder `ref` names; anything else (another mailbox, a sibling whose number
        is a prefix, another context, a path) is not a voicemail of `box`."""
        prefix = f"{box.context}/{box.mailbox}/"
        rest = ref.location[len(prefix):]
        if not ref.location.startswith(prefix) or not rest or rest.strip() != rest:
            raise NotAVoicemail(f"{ref}: not a voicemail of {box}")
        try:
            folder = Folder.from_name(rest)
        except ValueError:
            raise NotAVoicemail(f"{ref}: not a voicemail of {box}") from None
        if folder.title != rest and str(int(folder)) != rest:
            raise NotAVoicemail(f"{ref}: not a voicemail of {box}")
        return folder

    # -- the Store protocol ---------------------------------------------------------------
    async def counts(self, box: MailboxRef) -> Counts:
        def work() -> Counts:
            n = {f: len(self._numbers(self.folder_dir(box, f))) for f in Folder}
            return Counts(new=n[Folder.INBOX], old=n[Folder.OLD], urgent=n[Folder.URGENT],
                          folders={f.title: c for f, c in n.items()})
        return await asyncio.to_thread(work)

    async def list(self, box: MailboxRef, folder: Folder,
                   limit: int | None = None) -> list[StoredMessage]:
        def work() -> list[StoredMessage]:
            d = self.folder_dir(box, folder)
            numbers = self._numbers(d)[:limit] if limit is not None else self._numbers(d)
            return [self._message(box, folder, n) for n in numbers]
        return await asyncio.to_thread(work)

    def _audio_files(self, box: MailboxRef, folder: Folder, n: int) -> builtins.list[Path]:
        d = self.folder_dir(box, folder)
        return sorted(p for p in d.glob(f"msg{n:04d}.*") if p.suffix != ".txt")

    async def fetch_audio(self, box: MailboxRef, ref: MessageRef,
                          prefer: tuple[str, ...] = ("wav", "wav49", "gsm")) -> VoicemailAudio:
        def work() -> VoicemailAudio:
            folder, n = self._resolve(box, ref)
            parts = [AudioPart(p.read_bytes(), _fmt(p), p.name)
                     for p in self._audio_files(box, folder, n)]
            if not parts:
                raise MessageGone(f"{ref}: the message has no audio file")
            parts.sort(key=lambda p: prefer.index(p.fmt) if p.fmt in prefer else len(prefer))
            intro_files = sorted(self.folder_dir(box, folder).glob(f"msg{n:04d}intro.*"))
            intro = (AudioPart(intro_files[0].read_bytes(), _fmt(intro_files[0]),
                               intro_files[0].name) if intro_files else None)
            return VoicemailAudio(parts[0], intro, tuple(parts))
        return await asyncio.to_thread(work)

    async def fetch(self, box: MailboxRef, ref: MessageRef) -> bytes:
        """The message as an Asterisk-style email (for export and migration to IMAP)."""
        listed = await asyncio.to_thread(lambda: self._message(box, *self._resolve(box, ref)))
        audio = await self.fetch_audio(box, ref)
        return _as_email(box, listed, audio)

    async def mark_heard(self, box: MailboxRef, ref: MessageRef) -> None:
        folder, _ = await asyncio.to_thread(self._resolve, box, ref)
        if folder in (Folder.INBOX, Folder.URGENT):
            await self.save_to_folder(box, ref, Folder.OLD)

    async def mark_unheard(self, box: MailboxRef, ref: MessageRef) -> None:
        folder, _ = await asyncio.to_thread(self._resolve, box, ref)
        if folder is Folder.OLD:
            await self.save_to_folder(box, ref, Folder.INBOX)

    async def save_to_folder(self, box: MailboxRef, ref: MessageRef, folder: Folder) -> MessageRef:
        def work() -> MessageRef:
            src_folder, _ = self._resolve(box, ref)
            if src_folder is folder:
                return ref
            src, dst = self.folder_dir(box, src_folder), self.folder_dir(box, folder)
            first, second = sorted([src, dst])  # a fixed order: no deadlock between two movers
            with self._locked(first), self._locked(second):
                src_folder, n = self._resolve(box, ref)
                target = self._next_number(dst)
                for p in sorted(src.glob(f"msg{n:04d}*")):
                    os.replace(p, dst / p.name.replace(f"msg{n:04d}", f"msg{target:04d}", 1))
                self._resequence(src)
            return MessageRef(self._location(box, folder), 0, target, key=ref.key)
        return await asyncio.to_thread(work)

    async def delete(self, box: MailboxRef, refs: Sequence[MessageRef]) -> None:
        """Delete the refs that are messages of `box`; then raise MessageGone (NotAVoicemail if
        any was another box's) naming those that were not, so `rm` of a stale id says so."""
        def work() -> list[MessageGone]:
            errors: list[MessageGone] = []
            for ref in refs:
                try:
                    folder, _ = self._resolve(box, ref)
                    d = self.folder_dir(box, folder)
                    with self._locked(d):
                        folder, n = self._resolve(box, ref)
                        for p in d.glob(f"msg{n:04d}*"):
                            p.unlink(missing_ok=True)
                        self._resequence(d)
                except MessageGone as exc:
                    errors.append(exc)
            return errors
        errors = await asyncio.to_thread(work)
        if errors:
            kind = NotAVoicemail if any(isinstance(e, NotAVoicemail) for e in errors) \
                else MessageGone
            raise kind("; ".join(str(e) for e in errors))

    async def quota(self, box: MailboxRef) -> QuotaInfo:
        c = await self.counts(box)
        maxmsg = self._settings_for(box).maxmsg
        return QuotaInfo(messages=c.new + c.old + c.urgent, maxmsg=maxmsg or None)

    async def deposit(self, box: MailboxRef, email_bytes: bytes, *,
                      urgent: bool = False) -> MessageRef:
        q = await self.quota(box)
        if q.full():
            raise MailboxFull(f"{box}: mailbox full ({q.messages} of {q.maxmsg} messages)")
        folder = Folder.URGENT if urgent else Folder.INBOX

        def work() -> MessageRef:
            msg = email.message_from_bytes(email_bytes, policy=email.policy.compat32)
            audio = extract_audio(email_bytes)
            txt = _txt_from_headers(box, msg)
            formats = self._settings_for(box).formats
            files = _in_every_format(audio.alternatives, formats)
            intro = (_in_every_format((audio.intro,), formats)
                     if audio.intro is not None else {})
            d = self.folder_dir(box, folder)
            with self._locked(d):
                n = self._next_number(d)
                for ext, data in files.items():
                    write_durably(d / f"msg{n:04d}.{ext}", data)
                for ext, data in intro.items():
                    write_durably(d / f"msg{n:04d}intro.{ext}", data)
                write_durably(d / f"msg{n:04d}.txt", txt.encode())  # last: readers look for the txt
            return MessageRef(self._location(box, folder), 0, n,
                              key=_txt_value(txt, "msg_id"))
        return await asyncio.to_thread(work)

    async def contains_message_id(self, box: MailboxRef, message_id: str) -> MessageRef | None:
        for folder in Folder:
            for m in await self.list(box, folder):
                if m.header("message-id") == message_id:
                    return m.ref
        return None

    # -- greetings ------------------------------------------------------------------------
    async def get_greeting(self, box: MailboxRef, kind: GreetingKind,
                           prefer: tuple[str, ...] = ("wav", "wav49", "gsm")) -> AudioPart | None:
        def work() -> AudioPart | None:
            files = [p for p in self.box_dir(box).glob(f"{kind.value}.*") if p.is_file()]
            if not files:
                return None
            files.sort(key=lambda p: prefer.index(_fmt(p)) if _fmt(p) in prefer else len(prefer))
            return AudioPart(files[0].read_bytes(), _fmt(files[0]), files[0].name)
        return await asyncio.to_thread(work)

    async def put_greeting(self, box: MailboxRef, kind: GreetingKind, email_bytes: bytes) -> None:
        def work() -> None:
            audio = extract_audio(email_bytes)
            d = self.box_dir(box)
            with self._locked(d):
                for old in d.glob(f"{kind.value}.*"):
                    old.unlink()
                for part in audio.alternatives:
                    write_durably(d / f"{kind.value}.{_ext(part.fmt)}", part.data)
        await asyncio.to_thread(work)

    async def delete_greeting(self, box: MailboxRef, kind: GreetingKind) -> None:
        def work() -> None:
            d = self.box_dir(box)
            with self._locked(d):
                for old in d.glob(f"{kind.value}.*"):
                    old.unlink()
        await asyncio.to_thread(work)

    def watch_key(self, box: MailboxRef) -> Hashable:
        """The spool has no push: one poller for all its boxes."""
        return ("spool", str(self.root))

    def new_watcher(self, box: MailboxRef, receiver: CountsReceiver,
                    options: WatchOptions, limiter: ConnectionLimiter) -> BoxWatcher:
        return PollWatcher(self, receiver, options, f"spool {self.root}")

    async def aclose(self) -> None:
        return None

    # -- numbering ------------------------------------------------------------------------
    def _next_number(self, d: Path) -> int:
        numbers = self._numbers(d)
        return numbers[-1] + 1 if numbers else 0

    def _resequence(self, d: Path) -> None:
        """Close gaps (msg0000, msg0002 -> msg0000, msg0001), as Asterisk does after a delete."""
        for want, have in enumerate(self._numbers(d)):
            if want == have:
                continue
            for p in sorted(d.glob(f"msg{have:04d}*")):
                os.replace(p, d / p.name.replace(f"msg{have:04d}", f"msg{want:04d}", 1))


#: Which copy to convert from when a configured format is missing: the least lossy first.
_SOURCE_ORDER = ("wav16", "sln16", "wav", "sln", "ulaw", "alaw", "wav49", "gsm")


def _in_every_format(parts: Sequence[AudioPart], formats: Sequence[str]) -> dict[str, bytes]:
    """File extension -> bytes: every copy the e-mail holds, plus each configured format it
    lacks, converted from the least lossy copy (Asterisk writes one file per `format` entry)."""
    files = {_ext(p.fmt): p.data for p in parts}
    source: Audio | None = None
    for name in formats:
        try:
            fmt = lookup(name)
        except UnsupportedFormat:
            continue  # `imapvm check` reports it; the copies we have are still written
        if fmt.extension in files or not can_encode(fmt.name):
            continue
        try:
            if source is None:
                ranked = sorted(parts, key=lambda p: _SOURCE_ORDER.index(p.fmt)
                                if p.fmt in _SOURCE_ORDER else len(_SOURCE_ORDER))
                source = decode(ranked[0].data, ranked[0].fmt)
            files[fmt.extension] = encode(source, fmt)
        except AudioError as exc:  # the message itself is kept in the formats it came in
            log.warning("spool: no %s copy of a deposit: %s", fmt.name, exc)
    return files


def _fmt(path: Path) -> str:
    ext = path.suffix[1:]
    return "wav49" if ext == "WAV" else ext.lower()


def _ext(fmt: str) -> str:
    return "WAV" if fmt == "wav49" else fmt


def _split_callerid(text: str) -> tuple[str, str]:
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', text)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return "", text.strip()


def _txt_value(txt: str, key: str) -> str:
    m = re.search(rf"^{re.escape(key)}=(.*)$", txt, re.M)
    return m.group(1).strip() if m else ""


def _txt_from_headers(box: MailboxRef, msg: email.message.Message) -> str:
    def h(name: str) -> str:
        value = msg.get(name)
        return re.sub(r"[\r\n]+[ \t]*", " ", str(value)).strip() if value is not None else ""

    name = h("X-Asterisk-VM-Caller-ID-Name")
    num = h("X-Asterisk-VM-Caller-ID-Num")
    callerid = f'"{name}" <{num}>' if name or num else "Unknown"
    msg_id = h("X-Asterisk-VM-Message-ID") or f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
    lines = [
        ";", "; Message Information file", ";", "[message]",
        f"origmailbox={box.mailbox}",
        f"context={h('X-Asterisk-VM-Context') or box.context}",
        "macrocontext=",
        f"exten={box.mailbox}",
        "rdnis=unknown",
        f"priority={h('X-Asterisk-VM-Priority') or '1'}",
        "callerchan=",
        f"callerid={callerid}",
        f"origdate={h('X-Asterisk-VM-Orig-date')}",
        f"origtime={h('X-Asterisk-VM-Orig-time') or int(time.time())}",
        f"category={h('X-Asterisk-VM-Category')}",
        f"msg_id={msg_id}",
        f"flag={h('X-Asterisk-VM-Flag')}",
        f"duration={h('X-Asterisk-VM-Duration') or '0'}",
        f"imapvm_message_id={h('Message-ID')}",
    ]
    return "\n".join(lines) + "\n"


def _as_email(box: MailboxRef, m: StoredMessage, audio: VoicemailAudio) -> bytes:
    """A minimal Asterisk-layout email for a spool message (text part, then the audio)."""
    outer = MIMEMultipart("mixed")
    # Deterministic from msg_id, so exporting the same message twice gives the same Message-ID.
    mid = m.header("message-id") or f"<imapvm-{m.ref.key or uuid.uuid4().hex}@{box.context}>"
    outer["Date"] = email.utils.formatdate(m.orig_time or None, localtime=True)
    outer["From"] = "Asterisk PBX <asterisk@localhost>"
    outer["To"] = f"<{box.mailbox}@{box.context}>"
    outer["Message-ID"] = mid
    outer["Subject"] = f"[PBX]: New message {m.ref.uid + 1} in mailbox {box.mailbox}"
    outer["X-Asterisk-VM-Message-Num"] = str(m.ref.uid + 1)
    outer["X-Asterisk-VM-Context"] = m.header("x-asterisk-vm-context", box.context)
    outer["X-Asterisk-VM-Extension"] = m.header("x-asterisk-vm-extension", box.mailbox)
    for name in ("Flag", "Priority", "Caller-ID-Num", "Caller-ID-Name", "Duration", "Category",
                 "Orig-date", "Orig-time", "Message-ID"):
        outer[f"X-Asterisk-VM-{name}"] = m.header(f"x-asterisk-vm-{name.lower()}")
    outer["X-Asterisk-VM-Message-Type"] = "Message"
    outer.attach(MIMEText("Voicemail exported from the file spool.\n", "plain", "utf-8"))
    for part in (audio.message, audio.intro):
        if part is None:
            continue
        att = MIMEApplication(part.data, _subtype="octet-stream")
        att.replace_header("Content-Type", f'audio/x-{_ext(part.fmt)}; name="{part.filename}"')
        att.add_header("Content-Disposition", "attachment", filename=part.filename)
        outer.attach(att)
    return outer.as_bytes(policy=email.policy.SMTP)


