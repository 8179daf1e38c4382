"""One asyncio IMAP connection: TLS, login, commands, IDLE.

A thin I/O layer over `protocol.py`. A reader task frames and parses everything the server sends;
tagged completions resolve the waiting command, untagged responses go both to the running command
and to `on_untagged` (so a watcher sees EXISTS / EXPUNGE / FETCH / STATUS pushes whatever it is
doing). Commands on one connection run one at a time; concurrency comes from having several
connections (see `pool.py`), so a slow fetch never delays a deposit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from imapvm.config.imapflags import TlsMode
from imapvm.storage.imap.protocol import (
    Literal,
    ProtocolError,
    Response,
    ResponseFramer,
    encode_command,
    parse_response,
)

log = logging.getLogger(__name__)

Respond = Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True)
class Timeouts:
    """Seconds; the defaults are Asterisk's imap*timeout defaults."""

    open: float = 60.0
    read: float = 60.0
    write: float = 60.0
    close: float = 60.0


class ImapError(Exception):
    """A command ended NO or BAD. `code` is the response code (e.g. OVERQUOTA, TRYCREATE)."""

    def __init__(self, command: str, status: str, text: str, code: str = "") -> None:
        super().__init__(f"{command}: {status} {f'[{code}] ' if code else ''}{text}")
        self.command = command
        self.status = status
        self.text = text
        self.code = code


class ConnectionLost(Exception):
    """The connection is gone (closed, timed out, or the server said BYE)."""


class ServerSilent(ConnectionLost):
    """The server accepted the connection but sent no greeting in time: retrying at once
    would only wait as long again."""


class AuthenticationFailed(Exception):
    """The server refused the credentials. The message never contains the password."""


@dataclass
class Result:
    """The outcome of a command that completed OK."""

    status: str
    code: str
    code_args: list[object]
    text: str
    untagged: list[Response] = field(default_factory=list)

    def named(self, name: str) -> list[Response]:
        return [r for r in self.untagged if r.name == name]


@dataclass
class _Pending:
    name: str
    future: asyncio.Future[Response]
    tag: bytes = b""
    untagged: list[Response] = field(default_factory=list)


_tags = itertools.count(1)


