"""Another mail client": a plain imaplib connection acting as the mailbox owner's mail program.

Sync tests use it directly; async tests wrap calls in `asyncio.to_thread` (or use `AsyncMailClient`)
so the event loop of the code under test keeps running while the "user" reads and deletes mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
from collections.abc import Iterable
from typing import Any, Protocol

_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


class ServerLike(Protocol):
    host: str
    port: int
    separator: str


class MailClient:
    """A mail user's client logged in to one account, with the few operations sync tests need."""

    def __init__(self, server: ServerLike, user: str, password: str) -> None:
        self.server = server
        self.conn = imaplib.IMAP4(server.host, server.port, timeout=30)
        self.conn.login(user, password)
        self.selected: str | None = None

    def close(self) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.conn.logout()

    def __enter__(self) -> MailClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ok(self, typ: str, data: Any, what: str) -> Any:
        if typ != "OK":
            raise AssertionError(f"{what} failed: {typ} {data!r}")
        return data

    def folder(self, *parts: str) -> str:
        """A folder name built with this server's hierarchy separator."""
        return self.server.separator.join(parts)

    def create(self, folder: str) -> None:
        typ, data = self.conn.create(_quote(folder))
        if typ != "OK" and b"exists" not in b" ".join(data).lower():
            raise AssertionError(f"CREATE {folder} failed: {data!r}")

    def folders(self) -> list[str]:
        data = self._ok(*self.conn.list(), "LIST")
        names = []
        for line in data:
            if isinstance(line, bytes):
                m = re.match(rb'\([^)]*\) (?:"[^"]*"|NIL) (.*)$', line)
                if m:
                    names.append(m.group(1).decode().strip('"'))
        return names

    def select(self, folder: str = "INBOX") -> int:
        data = self._ok(*self.conn.select(_quote(folder)), f"SELECT {folder}")
        self.selected = folder
        return int(data[0])

    def append(self, folder: str, message: bytes, flags: str = "") -> int | None:
        """APPEND; returns the APPENDUID when the server gives one."""
        typ, data = self.conn.append(_quote(folder), f"({flags})" if flags else None, None, message)
        self._ok(typ, data, f"APPEND {folder}")
        m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        return int(m.group(1)) if m else None

    def uids(self, criteria: str = "ALL") -> list[int]:
        self.conn.noop()  # let the server report other sessions' expunges first
        data = self._ok(*self.conn.uid("SEARCH", criteria), "UID SEARCH")
        return [int(x) for x in data[0].split()]

    def flags(self, uid: int) -> set[str]:
        data = self._ok(*self.conn.uid("FETCH", str(uid), "(FLAGS)"), "UID FETCH FLAGS")
        for item in data:
            raw = item[0] if isinstance(item, tuple) else item
            if raw and (m := _FLAGS.search(raw)):
                return {f.decode() for f in m.group(1).split()}
        raise AssertionError(f"no message with UID {uid} in {self.selected}")

    def fetch(self, uid: int) -> bytes:
        """The whole message, without setting \\Seen."""
        data = self._ok(*self.conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "UID FETCH BODY")
        for item in data:
            if isinstance(item, tuple):
                return bytes(item[1])
        raise AssertionError(f"no message with UID {uid} in {self.selected}")

    def read(self, uid: int) -> bytes:
        """Open a message as a mail program does: the body fetch sets \\Seen."""
        data = self._ok(*self.conn.uid("FETCH", str(uid), "(BODY[])"), "UID FETCH BODY")
        for item in data:
            if isinstance(item, tuple):
                return bytes(item[1])
        raise AssertionError(f"no message with UID {uid} in {self.selected}")

    def store(self, uids: Iterable[int], op: str, flags: str) -> None:
        seq = ",".join(str(u) for u in uids)
        self._ok(*self.conn.uid("STORE", seq, op, f"({flags})"), "UID STORE")

    def expunge(self) -> None:
        self._ok(*self.conn.expunge(), "EXPUNGE")

    def delete(self, uids: Iterable[int], expunge: bool = True) -> None:
        """Delete as most mail programs do: flag \\Deleted, then EXPUNGE the folder."""
        self.store(uids, "+FLAGS", "\\Deleted")
        if expunge:
            self.expunge()

    def move(self, uids: Iterable[int], folder: str) -> None:
        """COPY + \\Deleted + EXPUNGE, which works on every server."""
        seq = ",".join(str(u) for u in uids)
        self._ok(*self.conn.uid("COPY", seq, _quote(folder)), "UID COPY")
        self.delete([int(x) for x in seq.split(",")])

    def count(self, folder: str) -> int:
        data = self._ok(*self.conn.status(_quote(folder), "(MESSAGES)"), "STATUS")
        m = re.search(rb"MESSAGES (\d+)", data[0])
        assert m is not None
        return int(m.group(1))

    def capabilities(self) -> set[str]:
        data = self._ok(*self.conn.capability(), "CAPABILITY")
        return {c.upper() for c in data[0].decode().split()}


class AsyncMailClient:
    """The same client for async tests: every call runs in a thread, off the event loop."""

    def __init__(self, client: MailClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, server: ServerLike, user: str, password: str) -> AsyncMailClient:
        return cls(await asyncio.to_thread(MailClient, server, user, password))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def simple_message(subject: str = "hello", body: str = "hi", headers: dict[str, str] | None = None,
                   ) -> bytes:
    """A small ordinary email (not a voicemail) for tests that need foreign mail in a folder."""
    lines = [f"Subject: {subject}", "From: someone@example.org", "To: user@example.org"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()
