"""The flows over the real IMAP store (session Dovecot), checked by another mail client:
a message left is new mail; heard turns \\Seen; deleted is gone; saved is moved to Work;
a forward with comment reaches the other account with the original caller; a greeting recorded
on the phone plays to the next caller."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from imapvm.channel import CallTarget
from imapvm.ivr.leave import leave_message
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.message import parse_message
from imapvm.storage.base import Folder, MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from tests.conftest import Account, make_account
from tests.ivr.conftest import BOB, BOX, NOW, WorldFactory
from tests.ivr.scripted import Press, Rec, ScriptedChannel
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient

OWN = CallTarget("check", "1234")


@pytest.fixture
def accounts(dovecot_slash: DovecotServer) -> dict[MailboxRef, Account]:
    return {BOX: make_account(dovecot_slash, "ivr"), BOB: make_account(dovecot_slash, "ivr")}


@pytest.fixture
async def store(accounts: dict[MailboxRef, Account]) -> AsyncIterator[ImapStore]:
    def resolve(box: MailboxRef) -> ImapSettings:
        a = accounts[box]
        return ImapSettings(host=a.host, port=a.port, user=a.user, password=a.password,
                            vm_tag=box.mailbox, context=box.context, imap_greetings=True)

    s = ImapStore(resolve)
    yield s
    await s.aclose()


async def client_for(account: Account) -> AsyncMailClient:
    return await AsyncMailClient.connect(account.server, account.user, account.password)


def after(key: str, prompt: str = "vm-helpexit") -> Press:
    return Press(key, after=prompt)


async def test_leave_a_message_is_new_mail(make_world: WorldFactory, store: ImapStore,
                                           accounts: dict[MailboxRef, Account]) -> None:
    w = await make_world(store=store)
    ch = ScriptedChannel(["#", Rec(3)])
    result = await leave_message(ch, w.session)
    assert ch.played == ["vm-theperson", "beep", "vm-goodbye"]
    assert result.status == "SUCCESS"
    await w.settle()
    client = await client_for(accounts[BOX])
    try:
        await client.select("INBOX")
        [uid] = await client.uids()
        assert "\\Seen" not in await client.flags(uid)
        meta = parse_message(await client.fetch(uid)).meta
        assert (meta.caller_id_num, meta.duration) == ("5551234", 3)
    finally:
        await client.close()


async def test_heard_deleted_and_saved_as_a_mail_client_sees_them(
        make_world: WorldFactory, store: ImapStore,
        accounts: dict[MailboxRef, Account]) -> None:
    w = await make_world(store=store)
    keep = await w.add_message(caller="5550001", when=NOW - 600)
    doomed = await w.add_message(caller="5550002", when=NOW - 300)
    moved = await w.add_message(caller="5550003", when=NOW - 100)
    client = await client_for(accounts[BOX])
    try:
        # message 1 heard and kept, 2 deleted, 3 saved to Work
        ch = ScriptedChannel(["1", after("6"), "7", after("6"), "9",
                              Press("2", after="vm-savefolder"), after("#")],
                             target=OWN)
        await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
        assert ch.played[-1] == "vm-goodbye"
        assert "vm-deleted" in ch.played
        await client.select("INBOX")
        assert await client.uids() == [keep.uid]
        assert "\\Seen" in await client.flags(keep.uid)
        assert doomed.uid not in await client.uids("ALL")
        work = [f for f in await client.folders() if f.endswith("Work")]
        assert work
        assert await client.count(work[0]) == 1
        assert moved.uid not in await client.uids()
        counts = await store.counts(BOX)
        assert (counts.new, counts.old, counts.urgent) == (0, 1, 0)
        assert len(await store.list(BOX, Folder.WORK)) == 1
    finally:
        await client.close()


async def test_forward_with_comment_over_imap(make_world: WorldFactory, store: ImapStore,
                                              accounts: dict[MailboxRef, Account]) -> None:
    w = await make_world(store=store)
    await w.add_message(caller="5550001", name="Carol", when=NOW - 7200, seconds=2)
    ch = ScriptedChannel(["1", after("8"), "5678#", after("1", "vm-starmain"), Rec(2),
                          after("1", "vm-review"), after("#")],
                         target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert "vm-msgforwarded" in ch.played
    await w.settle()
    client = await client_for(accounts[BOB])
    try:
        await client.select("INBOX")
        [uid] = await client.uids()
        parsed = parse_message(await client.fetch(uid))
        assert (parsed.meta.caller_id_name, parsed.meta.caller_id_num) == ("Carol", "5550001")
        assert parsed.meta.orig_time == NOW - 7200
        assert parsed.intro is not None
        assert parsed.meta.forwarded is not None
        assert parsed.meta.forwarded.mailbox == "1234"
    finally:
        await client.close()


async def test_greeting_recorded_on_the_phone_greets_callers(
        make_world: WorldFactory, store: ImapStore) -> None:
    w = await make_world(store=store)
    ch = ScriptedChannel([after("0", "vm-messages"), "1", Rec(2), "1",
                          after("*", "vm-options"), after("#")],
                         target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert "vm-msgsaved" in ch.played
    caller = ScriptedChannel([Rec(2)])
    await leave_message(caller, w.session)
    assert caller.played == ["audio:2.0s", "vm-intro", "beep", "vm-goodbye"]


async def test_play_then_save_to_old_then_the_next_message(
        make_world: WorldFactory, store: ImapStore,
        accounts: dict[MailboxRef, Account]) -> None:
    """Issue 17 item 2: a heard message is \\Seen already; saving it to Old (9, 1) changes no
    flag, which Dovecot answers with no FETCH. That is not "gone": the caller hears it saved
    and reaches the next message."""
    w = await make_world(store=store)
    first = await w.add_message(caller="5550001", when=NOW - 600)
    second = await w.add_message(caller="5550002", when=NOW - 300)
    ch = ScriptedChannel(["1", after("9"), Press("1", after="vm-savefolder"), after("6"),
                          after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert "vm-mailboxfull" not in ch.played
    assert "vm-savedto" in ch.played
    assert ch.played[-1] == "vm-goodbye"
    client = await client_for(accounts[BOX])
    try:
        await client.select("INBOX")
        assert "\\Seen" in await client.flags(first.uid)
        assert "\\Seen" in await client.flags(second.uid)  # the next message was played too
    finally:
        await client.close()
