"""The Store protocol: what the voice menus, the MWI engine and the CLI ask of a message store.

Two back ends implement it: IMAP (`storage.imap`) and Asterisk's file spool (`storage.spool`).
Everything is addressed by `MessageRef` (for IMAP: folder + UIDVALIDITY + UID, never a sequence
number), so another client expunging or moving mail can never make a call act on the wrong
message: a stale reference raises `MessageGone` instead.

Messages travel as complete RFC 5322 emails (the format Asterisk stores in IMAP): a deposit is an
email, the outbox holds emails, and the spool back end converts at its edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from imapvm.storage.audio_parts import AudioPart, VoicemailAudio

_log = logging.getLogger(__name__)


class Folder(enum.IntEnum):
    """Asterisk's folder numbers (reference §3.2). INBOX, Old and Urgent are views of one IMAP
    folder (`imapfolder`), told apart by flags; the others are real folders."""

    INBOX = 0
    OLD = 1
    WORK = 2
    FAMILY = 3
    FRIENDS = 4
    CUST1 = 5
    CUST2 = 6
    CUST3 = 7
    CUST4 = 8
    CUST5 = 9
    URGENT = 11

    @property
    def title(self) -> str:
        """The name Asterisk uses for the folder (and in prompts: vm-<title>)."""
        return _TITLES[self]

    @property
    def in_main_folder(self) -> bool:
        return self in (Folder.INBOX, Folder.OLD, Folder.URGENT)

    @classmethod
    def from_name(cls, name: str) -> Folder:
        """Case-insensitive, as Asterisk's folder_int; digits accepted."""
        if name.strip().isdigit():
            return cls(int(name))
        for f in cls:
            if f.title.lower() == name.strip().lower():
                return f
        raise ValueError(f"unknown voicemail folder {name!r} "
                         f"(one of {', '.join(f.title for f in cls)})")


_TITLES = {
    Folder.INBOX: "INBOX", Folder.OLD: "Old", Folder.WORK: "Work", Folder.FAMILY: "Family",
    Folder.FRIENDS: "Friends", Folder.CUST1: "Cust1", Folder.CUST2: "Cust2",
    Folder.CUST3: "Cust3", Folder.CUST4: "Cust4", Folder.CUST5: "Cust5", Folder.URGENT: "Urgent",
}


@dataclass(frozen=True, order=True)
class MailboxRef:
    """A voicemail box: `mailbox@context`."""

    mailbox: str
    context: str = "default"

    def __str__(self) -> str:
        return f"{self.mailbox}@{self.context}"

    @classmethod
    def parse(cls, text: str, default_context: str = "default") -> MailboxRef:
        box, _, ctx = text.strip().partition("@")
        if not box:
            raise ValueError(f"empty mailbox in {text!r}")
        return cls(box, ctx or default_context)


@dataclass(frozen=True, order=True)
class MessageRef:
    """A stable message identity: `location` is the IMAP folder (or spool folder), `validity`
    the UIDVALIDITY (0 for the spool) and `uid` the UID (the spool's message number)."""

    location: str
    validity: int
    uid: int
    key: str = field(default="", compare=False)  # spool: the msg_id, which survives renumbering

    def __str__(self) -> str:
        base = f"{self.location}:{self.validity}:{self.uid}"
        return f"{base}:{self.key}" if self.key else base

    @classmethod
    def parse(cls, text: str) -> MessageRef:
        """`FOLDER:UIDVALIDITY:UID` (IMAP) or `FOLDER:0:NUMBER:KEY` (spool), as `ls` prints.

        Raises ValueError saying the expected format: an id is user input."""
        parts = text.split(":")
        if len(parts) >= 4 and parts[-3].isdecimal() and parts[-2].isdecimal() and parts[0]:
            return cls(":".join(parts[:-3]), int(parts[-3]), int(parts[-2]), parts[-1])
        if len(parts) >= 3 and parts[-2].isdecimal() and parts[-1].isdecimal() and parts[0]:
            return cls(":".join(parts[:-2]), int(parts[-2]), int(parts[-1]))
        raise ValueError(f"{text!r} is not a message id (expected FOLDER:UIDVALIDITY:UID, "
                         "e.g. INBOX:1712345678:42, as `imapvm ls` prints it)")


