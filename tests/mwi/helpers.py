"""Shared pieces of the MWI tests: a recording sink, watcher settings and store construction."""

from __future__ import annotations

import asyncio

from imapvm.mwi.model import MwiUpdate
from imapvm.storage.base import MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import Timeouts
from imapvm.storage.imap.store import ImapStore
from tests.conftest import Account


class Recorder:
    """A sink that keeps every update and lets a test await the next one."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.updates: list[MwiUpdate] = []
        self._seen = 0
        self._arrived = asyncio.Event()

    async def publish(self, update: MwiUpdate) -> None:
        self.updates.append(update)
        self._arrived.set()

    async def next(self, within: float = 6.0) -> MwiUpdate:
        """The next update not yet returned (waits for it)."""
        async with asyncio.timeout(within):
            while self._seen >= len(self.updates):
                self._arrived.clear()
                await self._arrived.wait()
        update = self.updates[self._seen]
        self._seen += 1
        return update

    async def expect(self, name: str, new: int, old: int, urgent: int = 0, *,
                     stale: bool = False, within: float = 6.0) -> MwiUpdate:
        """The next update must be exactly this state (so any intermediate one fails)."""
        u = await self.next(within)
        got = (u.name, u.new, u.old, u.urgent, u.stale)
        assert got == (name, new, old, urgent, stale), f"update {u} != {(name, new, old, urgent)}"
        return u

    async def quiet(self, seconds: float) -> None:
        """Nothing more arrives within `seconds` (longer than the server's push delay). A window
        for something *not* to happen: a busy machine can only make it pass more easily, never
        fail, so it is not a timing assertion."""
        await asyncio.sleep(seconds)
        extra = self.updates[self._seen:]
        assert not extra, f"unexpected updates: {extra}"


def settings_for(acct: Account, box: MailboxRef, **overrides: object) -> ImapSettings:
    """How a watcher reaches `box` in `acct`, with short timeouts."""
    base: dict[str, object] = dict(
        host=acct.host, port=acct.port, user=acct.user, password=acct.password,
        vm_tag=box.mailbox, context=box.context, timeouts=Timeouts(open=2, read=5, close=2),
    )
    base.update(overrides)
    return ImapSettings(**base)  # type: ignore[arg-type]


def make_store(acct: Account, **overrides: object) -> ImapStore:
    return ImapStore(lambda box: settings_for(acct, box, **overrides))