class ImapConnection:
    """An IMAP client connection. Create with `await ImapConnection.open(...)`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        host: str,
        timeouts: Timeouts,
        label: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.host = host
        self.timeouts = timeouts
        self.label = label
        self.capabilities: frozenset[str] = frozenset()
        self.on_untagged: Callable[[Response], None] | None = None
        self.selected: str | None = None
        self.encrypted = False
        self._framer = ResponseFramer()
        self._pending: list[_Pending] = []  # in flight, oldest first (pipelining)
        # Continuation requests ("+ ...") as they arrive; a queue, so one that arrives before
        # anybody waits for it (during drain(), say) is never lost.
        self._continuations: asyncio.Queue[Response] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._close_reason: str = ""
        self._greeting: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"imap-read-{label}")

    # -- opening --------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        tls: TlsMode = TlsMode.NONE,
        ssl_context: ssl.SSLContext | None = None,
        timeouts: Timeouts | None = None,
        label: str = "",
    ) -> ImapConnection:
        timeouts = timeouts or Timeouts()
        ctx = ssl_context
        if ctx is None and tls is not TlsMode.NONE:
            ctx = _default_tls_context()  # loading the CA store costs ~25 ms: once
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=ctx if tls is TlsMode.IMPLICIT else None,
                    server_hostname=host if tls is TlsMode.IMPLICIT else None,
                ),
                timeouts.open,
            )
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {host}:{port}: {exc or 'timeout'}") from exc
        conn = cls(reader, writer, host=host, timeouts=timeouts, label=label or f"{host}:{port}")
        conn.encrypted = tls is TlsMode.IMPLICIT
        try:
            try:
                greeting = await asyncio.wait_for(asyncio.shield(conn._greeting), timeouts.open)
            except TimeoutError:
                raise ServerSilent(
                    f"{conn.label}: accepted the connection but sent no IMAP greeting within "
                    f"{timeouts.open:g} s (is it an IMAP server?)") from None
            if greeting.status == "BYE":
                raise ConnectionLost(f"server refused the connection: {greeting.text}")
            await conn.refresh_capabilities(greeting)
            if tls in (TlsMode.STARTTLS_REQUIRED, TlsMode.STARTTLS_IF_OFFERED):
                if "STARTTLS" in conn.capabilities:
                    assert ctx is not None
                    await conn._starttls(ctx)
                elif tls is TlsMode.STARTTLS_REQUIRED:
                    raise ConnectionLost(f"{host}:{port} does not offer STARTTLS (imapflags=tls)")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def refresh_capabilities(self, status: Response | None = None) -> None:
        if status is not None and status.code == "CAPABILITY":
            self._set_capabilities(status.code_args)
            return
        res = await self.execute("CAPABILITY")
        for r in res.named("CAPABILITY"):
            self._set_capabilities(r.values)

    def _set_capabilities(self, values: Sequence[object]) -> None:
        self.capabilities = frozenset(
            v.decode("ascii", "replace").upper() for v in values if isinstance(v, bytes)
        )

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    async def _starttls(self, ctx: ssl.SSLContext) -> None:
        await self.execute("STARTTLS")
        # The reader task must not read while the TLS handshake takes over the transport.
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task
        try:
            await asyncio.wait_for(self._writer.start_tls(ctx, server_hostname=self.host),
                                   self.timeouts.open)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            await self._abort(f"TLS handshake failed: {exc}")
            raise ConnectionLost(f"{self.label}: TLS handshake failed: {exc}") from exc
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"imap-read-{self.label}")
        self.encrypted = True
        await self.refresh_capabilities()

    # -- authentication -------------------------------------------------------------------
    async def login(self, user: str, password: str) -> None:
        """LOGIN (only if the server does not forbid it)."""
        if self.has("LOGINDISABLED"):
            raise AuthenticationFailed(f"{self.label}: LOGIN is disabled on this connection")
        try:
            res = await self.execute("LOGIN", user, password, log_args=False)
        except ImapError as exc:
            detail = f"{self.label}: login as {user!r} refused: {exc.text}"
            raise AuthenticationFailed(detail) from None
        await self._after_login(res)

    async def authenticate_plain(self, authzid: str, authcid: str, password: str) -> None:
        """SASL PLAIN with an authorization id: how a master user logs in as a mailbox owner on
        both Dovecot and Cyrus (RFC 4616). Uses SASL-IR when offered, else a continuation."""
        blob = base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())
        try:
            if self.has("SASL-IR"):
                res = await self.execute("AUTHENTICATE", "PLAIN", blob, log_args=False,
                                         continuation=[])
            else:
                res = await self.execute("AUTHENTICATE", "PLAIN", log_args=False,
                                         continuation=[blob])
        except ImapError as exc:
            raise AuthenticationFailed(
                f"{self.label}: master login of {authcid!r} as {authzid!r} refused: {exc.text}"
            ) from None
        await self._after_login(res)

    async def authenticate_xoauth2(self, user: str, token: str) -> None:
        """SASL XOAUTH2 (Microsoft 365, Gmail): a bearer token instead of a password. On a bad
        token the server sends an error challenge, which is acknowledged with an empty line."""
        blob = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())
        try:
            if self.has("SASL-IR"):
                res = await self.execute("AUTHENTICATE", "XOAUTH2", blob, log_args=False,
                                         continuation=[])
            else:
                res = await self.execute("AUTHENTICATE", "XOAUTH2", log_args=False,
                                         continuation=[blob])
        except ImapError as exc:
            raise AuthenticationFailed(
                f"{self.label}: XOAUTH2 login as {user!r} refused: {exc.text}") from None
        await self._after_login(res)

    async def authenticate_gssapi(self, service_host: str, authzid: str = "") -> None:
        """SASL GSSAPI (RFC 4752): Kerberos, with the process's credential cache
        (KRB5CCNAME) or client keytab (KRB5_CLIENT_KTNAME); no password is involved.
        `authzid` is the mailbox owner when the principal acts for another user."""
        try:
            import gssapi
        except ImportError:
            raise AuthenticationFailed(
                f"{self.label}: Kerberos login needs the gssapi package "
                "(pip install 'imapvm[kerberos]')") from None
        target = gssapi.Name(f"imap@{service_host}", gssapi.NameType.hostbased_service)
        ctx = gssapi.SecurityContext(name=target, usage="initiate")

        async def respond(challenge: bytes) -> bytes:
            if not ctx.complete:  # KDC requests may block: off the event loop
                token = await asyncio.to_thread(ctx.step, challenge or None)
                return token or b""
            # The server's 4-byte security-layer offer; we take none (TLS protects the link).
            ctx.unwrap(challenge)
            return bytes(ctx.wrap(b"\x01\x00\x00\x00" + authzid.encode(), False).message)

        try:
            first = await asyncio.to_thread(ctx.step)
            args: tuple[bytes | str, ...] = ("GSSAPI",)
            if self.has("SASL-IR"):
                args += (base64.b64encode(first or b"") or b"=",)
                res = await self.execute("AUTHENTICATE", *args, log_args=False,
                                         continuation=respond)
            else:
                queued = [first or b""]

                async def first_then_rest(challenge: bytes) -> bytes:
                    return queued.pop() if queued else await respond(challenge)

                res = await self.execute("AUTHENTICATE", *args, log_args=False,
                                         continuation=first_then_rest)
        except gssapi.exceptions.GSSError as exc:
            raise AuthenticationFailed(f"{self.label}: Kerberos: {exc.gen_message()}") from None
        except ImapError as exc:
            raise AuthenticationFailed(
                f"{self.label}: GSSAPI login refused: {exc.text}") from None
        await self._after_login(res)

    async def _after_login(self, res: Result) -> None:
        if res.code == "CAPABILITY":
            self._set_capabilities(res.code_args)  # type: ignore[arg-type]
        else:
            await self.refresh_capabilities()

    # -- commands -------------------------------------------------------------------------
    async def execute(
        self,
        name: str,
        *args: bytes | str | int,
        log_args: bool = True,
        continuation: Sequence[bytes] | Respond | None = None,
        limit: float | None = None,
    ) -> Result:
        """Run one command; raises ImapError on NO/BAD, ConnectionLost if the link dies.

        `continuation`: the lines to send, in order, when the server asks for more (SASL
        exchanges); once they are used up, further requests get an empty line, which is how a
        client acknowledges a SASL error challenge. Or a coroutine function given each decoded
        challenge and returning the raw answer (multi-step SASL such as GSSAPI)."""
        async with self._lock:
            return await self._execute_locked(name, args, log_args, continuation, limit)

    async def _execute_locked(
        self,
        name: str,
        args: Sequence[bytes | str | int],
        log_args: bool,
        continuation: Sequence[bytes] | Respond | None,
        limit: float | None,
    ) -> Result:
        if self._closed.is_set():
            raise ConnectionLost(f"{self.label}: {self._close_reason or 'closed'}")
        tag = b"V%d" % next(_tags)
        loop = asyncio.get_running_loop()
        pending = _Pending(name=name, future=loop.create_future(), tag=tag)
        self._pending = [pending]
        self._drain_continuations()
        chunks = encode_command(tag, name, args, literal_plus=self.has("LITERAL+"))
        log.debug("%s > %s %s", self.label, name, _show(args) if log_args else "<hidden>")
        wait_s = limit if limit is not None else self.timeouts.read
        try:
            finished_early = False
            for i, chunk in enumerate(chunks):
                await self._write(chunk)
                if i < len(chunks) - 1 and await self._wait_continuation(pending, wait_s) is None:
                    finished_early = True  # the server answered instead of continuing
                    break
            replies = (list(continuation) if continuation is not None
                       and not callable(continuation) else None)
            while continuation is not None and not finished_early:
                cont = await self._wait_continuation(pending, wait_s)
                if cont is None:
                    break
                if callable(continuation):
                    try:
                        challenge = base64.b64decode(cont.text.strip() or b"")
                        answer = base64.b64encode(await continuation(challenge))
                    except Exception as exc:  # a failed SASL step: cancel the exchange
                        log.warning("%s: %s exchange failed: %s", self.label, name, exc)
                        answer = b"*"
                    await self._write(answer + b"\r\n")
                else:
                    assert replies is not None
                    await self._write((replies.pop(0) if replies else b"") + b"\r\n")
            done = await self._wait(pending.future, wait_s)
        finally:
            self._pending = []
        if done.status != "OK":
            raise ImapError(name, done.status, done.text, done.code)
        return Result(done.status, done.code, list(done.code_args), done.text, pending.untagged)

    def _drain_continuations(self) -> None:
        while not self._continuations.empty():
            self._continuations.get_nowait()

    async def pipeline(
        self, commands: Sequence[tuple[str, Sequence[bytes | str | int]]]
    ) -> list[Result | ImapError]:
        """Send several commands at once and wait for all: one round trip instead of many.

        Only for commands without synchronising literals, and only where each response can be
        attributed: Dovecot runs independent pipelined commands in parallel, so their untagged
        data may interleave. ESEARCH responses name their command (TAG correlator); other data
        is given to the oldest command still running. Each result is a Result or the ImapError
        of a command that ended NO/BAD; a lost connection raises ConnectionLost."""
        async with self._lock:
            if self._closed.is_set():
                raise ConnectionLost(f"{self.label}: {self._close_reason or 'closed'}")
            loop = asyncio.get_running_loop()
            pendings = []
            data = bytearray()
            for name, args in commands:
                tag = b"V%d" % next(_tags)
                chunks = encode_command(tag, name, args, literal_plus=True)
                if len(chunks) != 1 or (not self.has("LITERAL+") and b"{" in chunks[0]
                                        and any(isinstance(a, Literal) for a in args)):
                    raise ValueError("pipeline() takes no synchronising literals")
                data += chunks[0]
                pendings.append(_Pending(name=name, future=loop.create_future(), tag=tag))
                log.debug("%s > %s %s", self.label, name, _show(args))
            self._pending = list(pendings)
            try:
                await self._write(bytes(data))
                results: list[Result | ImapError] = []
                for p in pendings:
                    done = await self._wait(p.future, self.timeouts.read)
                    if done.status != "OK":
                        results.append(ImapError(p.name, done.status, done.text, done.code))
                    else:
                        results.append(Result(done.status, done.code, list(done.code_args),
                                              done.text, p.untagged))
                return results
            finally:
                self._pending = []

    async def _wait_continuation(self, pending: _Pending, wait_s: float) -> Response | None:
        """The next continuation request, or None if the command completed instead."""
        if not self._continuations.empty():
            return self._continuations.get_nowait()
        cont = asyncio.ensure_future(self._continuations.get())
        closed = asyncio.ensure_future(self._closed.wait())
        waits: set[asyncio.Future[Any]] = {cont, pending.future, closed}
        try:
            finished, _ = await asyncio.wait(
                waits, timeout=wait_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            closed.cancel()
            if not cont.done():
                cont.cancel()
        if cont in finished:
            return cont.result()
        if pending.future in finished:
            return None
        if self._closed.is_set():
            raise ConnectionLost(f"{self.label}: {self._close_reason}")
        await self._abort("timed out waiting for continuation")
        raise ConnectionLost(f"{self.label}: timed out waiting for continuation")

    async def _wait(self, fut: asyncio.Future[Response], wait_s: float) -> Response:
        closed = asyncio.ensure_future(self._closed.wait())
        waits: set[asyncio.Future[Any]] = {fut, closed}
        try:
            finished, _ = await asyncio.wait(waits, timeout=wait_s,
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if fut in finished:
            return fut.result()
        if self._closed.is_set():
            raise ConnectionLost(f"{self.label}: {self._close_reason}")
        await self._abort(f"no answer within {wait_s:g}s")
        raise ConnectionLost(f"{self.label}: no answer within {wait_s:g}s")

    async def _write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.timeouts.write)
        except (OSError, TimeoutError) as exc:
            await self._abort(f"write failed: {exc or 'timeout'}")
            raise ConnectionLost(f"{self.label}: write failed") from exc

    # -- IDLE -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def idle(self) -> AsyncIterator[asyncio.Queue[Response]]:
        """`async with conn.idle() as pushes:` — untagged responses arrive on the queue until
        the block exits, which sends DONE and waits for the command to complete."""
        async with self._lock:
            if self._closed.is_set():
                raise ConnectionLost(f"{self.label}: {self._close_reason or 'closed'}")
            queue: asyncio.Queue[Response] = asyncio.Queue()
            tag = b"V%d" % next(_tags)
            pending = _Pending(name="IDLE", future=asyncio.get_running_loop().create_future(),
                               tag=tag)
            self._pending = [pending]
            previous = self.on_untagged

            def push(r: Response) -> None:
                queue.put_nowait(r)
                if previous is not None:
                    previous(r)

            self.on_untagged = push
            try:
                self._drain_continuations()
                await self._write(tag + b" IDLE\r\n")
                cont = await self._wait_continuation(pending, self.timeouts.read)
                if cont is None:
                    done = pending.future.result()
                    raise ImapError("IDLE", done.status, done.text, done.code)
                try:
                    yield queue
                finally:
                    if not self._closed.is_set():
                        await self._write(b"DONE\r\n")
                        await self._wait(pending.future, self.timeouts.read)
            finally:
                self.on_untagged = previous
                self._pending = []

    # -- reading --------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        reason = "connection closed by server"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for raw in self._framer.feed(data):
                    self._dispatch(parse_response(raw))
        except asyncio.CancelledError:
            raise
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("%s: %s", self.label, reason)
        except (OSError, ssl.SSLError) as exc:
            reason = f"connection error: {exc}"
        self._mark_closed(reason)

    def _dispatch(self, r: Response) -> None:
        if not self._greeting.done():
            self._greeting.set_result(r)
            return
        if r.kind == "continuation":
            self._continuations.put_nowait(r)
            return
        if r.kind == "tagged":
            for p in self._pending:
                if p.tag == r.tag and not p.future.done():
                    p.future.set_result(r)
                    break
            else:
                log.warning("%s: completion for unknown tag %r", self.label, r.tag)
            return
        if r.status == "BYE":
            self._close_reason = f"server said BYE: {r.text}"
        owner = self._owner(r)
        if owner is not None:
            owner.untagged.append(r)
        if self.on_untagged is not None:
            try:
                self.on_untagged(r)
            except Exception:  # a consumer's bug must not kill the connection
                log.exception("%s: untagged handler failed", self.label)

    def _owner(self, r: Response) -> _Pending | None:
        """Which running command an untagged response belongs to: the one its ESEARCH TAG
        correlator names, else the oldest still running. (Servers may run pipelined commands
        in parallel, so `pipeline()` is only used where responses carry a correlator or the
        commands' data cannot be confused.)"""
        if r.name == "ESEARCH" and r.values and isinstance(r.values[0], list):
            corr = r.values[0]
            if len(corr) >= 2 and isinstance(corr[0], bytes) and corr[0].upper() == b"TAG":
                for p in self._pending:
                    if p.tag == corr[1]:
                        return p
        for p in self._pending:
            if not p.future.done():
                return p
        return None

    def _mark_closed(self, reason: str) -> None:
        if not self._closed.is_set():
            self._close_reason = self._close_reason or reason
            self._closed.set()
            if not self._greeting.done():
                self._greeting.set_exception(ConnectionLost(f"{self.label}: {reason}"))
                # Whoever waited for the greeting may have given up already (a timeout):
                # mark it retrieved, or asyncio logs "Future exception was never retrieved".
                self._greeting.exception()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> str:
        await self._closed.wait()
        return self._close_reason

    async def _abort(self, reason: str) -> None:
        self._mark_closed(reason)
        self._writer.close()
        self._reader_task.cancel()

    async def close(self) -> None:
        """LOGOUT politely (bounded by the close timeout), then drop the socket. A server that
        never greeted gets no LOGOUT: it would not answer that either."""
        if not self._greeting.done():
            self._mark_closed("closed by client before the server's greeting")
        if not self._closed.is_set():
            with contextlib.suppress(ImapError, ConnectionLost, TimeoutError, OSError):
                await asyncio.wait_for(self.execute("LOGOUT"), self.timeouts.close)
        self._mark_closed("closed by client")
        self._reader_task.cancel()
        # asyncio.wait, not `await task` under suppress(CancelledError): that would also
        # swallow a cancellation of the caller (a watcher being stopped while it closes).
        await asyncio.wait([self._reader_task], timeout=2)
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


@functools.cache
def _default_tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _show(args: Sequence[bytes | str | int]) -> str:
    parts = []
    for a in args:
        if isinstance(a, Literal):
            parts.append(f"{{{len(a)} bytes}}")
        elif isinstance(a, bytes):
            parts.append(a.decode("utf-8", "replace"))
        else:
            parts.append(str(a))
    return " ".join(parts)
