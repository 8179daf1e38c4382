"""The typed result of reading voicemail.conf: what every later layer reads, never the text.

`MailboxSettings` is the one place where precedence (mailbox option, then `[general]`, then
Asterisk's default) has already been applied; later layers take a `MailboxSettings` and never
look at `[general]` themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from imapvm.config.diagnostics import Location
from imapvm.config.imapflags import ImapSecurity


class StorageKind(enum.Enum):
    IMAP = "imap"
    SPOOL = "spool"
    """Asterisk's file layout under the spool directory (imapvm's embedded default)."""


@dataclass(frozen=True)
class Zone:
    """A `[zonemessages]` entry: `name = Olson/Zone|say format`."""

    name: str
    timezone: str
    say_format: str
    location: Location | None = None


@dataclass(frozen=True)
class Alias:
    """An `aliasescontext` entry: `alias => mailbox@context`."""

    alias: str
    target: str
    location: Location | None = None


@dataclass(frozen=True)
class Mailbox:
    """A mailbox line as written, before precedence: `ext => password,name,email,pager,options`."""

    context: str
    number: str
    password: str
    fullname: str
    email: str
    pager: str
    options: dict[str, object] = field(default_factory=dict, compare=True, hash=False)
    """Per-mailbox options by canonical directive name, already type-checked."""
    directory_aliases: tuple[str, ...] = ()
    location: Location | None = None

    @property
    def id(self) -> str:
        return f"{self.number}@{self.context}"


@dataclass(frozen=True)
class ImapAccount:
    """How to reach one mailbox's IMAP store.

    `user` is the account whose folders hold the voicemail (the SASL authorization identity);
    `auth_user`, when it differs, is the master user that authenticates on its behalf.
    """

    server: str
    port: int
    flags: frozenset[str]
    security: ImapSecurity
    user: str
    auth_user: str | None
    password: str
    folder: str
    parent_folder: str
    greetings_folder: str
    greetings_in_imap: bool
    expunge_on_hangup: bool
    extension_tag: str
    """Value of `X-Asterisk-VM-Extension` and of every header search: imapvmshareid or the
    mailbox number. Never a login name (reference §6 #29)."""
    open_timeout: int
    close_timeout: int
    read_timeout: int
    write_timeout: int
    poll_logout: bool

    @property
    def master_login(self) -> bool:
        return self.auth_user is not None and self.auth_user != self.user


@dataclass(frozen=True)
class MailboxSettings:
    """Everything about one mailbox after precedence. Frozen: share it freely between tasks."""

    context: str
    mailbox: str
    password: str
    """Without the leading '-' that locks it; empty means no password prompt."""
    password_locked: bool
    fullname: str
    emails: tuple[str, ...]
    pager: str
    storage: StorageKind
    imap: ImapAccount | None
    formats: tuple[str, ...]
    attach: bool
    attachfmt: str
    """Already checked against `formats`; falls back to the first format as Asterisk does."""
    attachextrecs: bool
    serveremail: str
    fromstring: str
    emailsubject: str | None
    emailbody: str | None
    emaildateformat: str
    charset: str
    pbxskip: bool
    mailcmd: str
    pagerfromstring: str
    pagersubject: str | None
    pagerbody: str | None
    pagerdateformat: str
    delete: bool
    volgain: float
    language: str
    locale: str
    tz: str
    zone: Zone | None
    maxmsg: int
    maxsecs: int
    minsecs: int
    maxgreet: int
    maxsilence: int
    silencethreshold: int
    maxlogins: int
    minpassword: int
    skipms: int
    backupdeleted: int
    saycid: bool
    sayduration: bool
    saydurationm: int
    sendvoicemail: bool
    review: bool
    leaveurgent: bool
    tempgreetwarn: bool
    messagewrap: bool
    operator: bool
    envelope: bool
    moveheard: bool
    forcename: bool
    forcegreetings: bool
    nextaftercmd: bool
    callback: str
    dialout: str
    exitcontext: str
    hidefromdir: bool
    directory_aliases: tuple[str, ...]
    passwordlocation: str
    externnotify: str
    pollmailboxes: bool
    pollfreq: int
    location: Location | None = None

    @property
    def id(self) -> str:
        return f"{self.mailbox}@{self.context}"

    @property
    def extension_tag(self) -> str:
        """What goes into `X-Asterisk-VM-Extension` (imapvmshareid, else the mailbox)."""
        return self.imap.extension_tag if self.imap else self.mailbox

    @property
    def stored_format(self) -> str:
        """The single format kept in IMAP (Asterisk stores only the first listed)."""
        return self.formats[0]


@dataclass(frozen=True)
class GeneralSettings:
    """`[general]` after defaults: every directive by canonical name, and where each was set."""

    values: Mapping[str, object]
    explicit: Mapping[str, Location]
    spelling: Mapping[str, str] = field(default_factory=dict)
    """How the file wrote each explicit directive (`greetingsfolder` for `greetingfolder`)."""

    def __getitem__(self, name: str) -> object:
        return self.values[name]

    def is_set(self, name: str) -> bool:
        return name in self.explicit

    def text(self, name: str) -> str:
        return str(self.values[name])

    def number(self, name: str) -> int:
        value = self.values[name]
        return value if isinstance(value, int) else 0

    def flag(self, name: str) -> bool:
        return bool(self.values[name])

    def prompt(self, name: str) -> str:
        """The sound to play for a `vm-*` prompt, honouring its override."""
        return str(self.values.get(name, name))

    @property
    def listen_keys(self) -> dict[str, str]:
        return {
            action: str(self.values[f"listen-control-{action}-key"])
            for action in ("forward", "reverse", "pause", "restart", "stop")
        }
