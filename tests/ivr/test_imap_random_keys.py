"""Random key sequences through VoiceMailMain on a scripted channel over the real IMAP store
(issue 17): whatever the caller presses, the session ends (never stalls, never crashes), never
hears a spurious "mailbox full", and nothing that is not a voicemail of the mailbox changes
(the user's own mail, their \\Deleted mail, another mailbox's voicemail: bytes and flags).

Deterministic: fixed seeds; a failure names its seed and keys. More runs:
`IMAPVM_IVR_RUNS=200 .venv/bin/python -m pytest tests/ivr/test_imap_random_keys.py`."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

import numpy as np
import pytest

from imapvm.channel import RecordResult
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.storage.base import Folder, GreetingKind, MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from tests.conftest import Account, make_account
from tests.ivr.conftest import BOB, BOX, NOW, WorldFactory
from tests.ivr.scripted import Rec, ScriptedChannel, Step, Wait
from tests.ivr.test_imap_flows import OWN
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient, simple_message
from tests.support.vmmail import voicemail

RUNS = int(os.environ.get("IMAPVM_IVR_RUNS", "10"))
KEYS = list("0123456789*#")


class RandomCaller(ScriptedChannel):
    """Presses its keys whenever the flow listens; speaks for a second whenever it records."""

    async def record(self, max_seconds: float, silence_seconds: float | None = None,
                     silence_threshold: int = 128, terminators: str = "#",
                     tap: Callable[[np.ndarray], None] | None = None) -> RecordResult:
        if not self.hung_up and self.script:
            self.script.appendleft(Rec(1.0))
            self.recordings += 1
        return await super().record(max_seconds, silence_seconds, silence_threshold,
                                    terminators, tap)

    recordings = 0


def _script(rng: random.Random) -> list[Step]:
    return [Wait() if rng.random() < 0.08 else rng.choice(KEYS)
            for _ in range(rng.randint(1, 30))]


def _snapshot(acct: Account, uids: list[int]) -> dict[int, tuple[bytes, set[str]]]:
    with MailClient(acct.server, acct.user, acct.password) as c:
        c.select("INBOX")
        present = set(c.uids())
        return {u: (c.fetch(u), c.flags(u) - {"\\Recent"}) for u in uids if u in present}


async def _total(store: ImapStore) -> int:
    c = await store.counts(BOX)
    others = [len(await store.list(BOX, f)) for f in Folder if not f.in_main_folder]
    return c.new + c.old + c.urgent + sum(others)


@pytest.mark.parametrize("seed", range(RUNS))
async def test_random_keys_never_stall_nor_touch_foreign_mail(
        seed: int, make_world: WorldFactory, dovecot_slash: DovecotServer) -> None:
    accounts = {BOX: make_account(dovecot_slash, "keys"), BOB: make_account(dovecot_slash, "keys")}

    def resolve(box: MailboxRef) -> ImapSettings:
        a = accounts[box]
        return ImapSettings(host=a.host, port=a.port, user=a.user, password=a.password,
                            vm_tag=box.mailbox, context=box.context, imap_greetings=True)

    store = ImapStore(resolve)
    try:
        w = await make_world(store=store)
        for i in range(3):
            await w.add_message(caller=f"555000{i}", when=NOW - 600 + i, urgent=i == 2)
        await w.add_greeting(GreetingKind.UNAVAIL)
        acct = accounts[BOX]
        with MailClient(acct.server, acct.user, acct.password) as c:
            foreign = [c.append("INBOX", simple_message("own mail")),
                       c.append("INBOX", simple_message("old"), flags="\\Deleted"),
                       c.append("INBOX", voicemail("123"))]
        uids = [u for u in foreign if u is not None]
        before = await asyncio.to_thread(_snapshot, acct, uids)
        script = _script(random.Random(seed))
        ch = RandomCaller(list(script), target=OWN)
        try:
            await asyncio.wait_for(
                voicemail_main(ch, w.session, options=MainOptions(skip_password=True)), 120)
        except TimeoutError:
            pytest.fail(f"seed {seed}: the session stalled on keys {script}")
        assert "vm-mailboxfull" not in ch.played, (seed, script)
        assert await asyncio.to_thread(_snapshot, acct, uids) == before, (seed, script)
        total = await _total(store)
        deletes = sum(1 for s in script if s == "7")
        assert 3 - deletes <= total <= 3 + ch.recordings, (seed, script)
    finally:
        await store.aclose()
