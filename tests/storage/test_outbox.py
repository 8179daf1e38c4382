"""The durable outbox against a real Dovecot that is stopped and restarted mid-deposit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imapvm.storage.base import MailboxFull, MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import Timeouts
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.outbox import Outbox
from tests.conftest import Account, make_account
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient
from tests.support.vmmail import message_id, voicemail
from tests.support.waiting import until

BOX = MailboxRef("1234", "default")


def make_store(acct: Account, **overrides: object) -> ImapStore:
    def resolve(box: MailboxRef) -> ImapSettings:
        base: dict[str, object] = dict(
            host=acct.host, port=acct.port, user=acct.user, password=acct.password,
            vm_tag=box.mailbox, context=box.context, timeouts=Timeouts(open=2, read=5),
        )
        base.update(overrides)
        return ImapSettings(**base)  # type: ignore[arg-type]
    return ImapStore(resolve)


@pytest.fixture
async def worker_factory(tmp_path: Path) -> AsyncIterator:  # type: ignore[type-arg]
    tasks: list[tuple[Outbox, asyncio.Task[None], ImapStore]] = []

    def start(store: ImapStore) -> Outbox:
        outbox = Outbox(tmp_path / "outbox", store, max_backoff=0.5)
        tasks.append((outbox, asyncio.create_task(outbox.run()), store))
        return outbox

    yield start
    for outbox, task, store in tasks:
        outbox.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.aclose()


def mailbox_message_ids(acct: Account) -> list[str]:
    with MailClient(acct.server, acct.user, acct.password) as c:
        c.select("INBOX")
        return [message_id(c.fetch(u)) for u in c.uids()]


async def test_deposits_survive_a_server_outage_without_loss_or_duplicates(
    private_dovecot: DovecotServer, worker_factory  # type: ignore[no-untyped-def]
) -> None:
    acct = make_account(private_dovecot)
    outbox = worker_factory(make_store(acct))
    emails = [voicemail("1234") for _ in range(9)]
    ids = [await outbox.submit(BOX, e) for e in emails[:3]]
    for i in ids:
        await asyncio.wait_for(outbox.delivered(i), 20)
    await asyncio.to_thread(private_dovecot.pause)  # the IMAP server goes away mid-stream
    ids += [await outbox.submit(BOX, e) for e in emails[3:]]
    # the worker tries while the server is away, and fails (the mailbox's lane waits on it)
    await until(lambda: any(i.last_error for i in outbox.pending()), 60,
                "a pending deposit tried and failed")
    assert outbox.depth() == 6
    await asyncio.to_thread(private_dovecot.resume)
    assert await outbox.flush(30)
    got = await asyncio.to_thread(mailbox_message_ids, acct)
    assert sorted(got) == sorted(message_id(e) for e in emails)  # all there, each exactly once


async def test_pending_deposits_survive_a_restart(
    tmp_path: Path, private_dovecot: DovecotServer, worker_factory  # type: ignore[no-untyped-def]
) -> None:
    acct = make_account(private_dovecot)
    first = Outbox(tmp_path / "outbox", make_store(acct))  # no worker: the process "dies"
    emails = [voicemail("1234") for _ in range(3)]
    for e in emails:
        await first.submit(BOX, e)
    assert first.depth() == 3
    outbox = worker_factory(make_store(acct))  # the next process picks them up
    assert await outbox.flush(30)
    got = await asyncio.to_thread(mailbox_message_ids, acct)
    assert sorted(got) == sorted(message_id(e) for e in emails)


async def test_an_item_that_already_landed_is_not_appended_twice(
    tmp_path: Path, private_dovecot: DovecotServer, worker_factory  # type: ignore[no-untyped-def]
) -> None:
    acct = make_account(private_dovecot)
    store = make_store(acct)
    email = voicemail("1234")
    await store.deposit(BOX, email)  # it reached the server, but the answer was lost ...
    await store.aclose()
    first = Outbox(tmp_path / "outbox", make_store(acct))
    item_id = await first.submit(BOX, email)
    meta = tmp_path / "outbox" / "pending" / f"{item_id}.json"
    data = json.loads(meta.read_text())
    data["attempts"] = 1  # ... after the APPEND had been sent
    meta.write_text(json.dumps(data))
    outbox = worker_factory(make_store(acct))
    assert await outbox.flush(30)
    assert await asyncio.to_thread(mailbox_message_ids, acct) == [message_id(email)]


async def test_mailbox_full_is_kept_aside_not_lost(
    tmp_path: Path, dovecot_slash: DovecotServer, worker_factory  # type: ignore[no-untyped-def]
) -> None:
    acct = make_account(dovecot_slash)
    outbox = worker_factory(make_store(acct, maxmsg=1))
    ok = await outbox.submit(BOX, voicemail("1234"))
    await outbox.delivered(ok)
    refused = await outbox.submit(BOX, voicemail("1234"))
    with pytest.raises(MailboxFull):
        await asyncio.wait_for(outbox.delivered(refused), 20)
    assert outbox.depth() == 0
    kept = tmp_path / "outbox" / "rejected" / f"{refused}.eml"
    assert kept.read_bytes().startswith(b"Date:")
    assert "full" in json.loads(kept.with_suffix(".json").read_text())["last_error"]


async def test_submit_refuses_an_email_without_message_id(tmp_path: Path,
                                                          dovecot_slash: DovecotServer) -> None:
    outbox = Outbox(tmp_path / "outbox", make_store(make_account(dovecot_slash)))
    with pytest.raises(ValueError, match="Message-ID"):
        await outbox.submit(BOX, b"Subject: x\r\n\r\nbody\r\n")
    assert outbox.depth() == 0
    assert list((tmp_path / "outbox" / "pending").iterdir()) == []
