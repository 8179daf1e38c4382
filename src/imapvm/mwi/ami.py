"""Asterisk AMI sink: `MWIUpdate` for res_mwi_external over one persistent, logged-in
connection.

AMI is a line protocol: a banner line (`Asterisk Call Manager/x.y`), then blocks of
`Key: Value` lines ended by an empty line. Each action carries an ActionID and is answered by a
`Response:` block with the same ActionID (events may interleave and are skipped). The connection
is opened at the first update and kept; a failure closes it and the next update logs in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from imapvm.mwi.model import MwiUpdate

log = logging.getLogger(__name__)


class AmiError(Exception):
    """The AMI refused an action (or the login)."""


class AmiSink:
    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 timeout: float = 5.0) -> None:
        self.name = "ami"
        self.host, self.port = host, port
        self._username, self._secret = username, secret
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.logins = 0

    async def publish(self, update: MwiUpdate) -> None:
        if not update.counts_changed:
            return
        mailbox = f"{update.mailbox}@{update.context}" if update.context else update.mailbox
        async with self._lock:
            for attempt in (1, 2):  # a connection found dead is replaced once, at once
                try:
                    await self._ensure_connected()
                    await self._action("MWIUpdate", Mailbox=mailbox,
                                       NewMessages=str(update.mwi_new),
                                       OldMessages=str(update.old))
                    return
                except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError):
                    await self._drop()
                    if attempt == 2:
                        raise

    async def _ensure_connected(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            return
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout)
        self._reader, self._writer = reader, writer
        banner = await asyncio.wait_for(reader.readline(), self.timeout)
        if not banner:
            raise EOFError("AMI closed the connection before its banner")
        try:
            await self._action("Login", Username=self._username, Secret=self._secret,
                               Events="off")
        except AmiError as exc:
            await self._drop()
            raise AmiError(f"AMI login as {self._username!r} refused: {exc}") from None
        self.logins += 1

    async def _action(self, action: str, **fields: str) -> dict[str, str]:
        assert self._reader is not None
        assert self._writer is not None
        action_id = f"imapvm-{next(self._ids)}"
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        lines += [f"{k}: {v}" for k, v in fields.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await asyncio.wait_for(self._writer.drain(), self.timeout)
        while True:
            block = await asyncio.wait_for(self._read_block(), self.timeout)
            if block.get("actionid") == action_id and "response" in block:
                if block["response"].lower() not in ("success", "follows"):
                    raise AmiError(block.get("message", block["response"]))
                return block

    async def _read_block(self) -> dict[str, str]:
        assert self._reader is not None
        block: dict[str, str] = {}
        while True:
            line = await self._reader.readline()
            if not line:
                raise EOFError("AMI closed the connection")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                if block:
                    return block
                continue
            key, _, value = text.partition(":")
            block[key.strip().lower()] = value.strip()

    async def _drop(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def aclose(self) -> None:
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                with contextlib.suppress(Exception):
                    self._writer.write(b"Action: Logoff\r\n\r\n")
                    await asyncio.wait_for(self._writer.drain(), 1)
            await self._drop()
