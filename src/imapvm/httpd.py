"""A tiny HTTP/1.1 endpoint for health checks and Prometheus metrics (`GET /healthz`,
`GET /metrics`). Enough HTTP for monitoring systems; anything else gets a clear 4xx, malformed
requests a 400, and nothing a client sends can raise out of the handler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_REQUEST = 8192


class HealthServer:
    def __init__(self, metrics: Callable[[], str], health: Callable[[], dict[str, object]]) -> None:
        self._metrics = metrics
        self._health = health
        self._server: asyncio.Server | None = None

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
            status, ctype, body = self._route(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        except Exception:  # never let a request crash the server
            log.exception("health endpoint failed")
            status, ctype, body = 500, "text/plain", b"internal error\n"
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _route(self, head: bytes) -> tuple[int, str, bytes]:
        if len(head) > MAX_REQUEST:
            return 400, "text/plain", b"request too large\n"
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return 400, "text/plain", b"bad request line\n"
        if not version.startswith("HTTP/1."):
            return 400, "text/plain", b"HTTP/1.x only\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", self._metrics().encode()
        if path == "/healthz":
            state = self._health()
            code = 200 if state.get("ok") else 503
            return code, "application/json", (json.dumps(state, sort_keys=True) + "\n").encode()
        return 404, "text/plain", b"not found (try /healthz or /metrics)\n"
