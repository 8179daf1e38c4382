"""HTTP webhook sink: a JSON POST per update, retried with backoff.

A tiny HTTP/1.1 client on asyncio streams (one request per connection, `Connection: close`):
a webhook posts a few hundred bytes a few times a minute, which does not justify a dependency.
2xx is success; 5xx, 429 and network errors are retried with exponential backoff and jitter;
other 4xx are not (the receiver rejected the request, retrying will not help).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from urllib.parse import urlsplit

from imapvm.mwi.model import MwiUpdate

log = logging.getLogger(__name__)


class WebhookError(Exception):
    pass


class WebhookSink:
    def __init__(self, url: str, *, retries: int = 4, timeout: float = 5.0,
                 backoff: float = 0.5, max_backoff: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL {url!r} is not http(s)")
        self.name = "webhook"
        self.url = url
        self._host = parts.hostname
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._hostport = parts.netloc.rpartition("@")[2]
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff

    async def publish(self, update: MwiUpdate) -> None:
        body = json.dumps(update.as_json()).encode()
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                status = await asyncio.wait_for(self._post(body), self.timeout)
            except (OSError, TimeoutError, EOFError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status != 429:
                    raise WebhookError(f"{self.url}: {problem}")
            if attempt == self.retries:
                raise WebhookError(f"{self.url}: {problem} (gave up after {attempt + 1} tries)")
            log.info("webhook %s: %s; retrying in %.1fs", self.url, problem, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.max_backoff)

    async def _post(self, body: bytes) -> int:
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=ssl.create_default_context() if self._tls else None)
        try:
            head = (f"POST {self._path} HTTP/1.1\r\nHost: {self._hostport}\r\n"
                    "Content-Type: application/json\r\nUser-Agent: imapvm-mwi\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise EOFError("no HTTP response")
            fields = status_line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise ValueError(f"bad HTTP status line {status_line[:80]!r}")
            return int(fields[1])
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
