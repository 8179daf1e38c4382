"""The outbox's items are independent (issue 17 item 13), against a real Dovecot: one deposit that
can never be delivered (login refused, a context the spool refuses, a .json without its .eml)
goes to rejected/ with its reason at once, is not retried in a loop, and holds nobody else up;
one that fails for now (server unreachable) backs off on its own while the others flow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imapvm.config.loader import load
from imapvm.server import VoicemailServer
from imapvm.storage.base import MailboxRef, MessageRef, Refused, StoreError
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import Timeouts
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.outbox import Outbox
from imapvm.storage.spool import SpoolStore
from tests.commands.test_operator_cli import imapvm
from tests.conftest import Account, make_account
from tests.storage.test_outbox import mailbox_message_ids
from tests.support.dovecot import DovecotServer
from tests.support.net import free_port
from tests.support.vmmail import message_id, voicemail

GOOD = MailboxRef("100")
BAD_LOGIN = MailboxRef("200")
DOWN = MailboxRef("300")
BAD_CONTEXT = MailboxRef("400", "de/fault")


class Routes:
    """A deposit target per mailbox, as the RoutingStore is: here two IMAP logins (one whose
    password the server refuses), a server that is down, and a spool."""

    def __init__(self, acct: Account, spool: Path) -> None:
        self.account = acct
        dead_port = free_port()

        def settings(box: MailboxRef) -> ImapSettings:
            user, password = (f"{acct.user}x", "wrong") if box == BAD_LOGIN else (
                acct.user, acct.password)
            port = dead_port if box == DOWN else acct.port
            return ImapSettings(host=acct.host, port=port, user=user, password=password,
                                vm_tag=box.mailbox, context=box.context,
                                timeouts=Timeouts(open=2, read=5))

        self.imap = ImapStore(settings)
        self.spool = SpoolStore(spool)
        self.deposits: dict[MailboxRef, int] = {}

    def _for(self, box: MailboxRef) -> ImapStore | SpoolStore:
        return self.spool if box == BAD_CONTEXT else self.imap

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False) -> MessageRef:
        self.deposits[box] = self.deposits.get(box, 0) + 1
        return await self._for(box).deposit(box, email, urgent=urgent)

    async def contains_message_id(self, box: MailboxRef, message_id: str) -> MessageRef | None:
        return await self._for(box).contains_message_id(box, message_id)


@pytest.fixture
async def routes(tmp_path: Path, dovecot_slash: DovecotServer) -> AsyncIterator[Routes]:
    r = Routes(make_account(dovecot_slash), tmp_path / "spool")
    yield r
    await r.imap.aclose()


async def test_one_undeliverable_deposit_blocks_nobody(tmp_path: Path, routes: Routes) -> None:
    outbox = Outbox(tmp_path / "outbox", routes, max_backoff=0.5)
    # a .json whose .eml is lost (a disk accident), ahead of everything else
    orphan = outbox.pending_dir / "00000000000000000000-orphan.json"
    orphan.write_text(json.dumps({"id": "00000000000000000000-orphan", "mailbox": "100",
                                  "context": "default", "urgent": False, "message_id": "<x@y>",
                                  "created": 0.0}))
    good_mails = [voicemail("100") for _ in range(3)]
    ids = {}
    ids["bad login"] = await outbox.submit(BAD_LOGIN, voicemail("200"))
    ids["down"] = await outbox.submit(DOWN, voicemail("300"))
    ids["bad context"] = await outbox.submit(BAD_CONTEXT, voicemail("400", "de/fault"))
    good_ids = [await outbox.submit(GOOD, m) for m in good_mails]
    waits = {i: asyncio.ensure_future(outbox.delivered(i)) for i in [*ids.values(), *good_ids]}
    task = asyncio.create_task(outbox.run())
    try:
        for i in good_ids:
            await asyncio.wait_for(waits[i], 30)
        for what in ("bad login", "bad context"):
            with pytest.raises(StoreError):
                await asyncio.wait_for(waits[ids[what]], 30)
        waits[ids["down"]].cancel()
        got = await asyncio.to_thread(mailbox_message_ids, routes.account)
        assert sorted(got) == sorted(message_id(m) for m in good_mails)
        rejected = {i.id: i for i in outbox.rejected()}
        assert set(rejected) == {ids["bad login"], ids["bad context"], orphan.stem}
        assert "refused" in rejected[ids["bad login"]].last_error
        assert "wrong" not in rejected[ids["bad login"]].last_error  # no secret in the reason
        assert "de/fault" in rejected[ids["bad context"]].last_error
        assert "missing" in rejected[orphan.stem].last_error
        assert (outbox.rejected_dir / f"{ids['bad login']}.eml").exists()  # kept, never lost
        # the server that is down is retried on its own backoff: still pending, not rejected
        assert [i.id for i in outbox.pending()] == [ids["down"]]
        # more deposits keep flowing while it is down; the refused login is tried once only
        late = voicemail("100")
        await asyncio.wait_for(outbox.delivered(await outbox.submit(GOOD, late)), 30)
        assert routes.deposits[BAD_LOGIN] == 1
        assert routes.deposits[BAD_CONTEXT] == 1
        assert outbox.rejected_count() == 3
    finally:
        outbox.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_refused_is_what_the_stores_raise_for_good() -> None:
    assert issubclass(Refused, StoreError)


def test_doctor_and_metrics_show_rejected_deposits(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\nformat=wav\n\n[default]\n100 => 1,Carol\n")
    outbox_dir = tmp_path / "outbox"
    (outbox_dir / "rejected").mkdir(parents=True)
    (outbox_dir / "rejected" / "123-abc.json").write_text(json.dumps({
        "id": "123-abc", "mailbox": "200", "context": "default", "urgent": False,
        "message_id": "<m@x>", "created": 0.0, "attempts": 1,
        "last_error": "u1@127.0.0.1:1: login as 'u1' refused: Authentication failed."}))
    cfg = ("--config", conf, "--set", f"paths.outbox={outbox_dir}",
           "--set", f"paths.spool={tmp_path / 'spool'}")
    res = imapvm("doctor", "--json", *cfg)
    checks = [c for c in json.loads(res.stdout)["checks"] if c["subject"] == "outbox"]
    [bad] = [c for c in checks if not c["ok"]]
    assert "200@default" in bad["detail"]
    assert "login as 'u1' refused" in bad["detail"]
    loaded = load(str(conf), None, {"paths.outbox": str(outbox_dir),
                                    "paths.spool": str(tmp_path / "spool")})
    server = VoicemailServer(loaded)
    assert "imapvm_outbox_rejected 1" in server.metrics.registry.render()
    assert server.health()["outbox_rejected"] == 1
