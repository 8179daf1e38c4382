"""`imapvm outbox` and `imapvm outbox retry`: a deposit the store refused for good (a real
Dovecot mailbox at its message limit) is listed with its reason, put back by the operator once
the cause is fixed, and delivered by the running worker without another deposit to wake it, and
never twice. What the operator can get wrong gets one line and exit 1."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from imapvm.storage.base import MailboxFull, MailboxRef
from imapvm.storage.outbox import Outbox
from tests.commands.test_operator_cli import imapvm
from tests.conftest import Account, make_account
from tests.storage.test_outbox import mailbox_message_ids, make_store
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient
from tests.support.vmmail import message_id, voicemail

BOX = MailboxRef("1234", "default")


def _expunge_all(acct: Account) -> None:
    with MailClient(acct.server, acct.user, acct.password) as c:
        c.select("INBOX")
        c.store(c.uids(), "+FLAGS", "\\Deleted")
        c.expunge()


async def _run(outbox: Outbox) -> asyncio.Task[None]:
    return asyncio.create_task(outbox.run())


async def test_a_refused_deposit_is_listed_retried_and_delivered_once(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    store = make_store(acct, maxmsg=1)
    directory = tmp_path / "outbox"
    outbox = Outbox(directory, store, max_backoff=0.5, rescan_interval=0.05)
    worker = await _run(outbox)
    try:
        await outbox.delivered(await outbox.submit(BOX, voicemail("1234")))
        refused_mail = voicemail("1234")
        refused = await outbox.submit(BOX, refused_mail)
        try:
            await asyncio.wait_for(outbox.delivered(refused), 20)
            raise AssertionError("a full mailbox took the deposit")
        except MailboxFull:
            pass

        listed = await asyncio.to_thread(imapvm, "outbox", "--dir", directory, "--json")
        assert listed.returncode == 0, listed.stderr
        [item] = json.loads(listed.stdout)["items"]
        assert (item["id"], item["state"], item["kind"]) == (refused, "rejected", "deposit")
        assert item["mailbox"] == "1234@default"
        assert "full" in item["last_error"]
        table = await asyncio.to_thread(imapvm, "outbox", "--dir", directory)
        assert f"rejected deposit {refused}" in table.stdout
        assert "imapvm outbox retry" in table.stdout

        await asyncio.to_thread(_expunge_all, acct)  # the operator makes room
        delivered = asyncio.ensure_future(outbox.delivered(refused))  # waits from now on
        done = await asyncio.to_thread(imapvm, "outbox", "retry", refused, "--dir", directory)
        assert done.returncode == 0, done.stderr
        assert f"deposit {refused} for 1234@default: back in the queue" in done.stdout
        await asyncio.wait_for(delivered, 20)  # picked up by the rescan, nothing else woke it
        assert await asyncio.to_thread(mailbox_message_ids, acct) == [message_id(refused_mail)]
        empty = await asyncio.to_thread(imapvm, "outbox", "--dir", directory)
        assert "empty" in empty.stdout
    finally:
        outbox.stop()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await store.aclose()


async def test_a_retried_deposit_that_had_landed_is_not_appended_again(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    """A deposit set aside although the server had it (kept by hand, or a refusal after the
    APPEND was taken): the retry asks for its Message-ID first."""
    acct = make_account(dovecot_slash)
    store = make_store(acct)
    directory = tmp_path / "outbox"
    email = voicemail("1234")
    outbox = Outbox(directory, store, max_backoff=0.5, rescan_interval=0.05)
    item_id = await outbox.submit(BOX, email)
    # what a rejected item looks like on disk, before any worker ran
    (directory / "rejected").mkdir(exist_ok=True)
    for suffix in (".eml", ".json"):
        shutil.move(directory / "pending" / f"{item_id}{suffix}",
                    directory / "rejected" / f"{item_id}{suffix}")
    await store.deposit(BOX, email)  # ... and the server has it already
    worker = await _run(outbox)
    try:
        delivered = asyncio.ensure_future(outbox.delivered(item_id))
        done = await asyncio.to_thread(imapvm, "outbox", "retry", "--all", "--dir", directory)
        assert done.returncode == 0, done.stderr
        await asyncio.wait_for(delivered, 20)
        assert await asyncio.to_thread(mailbox_message_ids, acct) == [message_id(email)]
    finally:
        outbox.stop()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await store.aclose()


def test_operator_mistakes_get_one_line_and_exit_1(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    (directory / "rejected").mkdir(parents=True)
    (directory / "rejected" / "123-abc.json").write_text(json.dumps({
        "id": "123-abc", "mailbox": "200", "context": "default", "urgent": False,
        "message_id": "<m@x>", "created": 0.0, "attempts": 1, "last_error": "mailbox full"}))

    neither = imapvm("outbox", "retry", "--dir", directory)
    assert neither.returncode == 1
    assert neither.stderr.strip() == "imapvm outbox: give the ids to retry, or --all (not both)"
    unknown = imapvm("outbox", "retry", "999-nope", "--dir", directory)
    assert unknown.returncode == 1
    assert "999-nope: no such rejected deposit" in unknown.stderr
    lost = imapvm("outbox", "retry", "123-abc", "--dir", directory)
    assert lost.returncode == 1
    assert "123-abc: its message file 123-abc.eml is lost; nothing to retry" in lost.stderr
    assert (directory / "rejected" / "123-abc.json").exists()  # nothing was moved or lost
    nowhere = imapvm("outbox", "--dir", tmp_path / "missing")
    assert nowhere.returncode == 1
    assert nowhere.stderr.count("\n") == 1
    assert "no such outbox directory" in nowhere.stderr
