"""A small voicemail world for the flow tests: voicemail.conf, a spool store, a running outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imapvm.audio.core import Audio
from imapvm.audio.formats import encode
from imapvm.config.diagnostics import Diagnostics
from imapvm.config.voicemail import load_voicemail_conf
from imapvm.ivr.session import Exit, Session
from imapvm.message import Deposit, build_greeting, build_voicemail
from imapvm.storage.base import GreetingKind, MailboxRef, MessageRef, Store
from imapvm.storage.outbox import Outbox
from imapvm.storage.spool import SpoolSettings, SpoolStore
from tests.ivr.scripted import tone

BOX = MailboxRef("1234", "default")
BOB = MailboxRef("5678", "default")
NOW = 1_764_000_000  # Mon 24 Nov 2025 16:00 UTC


def conf_text(general: str = "", alice: str = "", extra: str = "") -> str:
    return (f"[general]\nformat=wav\n{general}\n"
            f"[default]\n1234 => 4321,Alice Owner,alice@example.com,,{alice}\n"
            f"5678 => 8765,Bob Other,bob@example.com\n{extra}\n")


def all_exits(exit_: Exit) -> str | None:
    return f"sip:{exit_.extension}@{exit_.context}"


@dataclass
class World:
    session: Session
    store: Store
    outbox: Outbox
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def settle(self) -> None:
        assert await self.outbox.flush(10)

    async def add_message(self, box: MailboxRef = BOX, *, seconds: float = 2.0,
                          caller: str = "5550001", name: str = "Carol", urgent: bool = False,
                          when: int = NOW - 3600, freq: int = 300) -> MessageRef:
        number = (await self.store.counts(box)).new + 1
        dep = Deposit(number=number, caller_id_num=caller, caller_id_name=name,
                      orig_time=when, flag="Urgent" if urgent else "")
        built = build_voicemail(dep, self.session.email_settings(box),
                                Audio(tone(seconds, freq)))
        return await self.store.deposit(box, built.raw, urgent=urgent)

    async def add_greeting(self, kind: GreetingKind, box: MailboxRef = BOX,
                           seconds: float = 1.5) -> None:
        built = build_greeting(kind.value, self.session.email_settings(box),
                               Audio(tone(seconds, 600)))
        await self.store.put_greeting(box, kind, built.raw)


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(tmp_path: Path) -> AsyncIterator[WorldFactory]:
    worlds: list[World] = []

    async def factory(general: str = "", alice: str = "", extra: str = "", *,
                      exits: bool = False, store: Store | None = None,
                      conf: str | None = None) -> World:
        directory = tmp_path / f"w{len(worlds)}"
        directory.mkdir()
        (directory / "voicemail.conf").write_text(conf or conf_text(general, alice, extra))
        diags = Diagnostics()
        config = load_voicemail_conf(directory / "voicemail.conf", diags)
        assert not diags.has_errors, diags.items
        holder: dict[str, Session] = {}
        if store is None:
            store = SpoolStore(directory / "spool", lambda box: SpoolSettings(
                maxmsg=holder["s"].settings(box).maxmsg))
        outbox = Outbox(directory / "outbox", store)  # type: ignore[arg-type]
        session = Session(store=store, outbox=outbox, config=config,
                          exits=all_exits if exits else (lambda _e: None),
                          clock=lambda: float(NOW))
        holder["s"] = session
        world = World(session, store, outbox)
        world.tasks.append(asyncio.create_task(outbox.run()))
        worlds.append(world)
        return world

    yield factory
    for w in worlds:
        w.outbox.stop()
        for t in w.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


def wav_of(seconds: float) -> bytes:
    return encode(Audio(tone(seconds)), "wav")