@dataclass(frozen=True)
class Counts:
    """Voicemail counts of one mailbox. `new` excludes urgent, as Asterisk's inboxcount2."""

    new: int = 0
    old: int = 0
    urgent: int = 0
    folders: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def mwi_new(self) -> int:
        """What the lamp shows as new: Asterisk publishes new + urgent."""
        return self.new + self.urgent


@dataclass(frozen=True)
class StoredMessage:
    """A voicemail as listed: its reference, state flags and the X-Asterisk-VM-* metadata."""

    ref: MessageRef
    folder: Folder
    seen: bool
    urgent: bool
    deleted: bool
    size: int
    headers: dict[str, str]  # lower-cased header name -> value, voicemail headers only

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def caller_id(self) -> tuple[str, str]:
        return (self.header("x-asterisk-vm-caller-id-name"),
                self.header("x-asterisk-vm-caller-id-num"))

    @property
    def duration(self) -> int:
        value = self.header("x-asterisk-vm-duration", "0")
        return int(value) if value.isdigit() else 0

    @property
    def orig_time(self) -> int:
        value = self.header("x-asterisk-vm-orig-time", "0")
        return int(value) if value.isdigit() else 0


@dataclass(frozen=True)
class QuotaInfo:
    """Storage in KiB and message counts; None where the server sets no such limit."""

    storage_used: int | None = None
    storage_limit: int | None = None
    messages: int = 0
    maxmsg: int | None = None

    def full(self, incoming_kib: int = 0) -> bool:
        if self.maxmsg is not None and self.messages >= self.maxmsg:
            return True
        if self.storage_limit is not None and self.storage_used is not None:
            return self.storage_used + incoming_kib > self.storage_limit
        return False

    def describe(self, incoming_kib: int = 0) -> str:
        """Why `full(incoming_kib)` holds, naming only the limits that exist."""
        reasons = []
        if self.maxmsg is not None and self.messages >= self.maxmsg:
            reasons.append(f"{self.messages} of {self.maxmsg} messages")
        if (self.storage_limit is not None and self.storage_used is not None
                and self.storage_used + incoming_kib > self.storage_limit):
            need = f", the message needs {incoming_kib} KiB" if incoming_kib else ""
            reasons.append(f"{self.storage_used} of {self.storage_limit} KiB used{need}")
        return "; ".join(reasons) or "over its limit"

    def nearly_full(self, threshold: float) -> bool:
        """True when any limit is used at `threshold` (0..1) or more."""
        ratios = []
        if self.maxmsg:
            ratios.append(self.messages / self.maxmsg)
        if self.storage_limit and self.storage_used is not None:
            ratios.append(self.storage_used / self.storage_limit)
        return any(r >= threshold for r in ratios)


class StoreError(Exception):
    """Base of the storage errors the menus and the CLI handle."""


class MailboxFull(StoreError):
    """A deposit would exceed the quota or maxmsg: the caller hears vm-mailboxfull."""


class MessageGone(StoreError):
    """The referenced message no longer exists (expunged or moved by another client, or the
    folder's UIDVALIDITY changed)."""


class NotAVoicemail(MessageGone):
    """The id names something that is not a voicemail of that mailbox: ordinary mail, another
    mailbox's (or context's) voicemail, a greeting, or a folder that is not one of the box's.
    A subclass of MessageGone, so every caller that copes with a vanished message copes with
    this too; nothing is ever done to such a message."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (IMAP server down, login refused)."""


class ServerNotAnswering(StoreUnavailable):
    """The server took the connection and said nothing in time: nothing was sent to it, and
    retrying at once would only wait as long again."""


class Refused(StoreError):
    """The store refuses this for good: the same request can never succeed until the
    configuration changes (a refused login, a mailbox or context it cannot hold). The outbox
    sets such deposits aside instead of retrying them."""


class LoginRefused(StoreUnavailable, Refused):
    """The server refused the credentials: retrying at once would only earn a penalty."""


class GreetingKind(enum.Enum):
    UNAVAIL = "unavail"
    BUSY = "busy"
    NAME = "greet"
    TEMP = "temp"


