"""A tiny HTTP/1.1 endpoint for health checks, Prometheus metrics and MWI pushes (`GET /healthz`,
`GET /metrics`, `POST /mwi/push`). Enough HTTP for monitoring systems and for Dovecot's Lua HTTP
client; anything else gets a clear 4xx, malformed requests a 400, and nothing a client sends can
raise out of the handler.

`POST /mwi/push` (push mode, storage/imap/push.py) needs `Authorization: Bearer <token>`,
compared in constant time and never logged; it is checked before the body is read (and before a
`100 Continue`, which Dovecot's client waits for), bodies are limited to `MAX_PUSH_BODY` bytes,
and a body the handler rejects is answered 400 with one log line."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
MAX_PUSH_BODY = 64 * 1024
_REASONS = {100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request",
            401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Content Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


@dataclass(frozen=True)
class PushEndpoint:
    """`POST /mwi/push`: `token` the bearer token; `handle(body)` raises ValueError for a
    malformed body."""

    token: str
    handle: Callable[[bytes], object]


class _LogLimit:
    """At most one line per `interval` seconds per kind; the rest are counted into the next."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        skipped = self._skipped.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({skipped} more since the last such line)" if skipped else ""
        log.warning(message + suffix, *args)


class HealthServer:
    def __init__(self, metrics: Callable[[], str], health: Callable[[], dict[str, object]],
                 push: PushEndpoint | None = None) -> None:
        self._metrics = metrics
        self._health = health
        self._push = push
        self._server: asyncio.Server | None = None
        self._log = _LogLimit()
        self.push_accepted = 0
        self.push_refused = 0  # wrong or missing token
        self.push_malformed = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._client, host, port)
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status, ctype, body = await self._route(head, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        except Exception:  # never let a request crash the server
            log.exception("HTTP endpoint failed")
            status, ctype, body = 500, "text/plain", b"internal error\n"
        extra = "WWW-Authenticate: Bearer\r\n" if status == 401 else ""
        writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                     + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _route(self, head: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> tuple[int, str, bytes]:
        if len(head) > MAX_REQUEST:
            return 400, "text/plain", b"request too large\n"
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return 400, "text/plain", b"bad request line\n"
        if not version.startswith("HTTP/1."):
            return 400, "text/plain", b"HTTP/1.x only\n"
        path = target.split("?", 1)[0]
        if path == "/mwi/push" and self._push is not None:
            if method != "POST":
                return 405, "text/plain", b"POST only\n"
            return await self._push_request(head, reader, writer)
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", self._metrics().encode()
        if path == "/healthz":
            state = self._health()
            code = 200 if state.get("ok") else 503
            return code, "application/json", (json.dumps(state, sort_keys=True) + "\n").encode()
        return 404, "text/plain", b"not found (try /healthz or /metrics)\n"

    async def _push_request(self, head: bytes, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> tuple[int, str, bytes]:
        assert self._push is not None
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        headers = _headers(head)
        if not _token_ok(headers.get("authorization", b""), self._push.token):
            self.push_refused += 1
            self._log.warning("push-auth", "MWI push from %s refused: missing or wrong bearer "
                              "token", source)
            return 401, "text/plain", b"bearer token required\n"
        if headers.get("transfer-encoding", b"").strip().lower() not in (b"", b"identity"):
            self.push_malformed += 1
            return 411, "text/plain", b"Content-Length required\n"
        try:
            length = int(headers.get("content-length", b""))
        except ValueError:
            self.push_malformed += 1
            return 411, "text/plain", b"Content-Length required\n"
        if not 0 <= length <= MAX_PUSH_BODY:
            self.push_malformed += 1
            self._log.warning("push-size", "MWI push from %s refused: body of %d bytes "
                              "(limit %d)", source, length, MAX_PUSH_BODY)
            return 413, "text/plain", b"body too large\n"
        if headers.get("expect", b"").strip().lower() == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        try:
            self._push.handle(body)
        except ValueError as exc:
            self.push_malformed += 1
            self._log.warning("push-body", "MWI push from %s: malformed body (%d bytes): %s",
                              source, length, exc)
            return 400, "text/plain", b"malformed push\n"
        self.push_accepted += 1
        return 204, "text/plain", b""


def _headers(head: bytes) -> dict[str, bytes]:
    """Header fields of a request head, names in lower case (the first of repeated ones)."""
    out: dict[str, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name and not name[:1].isspace():
            out.setdefault(name.strip().lower().decode("latin-1"), value.strip())
    return out


def _token_ok(authorization: bytes, token: str) -> bool:
    scheme, _, given = authorization.partition(b" ")
    if scheme.lower() != b"bearer" or not token:
        # still compare, so a missing header and a wrong token take the same time
        hmac.compare_digest(b"x" * len(token), token.encode())
        return False
    return hmac.compare_digest(given.strip(), token.encode())
