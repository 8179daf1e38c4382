"""One asyncio IMAP connection: the I/O driver of the sans-I/O client core (`client.py`).

It only reads, writes and times out: a reader task feeds the core what arrives and writes what
the core releases (literals the server asked for); the core's events resolve the waiting
command, and untagged responses go both to the command they belong to and to `on_untagged` (so
a watcher sees EXISTS / EXPUNGE / FETCH / STATUS pushes whatever it is doing). Commands on one
connection run one at a time (pipelining aside); concurrency comes from having several
connections (see `account.py`), so a slow fetch never delays a deposit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from imapvm.config.imapflags import TlsMode
from imapvm.storage.imap.client import (
    Bye,
    Challenge,
    Completed,
    Event,
    Greeting,
    IdleStarted,
    ImapClientCore,
    Selected,
    State,
    Stray,
    Untagged,
    has_synchronising_literal,
)
from imapvm.storage.imap.protocol import Literal, ProtocolError, Response

log = logging.getLogger(__name__)

Respond = Callable[[bytes], Awaitable[bytes]]
"""A SASL step: given the decoded challenge, the raw answer."""


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


class _Waiter:
    """A command's share of the events: its untagged data and its own events in order.

    A deque and at most one future, not an asyncio.Queue (three deques, an Event and a
    future per wait): a watcher's IDLE command lives for as long as the connection, times
    ten thousand connections."""

    __slots__ = ("events", "untagged", "wakeup")

    def __init__(self) -> None:
        self.events: collections.deque[Event] = collections.deque()
        self.untagged: list[Response] = []
        self.wakeup: asyncio.Future[None] | None = None

    def put(self, event: Event) -> None:
        self.events.append(event)
        self.wake()

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)


class Pushes:
    """The untagged responses pushed during `ImapConnection.idle()`, in order."""

    __slots__ = ("_items", "_wakeup")

    def __init__(self) -> None:
        self._items: collections.deque[Response] = collections.deque()
        self._wakeup: asyncio.Future[None] | None = None

    def put_nowait(self, r: Response) -> None:
        self._items.append(r)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> Response:
        return self._items.popleft()

    async def get(self) -> Response:
        while not self._items:
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return self._items.popleft()


class ImapConnection:
    """An IMAP client connection. Create with `await ImapConnection.open(...)`.

    All protocol state (tags, continuations, SASL, IDLE, capabilities, the selected mailbox)
    lives in the sans-I/O `ImapClientCore` (`client.py`); this class reads, writes and times
    out."""

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
        self.on_untagged: Callable[[Response], None] | None = None
        #: Called once when the connection closes (a watcher's wake-up, without a task
        #: waiting on `wait_closed` for each of ten thousand idle connections).
        self.on_close: Callable[[], None] | None = None
        self.encrypted = False
        self._core = ImapClientCore()
        self._waiters: dict[bytes, _Waiter] = {}
        self._lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._close_reason: str = ""
        self._greeting: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"imap-read-{label}")

    @property
    def capabilities(self) -> frozenset[str]:
        return self._core.capabilities

    @capabilities.setter
    def capabilities(self, value: frozenset[str]) -> None:
        self._core.capabilities = frozenset(value)

    @property
    def selected(self) -> Selected | None:
        """The mailbox the server confirmed selected (name and UIDVALIDITY), if any."""
        return self._core.selected

    @property
    def state(self) -> State:
        return self._core.state

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
            ctx = await default_tls_context()
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
        """Learn the capabilities: from `status`'s CAPABILITY code when it has one (the core
        already took them), else by asking."""
        if status is not None and status.code == "CAPABILITY":
            return
        await self.execute("CAPABILITY")

    def has(self, capability: str) -> bool:
        return self._core.has(capability)

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
        blob = f"{authzid}\0{authcid}\0{password}".encode()
        try:
            res = await self.authenticate("PLAIN", blob)
        except ImapError as exc:
            raise AuthenticationFailed(
                f"{self.label}: master login of {authcid!r} as {authzid!r} refused: {exc.text}"
            ) from None
        await self._after_login(res)

    async def authenticate_xoauth2(self, user: str, token: str) -> None:
        """SASL XOAUTH2 (Microsoft 365, Gmail): a bearer token instead of a password. On a bad
        token the server sends an error challenge, which is acknowledged with an empty line."""
        blob = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
        try:
            res = await self.authenticate("XOAUTH2", blob)
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
            res = await self.authenticate("GSSAPI", first or b"", respond)
        except gssapi.exceptions.GSSError as exc:
            raise AuthenticationFailed(f"{self.label}: Kerberos: {exc.gen_message()}") from None
        except ImapError as exc:
            raise AuthenticationFailed(
                f"{self.label}: GSSAPI login refused: {exc.text}") from None
        await self._after_login(res)

    async def _after_login(self, res: Result) -> None:
        if res.code != "CAPABILITY":  # else the core took them from the completion
            await self.refresh_capabilities()

    # -- commands -------------------------------------------------------------------------
    async def execute(
        self,
        name: str,
        *args: bytes | str | int,
        log_args: bool = True,
        limit: float | None = None,
    ) -> Result:
        """Run one command; raises ImapError on NO/BAD, ConnectionLost if the link dies.
        Synchronising literals are sent as the server asks for them (the core releases them)."""
        async with self._lock:
            self._check_open()
            log.debug("%s > %s %s", self.label, name, _show(args) if log_args else "<hidden>")
            tag = self._core.send_command(name, *args, literal_plus=self.has("LITERAL+"))
            waiter = self._waiters[tag] = _Waiter()
            try:
                await self._flush()
                done = await self._completion(waiter, limit)
            finally:
                self._waiters.pop(tag, None)
        return _result(name, done.response, waiter)

    async def authenticate(self, mechanism: str, initial: bytes | None = None,
                           respond: Respond | None = None) -> Result:
        """A SASL exchange. `initial`: the client-first response (raw bytes; on the command line
        with SASL-IR). `respond`: given each decoded challenge, returns the raw answer (multi-step
        mechanisms such as GSSAPI); without it every challenge gets an empty answer, which is
        how a client acknowledges an error challenge. A failing `respond` cancels the exchange.
        Raises ImapError when the server refuses."""
        async with self._lock:
            self._check_open()
            log.debug("%s > AUTHENTICATE %s <hidden>", self.label, mechanism)
            tag = self._core.authenticate(mechanism, initial)
            waiter = self._waiters[tag] = _Waiter()
            try:
                await self._flush()
                while True:
                    event = await self._next_event(waiter, None)
                    if isinstance(event, Completed):
                        break
                    if isinstance(event, Challenge):
                        answer: bytes | None = b""
                        if respond is not None:
                            try:
                                answer = await respond(event.data)
                            except Exception as exc:  # a failed SASL step: cancel the exchange
                                log.warning("%s: AUTHENTICATE %s failed: %s",
                                            self.label, mechanism, exc)
                                answer = None
                        self._core.answer_challenge(tag, answer)
                        await self._flush()
            finally:
                self._waiters.pop(tag, None)
        return _result("AUTHENTICATE", event.response, waiter)

    async def pipeline(
        self, commands: Sequence[tuple[str, Sequence[bytes | str | int]]]
    ) -> list[Result | ImapError]:
        """Send several commands at once and wait for all: one round trip instead of many.

        Only for commands without synchronising literals, and only where each response can be
        attributed: Dovecot runs independent pipelined commands in parallel, so their untagged
        data may interleave. ESEARCH responses name their command (TAG correlator); other data
        is given to the oldest command still running. Each result is a Result or the ImapError
        of a command that ended NO/BAD; a lost connection raises ConnectionLost."""
        if not self.has("LITERAL+") and any(has_synchronising_literal(a) for _, a in commands):
            raise ValueError("pipeline() takes no synchronising literals")
        async with self._lock:
            self._check_open()
            sent: list[tuple[str, bytes, _Waiter]] = []
            try:
                for name, args in commands:
                    tag = self._core.send_command(name, *args, literal_plus=True)
                    sent.append((name, tag, _Waiter()))
                    self._waiters[tag] = sent[-1][2]
                    log.debug("%s > %s %s", self.label, name, _show(args))
                await self._flush()
                results: list[Result | ImapError] = []
                for name, _, waiter in sent:
                    done = await self._completion(waiter, None)
                    try:
                        results.append(_result(name, done.response, waiter))
                    except ImapError as exc:
                        results.append(exc)
                return results
            finally:
                for _, tag, _ in sent:
                    self._waiters.pop(tag, None)

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ConnectionLost(f"{self.label}: {self._close_reason or 'closed'}")

    async def _completion(self, waiter: _Waiter, limit: float | None) -> Completed:
        while True:
            event = await self._next_event(waiter, limit)
            if isinstance(event, Completed):
                return event

    async def _next_event(self, waiter: _Waiter, limit: float | None) -> Event:
        """The command's next event; ConnectionLost if the link drops or nothing comes in
        time (the read timeout, or `limit`)."""
        if waiter.events:
            return waiter.events.popleft()
        wait_s = limit if limit is not None else self.timeouts.read
        if not self._closed.is_set():
            waiter.wakeup = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(wait_s):
                    await waiter.wakeup  # an event for it, or the connection closed
            except TimeoutError:
                if not self._closed.is_set():
                    await self._abort(f"no answer within {wait_s:g}s")
                    raise ConnectionLost(f"{self.label}: no answer within {wait_s:g}s") from None
            finally:
                waiter.wakeup = None
        if waiter.events:
            return waiter.events.popleft()
        raise ConnectionLost(f"{self.label}: {self._close_reason}")

    async def _flush(self) -> None:
        data = self._core.data_to_send()
        if data:
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.timeouts.write)
        except (OSError, TimeoutError) as exc:
            await self._abort(f"write failed: {exc or 'timeout'}")
            raise ConnectionLost(f"{self.label}: write failed") from exc

    # -- IDLE -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def idle(self) -> AsyncIterator[Pushes]:
        """`async with conn.idle() as pushes:` — untagged responses arrive on the queue until
        the block exits, which sends DONE and waits for the command to complete."""
        async with self._lock:
            self._check_open()
            queue = Pushes()
            previous = self.on_untagged

            def push(r: Response) -> None:
                queue.put_nowait(r)
                if previous is not None:
                    previous(r)

            tag = self._core.idle()
            waiter = self._waiters[tag] = _Waiter()
            self.on_untagged = push
            try:
                await self._flush()
                event = await self._next_event(waiter, None)
                while not isinstance(event, IdleStarted | Completed):
                    event = await self._next_event(waiter, None)
                if isinstance(event, Completed):
                    raise ImapError("IDLE", event.response.status, event.response.text,
                                    event.response.code)
                try:
                    yield queue
                finally:
                    if not self._closed.is_set():
                        self._core.done()
                        await self._flush()
                        await self._completion(waiter, None)
            finally:
                self.on_untagged = previous
                self._waiters.pop(tag, None)

    # -- reading --------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        reason = "connection closed by server"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                events = self._core.receive_data(data)
                released = self._core.data_to_send()  # literals the server asked for
                if released:
                    self._writer.write(released)
                for event in events:
                    self._dispatch(event)
        except asyncio.CancelledError:
            raise
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("%s: %s", self.label, reason)
        except (OSError, ssl.SSLError) as exc:
            reason = f"connection error: {exc}"
        self._mark_closed(reason)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Greeting):
            if not self._greeting.done():
                self._greeting.set_result(event.response)
        elif isinstance(event, Bye):
            self._close_reason = f"server said BYE: {event.text}"
        elif isinstance(event, Untagged):
            waiter = self._waiters.get(event.owner) if event.owner is not None else None
            if waiter is not None:
                waiter.untagged.append(event.response)
            if self.on_untagged is not None:
                try:
                    self.on_untagged(event.response)
                except Exception:  # a consumer's bug must not kill the connection
                    log.exception("%s: untagged handler failed", self.label)
        elif isinstance(event, Stray):
            log.warning("%s: unexpected %s response %r", self.label, event.response.kind,
                        event.response.raw[:80])
        else:
            waiter = self._waiters.get(event.tag)
            if waiter is not None:
                waiter.put(event)

    def _mark_closed(self, reason: str) -> None:
        if not self._closed.is_set():
            self._close_reason = self._close_reason or reason
            self._closed.set()
            for waiter in self._waiters.values():
                waiter.wake()
            if self.on_close is not None:
                try:
                    self.on_close()
                except Exception:
                    log.exception("%s: close handler failed", self.label)
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


_default_tls: ssl.SSLContext | None = None


async def default_tls_context() -> ssl.SSLContext:
    """The process's verifying TLS context. Loading the CA store costs ~20-25 ms of CPU, so it
    is done once, in a thread (never on the event loop); `ImapStore.prewarm` does it at start."""
    global _default_tls
    if _default_tls is None:
        ctx = await asyncio.to_thread(ssl.create_default_context)
        _default_tls = _default_tls or ctx
    return _default_tls


def _result(name: str, done: Response, waiter: _Waiter) -> Result:
    if done.status != "OK":
        raise ImapError(name, done.status, done.text, done.code)
    return Result(done.status, done.code, list(done.code_args), done.text, waiter.untagged)


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