class WatchMode(enum.Enum):
    """How a watcher learns of changes. `WAITING`: no connection slot yet, polling meanwhile.
    `PUSH`: the server calls imapvm on every change (storage/imap/push.py)."""

    PUSH = "push"
    NOTIFY = "notify"
    IDLE = "idle"
    POLL = "poll"
    WAITING = "waiting"
    UNCONNECTED = ""


@dataclass(frozen=True)
class WatchOptions:
    """Tuning of the watchers. `pollfreq` is voicemail.conf's (default 30 s)."""

    pollfreq: float = 30.0
    debounce: float = 0.03
    idle_renew: float = 25 * 60.0  # RFC 2177: servers may drop an IDLE after 30 minutes
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    #: What watchers may use, best first.
    modes: tuple[WatchMode, ...] = (WatchMode.NOTIFY, WatchMode.IDLE, WatchMode.POLL)
    max_connections_per_server: int = 10000
    #: Told the seconds from a server push to the confirmed recount of its mailbox (what the
    #: `imapvm_mwi_latency_seconds` histogram shows); None: not measured.
    on_latency: Callable[[float], None] | None = None
    max_logins_per_server: int = 32  # connections logging in at the same time
    #: Watcher logins started per second per server, at most (0: unpaced): 10,000 watched
    #: logins take 100 s to come up at the default (a Dovecot on 2 cores logs in ~100 a second).
    login_rate: float = 100.0


class CountsReceiver(Protocol):
    """Where a watcher reports (the MWI `CountsTracker`). A recount is bracketed so the
    receiver can discard one that a local change raced."""

    def begin_recount(self, box: MailboxRef) -> int: ...

    def confirm(self, box: MailboxRef, counts: Counts, token: int) -> bool: ...

    def mark_stale(self, boxes: Iterable[MailboxRef]) -> None: ...


@dataclass
class _FailureReport:
    pending: int = 0
    last: str = ""
    logged_at: float | None = None


class ConnectionLimiter:
    """At most `per_server` watcher connections per IMAP server (host, port); at most
    `logins_per_server` of them logging in at once, and logins started no faster than
    `login_rate` per second (0: unpaced). At start-up (or after an outage) ten thousand
    watchers would otherwise all connect within a second: the server forks a login process per
    connection, its process and connection limits are hit, it drops connections, and every
    watcher backs off and retries. Paced, they queue here instead, in order, and each login
    meets an idle server. A watcher waiting for a slot polls meanwhile (a short connection every
    `pollfreq`)."""

    #: At most one log line per server this often about failing watcher connections: with
    #: 10,000 watched accounts, an IMAP outage would otherwise log 10,000 lines a round.
    failure_log_interval = 60.0

    def __init__(self, per_server: int, logins_per_server: int = 32,
                 login_rate: float = 0.0) -> None:
        self.per_server = max(1, per_server)
        self.logins_per_server = max(1, logins_per_server)
        self.login_rate = max(0.0, login_rate)
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._logins: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._next_login: dict[tuple[str, int], float] = {}  # loop time of the next start
        self._failures: dict[tuple[str, int], _FailureReport] = {}
        self.failures_total = 0  # watcher connections that failed, all servers
        self.logins_started = 0  # watcher logins begun, all servers

    def connection_failed(self, host: str, port: int, label: str, problem: object) -> None:
        """Count a watcher's failed connection; the first of an outage is logged at once, the
        rest as one line per server per `failure_log_interval` with their number."""
        rep = self._failures.setdefault((host, port), _FailureReport())
        rep.pending += 1
        self.failures_total += 1
        rep.last = f"{label}: {problem}"
        now = time.monotonic()
        if rep.logged_at is None or now - rep.logged_at >= self.failure_log_interval:
            if rep.logged_at is None:
                _log.warning("mwi: IMAP server %s:%d: watcher connection lost or refused (%s); "
                             "further failures are counted and logged once a minute",
                             host, port, rep.last)
            else:
                _log.warning("mwi: IMAP server %s:%d: %d watcher connection failure(s) in the "
                             "last %.0f s; last: %s", host, port, rep.pending,
                             now - rep.logged_at, rep.last)
            rep.pending = 0
            rep.logged_at = now

    def connection_ok(self, host: str, port: int) -> None:
        """A watcher connected: the end of an outage is logged once."""
        rep = self._failures.pop((host, port), None)
        if rep is not None:
            _log.warning("mwi: IMAP server %s:%d: watcher connections succeed again "
                         "(%d failure(s) since the last report)", host, port, rep.pending)

    def slots(self, host: str, port: int) -> asyncio.Semaphore:
        return self._slots.setdefault((host, port), asyncio.Semaphore(self.per_server))

    @contextlib.asynccontextmanager
    async def login(self, host: str, port: int) -> AsyncIterator[None]:
        """Around opening and logging in one watcher connection: waits for a free login place
        and for the next start time of the server's pace."""
        key = (host, port)
        sem = self._logins.setdefault(key, asyncio.Semaphore(self.logins_per_server))
        async with sem:
            if self.login_rate > 0:
                # Each start books the next one 1/rate later (no burst allowance: a burst is
                # exactly what the pacing is for); the semaphore keeps the queue FIFO.
                loop = asyncio.get_running_loop()
                now = loop.time()
                start = max(now, self._next_login.get(key, now))
                self._next_login[key] = start + 1.0 / self.login_rate
                if start > now:
                    await asyncio.sleep(start - now)
            self.logins_started += 1
            yield


