"""IMAP accounts: settings, login, server discovery and a small connection pool per account.

One `Account` per (server, login identity). It logs in as the mailbox owner, or as a master user
(`authuser`) through AUTHENTICATE PLAIN with an authorization id, which both Dovecot and Cyrus
accept; Dovecot's `user*master` LOGIN is the fallback where PLAIN is not offered. Passwords never
reach a log line or an exception message.

Discovery (NAMESPACE, else LIST "" "") runs once per account and gives the hierarchy delimiter
and personal namespace prefix, from which every folder name is built: never assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from imapvm.config.imapflags import TlsMode
from imapvm.storage.base import (
    Folder,
    LoginRefused,
    ServerNotAnswering,
    StoreError,
    StoreUnavailable,
)
from imapvm.storage.imap import utf7
from imapvm.storage.imap.connection import (
    AuthenticationFailed,
    ConnectionLost,
    ImapConnection,
    ImapError,
    ServerSilent,
    Timeouts,
)
from imapvm.storage.imap.responses import list_entries, personal_namespace

log = logging.getLogger(__name__)
T = TypeVar("T")


def labelled(label: str, exc: BaseException) -> str:
    """`label: message`, once: connection errors already start with the label."""
    text = str(exc)
    return text if text.startswith(f"{label}:") else f"{label}: {text}"


@dataclass(frozen=True)
class ImapSettings:
    """Everything the IMAP back end needs to know about one voicemail box.

    The composition root fills it from voicemail.conf (per-mailbox values over [general]).
    `vm_tag` is what goes in X-Asterisk-VM-Extension: imapvmshareid if set, else the mailbox.
    """

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    authuser: str | None = None
    authpassword: str | None = field(default=None, repr=False)
    tls: TlsMode = TlsMode.STARTTLS_IF_OFFERED
    verify_certificate: bool = True
    secure_auth: bool = False  # c-client /secure: never send a password in clear
    folder: str = "INBOX"
    parent_folder: str = ""
    greetings_folder: str | None = None
    imap_greetings: bool = False
    expunge_on_hangup: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    oauth2_token_command: tuple[str, ...] = ()
    """argv printing a bearer token for `{user}`: XOAUTH2 instead of a password."""
    gssapi: bool = False
    """Kerberos (SASL GSSAPI) with the process's credentials instead of a password."""
    gssapi_host: str | None = None
    """Host part of the IMAP service principal (imap/<host>); default: `host`."""
    vm_tag: str = ""
    context: str = "default"
    maxmsg: int = 100
    pool_size: int = 3

    @property
    def identity(self) -> tuple[str, int, str, str | None, TlsMode]:
        """Boxes with the same identity share connections."""
        return (self.host, self.port, self.user, self.authuser, self.tls)


@dataclass
class ServerInfo:
    """What discovery learned about the server, per account."""

    delimiter: str = "/"
    prefix: str = ""
    capabilities: frozenset[str] = frozenset()

    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities


_CAPABILITIES: dict[frozenset[str], frozenset[str]] = {}


