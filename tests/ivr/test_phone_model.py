"""Model-based tests of the phone flows (issue 17): random key sequences through VoiceMailMain
on a scripted channel, over the real stores (Dovecot and the spool).

For every sequence: the session ends (the caller's last key, a hang-up or the script running
out) and never stalls (a bounded number of prompts between two inputs) or crashes; what the
session did to the store (heard, saved to a folder, deleted) is replayed on a simple model and
the mailbox then equals the model, counts included; and nothing foreign changed: another
mailbox's voicemail and an ordinary e-mail in the same IMAP folder (or the other mailbox's
spool files) are byte for byte and flag for flag what they were.

Bounded for CI (10 fixed sequences of at most 40 keys per store); a longer hunt with fresh
sequences: `IMAPVM_PHONE_EXAMPLES=200 .venv/bin/python -m pytest tests/ivr/test_phone_model.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapvm.audio.core import Audio
from imapvm.channel import CallTarget, RecordResult
from imapvm.config.diagnostics import Diagnostics
from imapvm.config.voicemail import load_voicemail_conf
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.ivr.session import Session
from imapvm.message import Deposit, build_voicemail
from imapvm.storage.base import Folder, MailboxRef, MessageRef, Store
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.outbox import Outbox, message_id_of
from imapvm.storage.spool import SpoolSettings, SpoolStore
from tests.conftest import make_account
from tests.ivr.conftest import BOB, BOX, NOW, conf_text
from tests.ivr.scripted import Press, ScriptedChannel, Wait, tone
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient

EXAMPLES = int(os.environ.get("IMAPVM_PHONE_EXAMPLES", "10"))
#: CI runs the same sequences every time; a hunt (the variable set) draws new ones.
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    derandomize="IMAPVM_PHONE_EXAMPLES" not in os.environ,
                    suppress_health_check=list(HealthCheck))
#: Prompts between two inputs beyond which the session is looping, not waiting for the caller.
STALL = 400
MAIN = "main"  # INBOX, Old and Urgent: one folder, told apart by flags
FOLDERS = [f.title for f in (Folder.WORK, Folder.FAMILY, Folder.FRIENDS, Folder.CUST1,
                             Folder.CUST2, Folder.CUST3, Folder.CUST4, Folder.CUST5)]

#: Every key, weighted towards what moves through messages and changes them (play, next,
#: previous, delete, save and a folder digit), with `#` and silence rarer so that sessions
#: last; `0` (mailbox options), `3` (advanced), `8` (forward) and `*` (help) stay in.
keys = st.lists(st.sampled_from([*"1111666644777799995523680*#", "wait"]),
                min_size=1, max_size=40)


class Stalled(AssertionError):
    pass


class ModelChannel(ScriptedChannel):
    """The scripted caller, with two additions for random scripts: a recording the script did
    not plan for gets a short take ended by # (the caller says something), and a flow that
    plays on without taking any input is a stall."""

    def __init__(self, script: Sequence[Press | Wait | str]) -> None:
        super().__init__(list(script), target=CallTarget("check", BOX.mailbox))
        self.since_input = 0
        self._left = len(self.script)

    def _progress(self) -> None:
        if len(self.script) != self._left or self.buffer:
            self._left = len(self.script)
            self.since_input = 0

    async def play(self, audio: Audio | str, interrupt_digits: str = "") -> str | None:
        self.since_input += 1
        if self.since_input > STALL:
            raise Stalled(f"{STALL} prompts without input; last: {self.played[-5:]}")
        key = await super().play(audio, interrupt_digits)
        if key is not None:
            self.since_input = 0
        self._progress()
        return key

    async def get_digits(self, count: int, digit_timeout: float, terminators: str = "#") -> str:
        self.since_input = 0
        return await super().get_digits(count, digit_timeout, terminators)

    async def record(self, max_seconds: float, silence_seconds: float | None = None,
                     silence_threshold: int = 128, terminators: str = "#",
                     tap: Callable[[np.ndarray], None] | None = None) -> RecordResult:
        self.since_input = 0
        if self.hung_up or not self.script or isinstance(self.script[0], Press | Wait):
            self.record_calls.append(None)  # type: ignore[arg-type]
            if self.hung_up or not self.script:
                self.hangup_event.set()
                return RecordResult(np.zeros(0, dtype=np.int16), "hangup")
            return RecordResult(tone(1.0), "#")
        return await super().record(max_seconds, silence_seconds, silence_threshold,
                                    terminators, tap)


@dataclass
class Vm:
    where: str  # MAIN or a folder title
    seen: bool | None  # None: the stores may differ (a save to INBOX from another folder)
    urgent: bool


@dataclass
class Recorder:
    """The store the session uses, recording what it changed in BOX by Message-ID."""

    inner: Store
    model: dict[str, Vm]
    log: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def _mid(self, box: MailboxRef, ref: MessageRef) -> str:
        return message_id_of(await self.inner.fetch(box, ref))

    async def mark_heard(self, box: MailboxRef, ref: MessageRef) -> None:
        mid = await self._mid(box, ref) if box == BOX else ""
        await self.inner.mark_heard(box, ref)
        if mid:
            self.model[mid].seen = True
            self.log.append(f"heard {mid}")

    async def mark_unheard(self, box: MailboxRef, ref: MessageRef) -> None:
        mid = await self._mid(box, ref) if box == BOX else ""
        await self.inner.mark_unheard(box, ref)
        if mid:
            self.model[mid].seen = False
            self.log.append(f"unheard {mid}")

    async def save_to_folder(self, box: MailboxRef, ref: MessageRef, folder: Folder
                             ) -> MessageRef:
        mid = await self._mid(box, ref) if box == BOX else ""
        new = await self.inner.save_to_folder(box, ref, folder)
        if mid:
            vm = self.model[mid]
            if folder in (Folder.INBOX, Folder.OLD, Folder.URGENT):
                if folder is Folder.OLD:
                    vm.seen = True
                elif vm.where == MAIN:
                    vm.seen = False
                else:
                    vm.seen = None
                vm.where = MAIN
            else:
                vm.where = folder.title
            self.log.append(f"save {mid} to {folder.title}")
        return new

    async def delete(self, box: MailboxRef, refs: Sequence[MessageRef]) -> None:
        mids = [await self._mid(box, r) for r in refs] if box == BOX else []
        await self.inner.delete(box, refs)
        for mid in mids:
            del self.model[mid]
            self.log.append(f"delete {mid}")


async def _actual(store: Store) -> dict[str, Vm]:
    out: dict[str, Vm] = {}
    for folder in (Folder.URGENT, Folder.INBOX, Folder.OLD, *map(Folder.from_name, FOLDERS)):
        for m in await store.list(BOX, folder):
            mid = message_id_of(await store.fetch(BOX, m.ref))
            where = MAIN if folder in (Folder.URGENT, Folder.INBOX, Folder.OLD) else folder.title
            out[mid] = Vm(where, m.seen, m.urgent)
    return out


async def _scenario(store: Store, directory: Path, script: list[Press | Wait | str],
                    foreign: Callable[[], object]) -> None:
    (directory / "voicemail.conf").write_text(conf_text())
    diags = Diagnostics()
    config = load_voicemail_conf(directory / "voicemail.conf", diags)
    assert not diags.has_errors
    model: dict[str, Vm] = {}
    recorder = Recorder(store, model)
    outbox = Outbox(directory / "outbox", recorder)  # type: ignore[arg-type]
    session = Session(store=recorder, outbox=outbox, config=config,  # type: ignore[arg-type]
                      clock=lambda: float(NOW))
    for i, (urgent, seen) in enumerate([(False, False), (True, False), (False, True),
                                        (False, False)]):
        dep = Deposit(number=i + 1, caller_id_num=f"555000{i}", caller_id_name="C",
                      orig_time=NOW - 3600 + i, flag="Urgent" if urgent else "")
        raw = build_voicemail(dep, session.email_settings(BOX), Audio(tone(1.0 + i))).raw
        ref = await store.deposit(BOX, raw, urgent=urgent)
        if seen:
            await store.mark_heard(BOX, ref)
        model[message_id_of(raw)] = Vm(MAIN, seen, urgent)
    other = build_voicemail(Deposit(number=1, caller_id_num="5559999", caller_id_name="O",
                                    orig_time=NOW), session.email_settings(BOB),
                            Audio(tone(1.0))).raw
    await store.deposit(BOB, other)
    before = foreign()
    runner = asyncio.create_task(outbox.run())
    channel = ModelChannel(script)
    try:
        await asyncio.wait_for(
            voicemail_main(channel, session, options=MainOptions(skip_password=True)), 120)
        assert await outbox.flush(30)
    finally:
        outbox.stop()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    assert channel.hung_up or channel.played[-1] == "vm-goodbye", channel.played[-8:]
    actual = await _actual(store)
    assert set(actual) == set(model), (recorder.log, channel.played)
    for mid, vm in model.items():
        got = actual[mid]
        assert got.where == vm.where, (mid, recorder.log)
        if vm.seen is not None and got.where == MAIN:
            assert got.seen == vm.seen, (mid, recorder.log)
    main = [v for v in actual.values() if v.where == MAIN]
    counts = await store.counts(BOX)
    assert counts.old == sum(1 for v in main if v.seen)
    assert counts.new + counts.urgent == sum(1 for v in main if not v.seen)
    after = foreign()
    for key, value in before.items():  # type: ignore[attr-defined]
        assert after[key] == value, key  # type: ignore[index]


def _script(sequence: list[str]) -> list[Press | Wait | str]:
    return [Wait() if k == "wait" else k for k in sequence]


@SETTINGS
@given(sequence=keys)
def test_random_keys_on_the_spool(sequence: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        store = SpoolStore(directory / "spool", lambda box: SpoolSettings(maxmsg=100))
        bob_dir = directory / "spool" / BOB.context / BOB.mailbox

        def foreign() -> dict[str, bytes]:
            return {str(p.relative_to(bob_dir)): p.read_bytes()
                    for p in sorted(bob_dir.rglob("*")) if p.is_file()
                    and re.fullmatch(r"msg0000\.\w+", p.name)}

        asyncio.run(_scenario(store, directory, _script(sequence), foreign))


@pytest.fixture(scope="module")
def imap_server(dovecot_slash: DovecotServer) -> DovecotServer:
    return dovecot_slash


@SETTINGS
@given(sequence=keys)
def test_random_keys_on_dovecot(sequence: list[str], imap_server: DovecotServer) -> None:
    acct = make_account(imap_server, "phone")
    ordinary = (b"From: friend@example.org\r\nTo: me@example.org\r\nSubject: lunch\r\n"
                b"Message-ID: <lunch@example.org>\r\n\r\nSee you at noon.\r\n")
    with MailClient(imap_server, acct.user, acct.password) as client:
        client.append("INBOX", ordinary, "\\Flagged")

    def resolve(box: MailboxRef) -> ImapSettings:  # both mailboxes share one IMAP account
        return ImapSettings(host=acct.host, port=acct.port, user=acct.user,
                            password=acct.password, vm_tag=box.mailbox, context=box.context)

    def foreign() -> dict[str, tuple[bytes, frozenset[str]]]:
        out: dict[str, tuple[bytes, frozenset[str]]] = {}
        with MailClient(imap_server, acct.user, acct.password) as client:
            client.select("INBOX")
            for uid in client.uids():
                raw = client.fetch(uid)
                if b"X-Asterisk-VM-Extension: 1234\r\n" in raw:
                    continue  # the mailbox under test
                key = re.search(rb"Message-ID: *(\S+)", raw, re.I)
                assert key is not None
                out[key.group(1).decode()] = (raw, frozenset(client.flags(uid)))
        return out

    async def run() -> None:
        store = ImapStore(resolve)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                await _scenario(store, Path(tmp), _script(sequence), foreign)
        finally:
            await store.aclose()

    asyncio.run(run())