class BoxWatcher(Protocol):
    """A running watcher (storage/watching.py, storage/imap/watch.py), as the MWI engine
    drives it."""

    boxes: set[MailboxRef]
    mode: WatchMode
    recounts: int

    def add(self, box: MailboxRef) -> None: ...

    def remove(self, box: MailboxRef) -> None: ...

    def refresh(self, box: MailboxRef | None = None) -> None: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Store(Protocol):
    """The storage operations; every method is safe to call concurrently."""

    async def counts(self, box: MailboxRef) -> Counts: ...

    async def list(self, box: MailboxRef, folder: Folder,
                   limit: int | None = None) -> list[StoredMessage]:
        """Voicemails of `folder`, oldest first (Asterisk's order), excluding \\Deleted ones;
        only the first `limit` when given."""
        ...

    async def fetch(self, box: MailboxRef, ref: MessageRef) -> bytes:
        """The whole stored email, without marking it read (spool: rebuilt from its files)."""
        ...

    async def fetch_audio(self, box: MailboxRef, ref: MessageRef,
                          prefer: tuple[str, ...] = ("wav", "wav49", "gsm")) -> VoicemailAudio:
        """The recording (and a forward intro), without marking it read."""
        ...

    async def mark_heard(self, box: MailboxRef, ref: MessageRef) -> None: ...

    async def mark_unheard(self, box: MailboxRef, ref: MessageRef) -> None: ...

    async def save_to_folder(self, box: MailboxRef, ref: MessageRef, folder: Folder) -> MessageRef:
        """A real move; returns the message's new reference."""
        ...

    async def delete(self, box: MailboxRef, refs: Sequence[MessageRef]) -> None:
        """Delete exactly these voicemails; never expunge any other message."""
        ...

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False) -> MessageRef:
        """Store a new voicemail (raises MailboxFull)."""
        ...

    async def quota(self, box: MailboxRef) -> QuotaInfo: ...

    async def get_greeting(self, box: MailboxRef, kind: GreetingKind) -> AudioPart | None:
        """The recorded greeting, or None."""
        ...

    async def put_greeting(self, box: MailboxRef, kind: GreetingKind, email: bytes) -> None:
        """Replace the greeting with the one in `email` (a greeting message, as Asterisk
        stores them with imapgreetings=yes)."""
        ...

    async def delete_greeting(self, box: MailboxRef, kind: GreetingKind) -> None: ...

    # The watch capability (storage/watching.py): how the MWI engine learns of changes.
    def watch_key(self, box: MailboxRef) -> Hashable:
        """Boxes with equal keys share one watcher (IMAP: one per login identity)."""
        ...

    def new_watcher(self, box: MailboxRef, receiver: CountsReceiver,
                    options: WatchOptions, limiter: ConnectionLimiter) -> BoxWatcher:
        """A watcher for `box` and those sharing its key; it reports to `receiver` and takes
        its server connections through `limiter` (shared by all the engine's watchers)."""
        ...

    async def aclose(self) -> None: ...