class Account:
    """Connections for one login identity, at most `pool_size` at a time."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.label = f"{settings.user}@{settings.host}:{settings.port}"
        self.info: ServerInfo | None = None
        self._idle: list[ImapConnection] = []
        self._slots = asyncio.Semaphore(max(1, settings.pool_size))
        self._discover_lock = asyncio.Lock()
        self._known_folders: set[str] = set()
        self._no_verify_ctx: ssl.SSLContext | None = None
        self._closed = False

    # -- connections ----------------------------------------------------------------------
    async def open_connection(self) -> ImapConnection:
        """A new logged-in connection (not from the pool: watchers keep theirs)."""
        s = self.settings
        ctx = None
        if s.tls is not TlsMode.NONE and not s.verify_certificate:
            if self._no_verify_ctx is None:  # a context of its own (verification off), once
                self._no_verify_ctx = ssl.create_default_context()
                self._no_verify_ctx.check_hostname = False
                self._no_verify_ctx.verify_mode = ssl.CERT_NONE
            ctx = self._no_verify_ctx
        try:
            conn = await ImapConnection.open(s.host, s.port, tls=s.tls, ssl_context=ctx,
                                             timeouts=s.timeouts, label=self.label)
        except ServerSilent as exc:
            raise ServerNotAnswering(str(exc)) from exc
        except ConnectionLost as exc:
            raise StoreUnavailable(str(exc)) from exc
        try:
            await self._login(conn)
            if self.info is None:
                async with self._discover_lock:
                    if self.info is None:
                        self.info = await self._discover(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _login(self, conn: ImapConnection) -> None:
        s = self.settings
        if s.secure_auth and not conn.encrypted:
            raise StoreUnavailable(f"{self.label}: imapflags=secure forbids sending the password "
                                   "over an unencrypted connection")
        try:
            if s.gssapi:
                await conn.authenticate_gssapi(s.gssapi_host or s.host, s.user)
            elif s.oauth2_token_command:
                await conn.authenticate_xoauth2(s.user, await self._token())
            elif s.authuser:
                if conn.has("AUTH=PLAIN"):
                    await conn.authenticate_plain(s.user, s.authuser, s.authpassword or "")
                else:  # Dovecot's master-user LOGIN syntax
                    await conn.login(f"{s.user}*{s.authuser}", s.authpassword or "")
            else:
                await conn.login(s.user, s.password or "")
        except AuthenticationFailed as exc:
            if "temporar" in str(exc).lower():  # e.g. Dovecot's auth process restarting
                raise StoreUnavailable(str(exc)) from None
            raise LoginRefused(str(exc)) from None
        except ConnectionLost as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _token(self) -> str:
        """Run the configured token command; its first output line is the bearer token."""
        argv = [a.replace("{user}", self.settings.user) for a in self.settings.oauth2_token_command]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL)
            out, errout = await asyncio.wait_for(proc.communicate(), self.settings.timeouts.open)
        except (OSError, TimeoutError) as exc:
            if "proc" in locals():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            raise StoreUnavailable(f"{self.label}: oauth2 token command {argv[0]!r} failed: "
                                   f"{exc or 'timeout'}") from None
        token = out.decode(errors="replace").strip().splitlines()[0] if out.strip() else ""
        if proc.returncode != 0 or not token:
            detail = errout.decode(errors="replace").strip()[:200]
            raise StoreUnavailable(f"{self.label}: oauth2 token command {argv[0]!r} exited "
                                   f"{proc.returncode} without a token: {detail}")
        return token

    async def _discover(self, conn: ImapConnection) -> ServerInfo:
        # one shared set per distinct CAPABILITY: with 10,000 accounts on one server, a copy
        # each cost ~4.5 KiB per account
        caps = _CAPABILITIES.setdefault(conn.capabilities, conn.capabilities)
        info = ServerInfo(capabilities=caps)
        ns = None
        if conn.has("NAMESPACE"):
            with contextlib.suppress(ImapError):
                ns = personal_namespace((await conn.execute("NAMESPACE")).untagged)
        if ns is not None:
            info.prefix, delim = ns
            if delim:
                info.delimiter = delim
        if ns is None or ns[1] is None:
            entries = list_entries((await conn.execute("LIST", "", "")).untagged)
            if entries and entries[0].delimiter:
                info.delimiter = entries[0].delimiter
        log.info("%s: delimiter %r, personal namespace %r", self.label, info.delimiter,
                 info.prefix)
        return info

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[ImapConnection]:
        """A pooled connection for one operation. A connection that failed is dropped."""
        if self._closed:
            raise StoreUnavailable(f"{self.label}: store is closed")
        async with self._slots:
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            if conn is None:
                conn = await self.open_connection()
            ok = False
            try:
                yield conn
                ok = True
            finally:
                if ok and not conn.closed and not self._closed:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def run(self, op: Callable[[ImapConnection], Awaitable[T]], retries: int = 1) -> T:
        """Run `await op(conn)` on a pooled connection; on a lost connection retry on a fresh one
        (with a short jittered backoff). Only for idempotent operations."""
        attempt = 0
        while True:
            try:
                async with self.connection() as conn:
                    return await op(conn)
            except ConnectionLost as exc:
                if attempt >= retries:
                    raise StoreUnavailable(labelled(self.label, exc)) from exc
            except (LoginRefused, ServerNotAnswering):
                raise
            except StoreUnavailable:
                if attempt >= retries:
                    raise
            except ImapError as exc:  # the server refused: not worth retrying
                raise StoreError(labelled(self.label, exc)) from exc
            attempt += 1
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))

    async def drop_idle(self) -> None:
        """Log out the pooled connections (the next operation opens a new one)."""
        idle, self._idle = self._idle, []
        await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)

    # -- folder names ---------------------------------------------------------------------
    def folder_name(self, folder: Folder) -> str:
        """The IMAP name (modified UTF-7) of a voicemail folder for this account."""
        s = self.settings
        if folder.in_main_folder:
            return self._server_name(s.folder)
        name = folder.title
        if s.parent_folder:
            name = f"{s.parent_folder}/{name}"
        return self._server_name(name, personal=True)

    def greetings_folder_name(self) -> str:
        return self._server_name(self.settings.greetings_folder or self.settings.folder)

    def _server_name(self, name: str, personal: bool = False) -> str:
        """`/` in configured names means "hierarchy separator" (as in Asterisk); INBOX is never
        prefixed; other names get the personal namespace prefix unless they already carry it."""
        info = self.info or ServerInfo()
        name = name.replace("/", info.delimiter)
        if name.upper() == "INBOX" or name.upper().startswith("INBOX" + info.delimiter):
            return utf7.encode(name)
        if (personal or info.prefix) and info.prefix and not name.startswith(info.prefix):
            name = info.prefix + name
        return utf7.encode(name)

    def voicemail_folder_names(self) -> set[str]:
        """Every folder a voicemail of this account may live in (call after discovery)."""
        return {self.folder_name(f) for f in Folder}

    async def folder_exists(self, conn: ImapConnection, name: str) -> bool:
        """Whether `name` exists, without creating it: reading never creates a folder (a
        read-only `ls` must not leave eight empty folders in the user's mail client)."""
        if name in self._known_folders or name.upper() == "INBOX":
            return True
        entries = list_entries((await conn.execute("LIST", "", name)).untagged)
        if any(e.name == name and "\\NONEXISTENT" not in e.attributes
               and "\\NOSELECT" not in e.attributes for e in entries):
            self._known_folders.add(name)
            return True
        return False

    def forget_folder(self, name: str) -> None:
        """The folder turned out not to exist (deleted by a mail client): look again next time."""
        self._known_folders.discard(name)

    async def ensure_folder(self, conn: ImapConnection, name: str) -> None:
        """CREATE a folder once if it does not exist yet (folders are created on first use,
        i.e. by a deposit or a move into it, never by reading)."""
        if name in self._known_folders or name.upper() == "INBOX":
            return
        entries = list_entries((await conn.execute("LIST", "", name)).untagged)
        if not any(e.name == name and "\\NONEXISTENT" not in e.attributes
                   and "\\NOSELECT" not in e.attributes for e in entries):
            try:
                await conn.execute("CREATE", name)
            except ImapError as exc:
                if "ALREADYEXISTS" not in exc.code.upper() and "exist" not in exc.text.lower():
                    raise
        self._known_folders.add(name)
