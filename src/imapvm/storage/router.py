"""One Store over every configured mailbox: each box goes to its own back end (IMAP or spool),
as its effective configuration says. The composition root and the CLI use this."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

from imapvm.config.model import MailboxSettings, StorageKind
from imapvm.config.settings import ImapClientSettings
from imapvm.config.voicemail import VoicemailConfig
from imapvm.storage.audio_parts import AudioPart, VoicemailAudio
from imapvm.storage.base import (
    Counts,
    Folder,
    GreetingKind,
    MailboxRef,
    MessageRef,
    QuotaInfo,
    Refused,
    StoredMessage,
)
from imapvm.storage.imap.settings import imap_settings
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.spool import SpoolSettings, SpoolStore
from imapvm.storage.watching import (
    BoxWatcher,
    ConnectionLimiter,
    CountsReceiver,
    WatchOptions,
)


class UnknownMailbox(Refused):
    """The mailbox is not in voicemail.conf."""


class RoutingStore:
    def __init__(self, config: VoicemailConfig, spool_root: Path,
                 client: ImapClientSettings | None = None, *,
                 open_timeout: float | None = None, index_dir: Path | None = None) -> None:
        """`open_timeout` caps each mailbox's imapopentimeout (operator commands wait less);
        `index_dir` keeps IMAP folder indexes across restarts (`[paths] cache`)."""
        self.config = config
        self.imap = ImapStore(lambda box: imap_settings(self.settings(box), client=client,
                                                        open_timeout=open_timeout),
                              index_dir=index_dir)
        self.spool = SpoolStore(spool_root, self._spool_settings)

    def _spool_settings(self, box: MailboxRef) -> SpoolSettings:
        ms = self.settings(box)
        return SpoolSettings(maxmsg=ms.maxmsg, formats=ms.formats)

    def settings(self, box: MailboxRef) -> MailboxSettings:
        try:
            return self.config.effective(box.mailbox, box.context)
        except KeyError:
            raise UnknownMailbox(f"no mailbox {box} in voicemail.conf") from None

    def backend(self, box: MailboxRef) -> ImapStore | SpoolStore:
        if self.settings(box).storage is StorageKind.IMAP:
            return self.imap
        return self.spool

    def describe(self, box: MailboxRef) -> str:
        """Where this box's messages live, for operators."""
        s = self.settings(box)
        if s.imap is not None:
            login = s.imap.user + (f" (via master {s.imap.auth_user})" if s.imap.auth_user else "")
            return f"imap://{s.imap.server}:{s.imap.port} user {login} folder {s.imap.folder}"
        return f"spool {self.spool.box_dir(box)}"

    async def counts(self, box: MailboxRef) -> Counts:
        return await self.backend(box).counts(box)

    async def list(self, box: MailboxRef, folder: Folder,
                   limit: int | None = None) -> list[StoredMessage]:
        return await self.backend(box).list(box, folder, limit)

    async def fetch(self, box: MailboxRef, ref: MessageRef) -> bytes:
        return await self.backend(box).fetch(box, ref)

    async def fetch_audio(self, box: MailboxRef, ref: MessageRef,
                          prefer: tuple[str, ...] = ("wav", "wav49", "gsm")) -> VoicemailAudio:
        return await self.backend(box).fetch_audio(box, ref, prefer)

    async def mark_heard(self, box: MailboxRef, ref: MessageRef) -> None:
        await self.backend(box).mark_heard(box, ref)

    async def mark_unheard(self, box: MailboxRef, ref: MessageRef) -> None:
        await self.backend(box).mark_unheard(box, ref)

    async def save_to_folder(self, box: MailboxRef, ref: MessageRef, folder: Folder) -> MessageRef:
        return await self.backend(box).save_to_folder(box, ref, folder)

    async def delete(self, box: MailboxRef, refs: Sequence[MessageRef]) -> None:
        await self.backend(box).delete(box, refs)

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False) -> MessageRef:
        return await self.backend(box).deposit(box, email, urgent=urgent)

    async def contains_message_id(self, box: MailboxRef, message_id: str) -> MessageRef | None:
        return await self.backend(box).contains_message_id(box, message_id)

    async def number_taken(self, box: MailboxRef, ref: MessageRef, number: int) -> bool:
        """An older voicemail of the box already carries `number` (IMAP); the spool numbers
        its files itself, so never there."""
        backend = self.backend(box)
        if isinstance(backend, ImapStore):
            return await backend.number_taken(box, ref, number)
        return False

    async def read_lockout(self, box: MailboxRef) -> bytes | None:
        return await self.backend(box).read_lockout(box)

    async def write_lockout(self, box: MailboxRef, data: bytes | None) -> None:
        await self.backend(box).write_lockout(box, data)

    async def quota(self, box: MailboxRef) -> QuotaInfo:
        return await self.backend(box).quota(box)

    def _greetings(self, box: MailboxRef) -> ImapStore | SpoolStore:
        """IMAP boxes keep greetings on disk unless imapgreetings=yes, as Asterisk does."""
        s = self.settings(box)
        if s.imap is not None and s.imap.greetings_in_imap:
            return self.imap
        return self.spool

    async def get_greeting(self, box: MailboxRef, kind: GreetingKind) -> AudioPart | None:
        return await self._greetings(box).get_greeting(box, kind)

    async def put_greeting(self, box: MailboxRef, kind: GreetingKind, email: bytes) -> None:
        await self._greetings(box).put_greeting(box, kind, email)

    async def delete_greeting(self, box: MailboxRef, kind: GreetingKind) -> None:
        await self._greetings(box).delete_greeting(box, kind)

    def watch_key(self, box: MailboxRef) -> Hashable:
        return self.backend(box).watch_key(box)

    def new_watcher(self, box: MailboxRef, receiver: CountsReceiver,
                    options: WatchOptions, limiter: ConnectionLimiter) -> BoxWatcher:
        return self.backend(box).new_watcher(box, receiver, options, limiter)

    async def aclose(self) -> None:
        await self.imap.aclose()
        await self.spool.aclose()
