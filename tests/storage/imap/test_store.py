"""The IMAP store against real servers: Dovecot (/ and .), the restricted Dovecot, and Cyrus.

Covers the seed's promises at storage level, the collateral rule (the user's own \\Deleted mail
survives every voicemail delete), exact matching in shared folders, quota, greetings and
concurrent changes by another client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from imapvm.storage.audio_parts import extract_audio
from imapvm.storage.base import (
    Folder,
    GreetingKind,
    MailboxFull,
    MailboxRef,
    MessageGone,
)
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from tests.conftest import Account
from tests.support import cyrus as cyrus_support
from tests.support import dovecot as dovecot_support
from tests.support.mailclient import AsyncMailClient, simple_message
from tests.support.vmmail import message_id, voicemail

BOX = MailboxRef("1234", "default")


def settings_for(account: Account, **overrides: object):  # type: ignore[no-untyped-def]
    def resolve(box: MailboxRef) -> ImapSettings:
        base = dict(host=account.host, port=account.port, user=account.user,
                    password=account.password, vm_tag=box.mailbox, context=box.context)
        base.update(overrides)
        return ImapSettings(**base)  # type: ignore[arg-type]
    return resolve


@pytest.fixture
async def store(account: Account) -> AsyncIterator[ImapStore]:
    mark = account.server.command_mark() if account.variant == "restricted" else 0
    s = ImapStore(settings_for(account))
    yield s
    await s.aclose()
    if account.variant == "restricted":  # every test doubles as a "used only what was offered"
        account.server.assert_only_offered(since=mark)


@pytest.fixture
async def client(account: Account) -> AsyncIterator[AsyncMailClient]:
    c = await AsyncMailClient.connect(account.server, account.user, account.password)
    yield c
    await c.close()


async def test_deposit_counts_list_and_listing_never_marks_read(
    store: ImapStore, client: AsyncMailClient
) -> None:
    email = voicemail("1234", caller="5550001", duration=7)
    ref = await store.deposit(BOX, email)
    assert ref.uid > 0
    assert (await store.counts(BOX)) == type(await store.counts(BOX))(new=1, old=0, urgent=0)
    listed = await store.list(BOX, Folder.INBOX)
    assert [m.ref for m in listed] == [ref]
    assert listed[0].caller_id == ("Test Caller", "5550001")
    assert listed[0].duration == 7
    assert await store.fetch(BOX, ref) == email
    audio = await store.fetch_audio(BOX, ref)
    assert audio.message == extract_audio(email).message
    assert audio.message.fmt == "wav"
    assert audio.intro is None
    await client.select("INBOX")
    assert await client.uids() == [ref.uid]
    assert "\\Seen" not in await client.flags(ref.uid)  # neither list nor fetch marked it read


async def test_counts_with_debug_logging_name_what_was_not_matched(
    store: ImapStore, client: AsyncMailClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The debug line of a folder scan (how a wrong count is traced to a UID), for an empty
    folder, one voicemail, and ordinary mail next to it."""
    caplog.set_level(logging.DEBUG, logger="imapvm.storage.imap.store")
    assert (await store.counts(BOX)).new == 0
    await store.deposit(BOX, voicemail("1234"))
    await client.append("INBOX", simple_message("not a voicemail"))
    assert (await store.counts(BOX)).new == 1
    scans = [r.getMessage() for r in caplog.records if "undeleted" in r.getMessage()]
    assert scans
    assert "2 undeleted, 1 matched (not: 2)" in scans[-1]


async def test_heard_on_phone_is_read_in_mail_client(
    store: ImapStore, client: AsyncMailClient
) -> None:
    ref = await store.deposit(BOX, voicemail("1234"))
    await store.mark_heard(BOX, ref)
    await client.select("INBOX")
    assert "\\Seen" in await client.flags(ref.uid)
    counts = await store.counts(BOX)
    assert (counts.new, counts.old, counts.urgent) == (0, 1, 0)
    assert [m.ref for m in await store.list(BOX, Folder.OLD)] == [ref]
    assert await store.list(BOX, Folder.INBOX) == []
    await store.mark_unheard(BOX, ref)
    assert "\\Seen" not in await client.flags(ref.uid)


async def test_deleted_on_phone_is_gone_from_mail_client_and_foreign_deleted_mail_survives(
    store: ImapStore, client: AsyncMailClient, account: Account
) -> None:
    # the user's own mail, which the user flagged \Deleted in a mail client but did not expunge
    own_uid = await client.append("INBOX", simple_message("my own mail"), flags="\\Deleted")
    keep_uid = await client.append("INBOX", simple_message("other mail"))
    a = await store.deposit(BOX, voicemail("1234"))
    b = await store.deposit(BOX, voicemail("1234"))
    await store.delete(BOX, [a])
    await client.select("INBOX")
    uids = await client.uids()
    assert own_uid is None or own_uid in uids  # the collateral rule
    assert len([u for u in uids if u != a.uid]) == 3  # own, other and b are all still there
    if account.variant == "restricted":
        # no UIDPLUS and a foreign \Deleted message present: ours stays flagged, not expunged
        assert a.uid in uids
        assert "\\Deleted" in await client.flags(a.uid)
    else:
        assert a.uid not in uids
    counts = await store.counts(BOX)
    assert (counts.new, counts.old) == (1, 0)
    assert [m.ref for m in await store.list(BOX, Folder.INBOX)] == [b]
    assert keep_uid is None or keep_uid in uids


async def test_delete_expunges_on_old_servers_when_nothing_foreign_is_deleted(
    store: ImapStore, client: AsyncMailClient
) -> None:
    a = await store.deposit(BOX, voicemail("1234"))
    b = await store.deposit(BOX, voicemail("1234"))
    await store.delete(BOX, [a])
    await client.select("INBOX")
    assert await client.uids() == [b.uid]


async def test_expungeonhangup_no_only_flags(account: Account, client: AsyncMailClient) -> None:
    store = ImapStore(settings_for(account, expunge_on_hangup=False))
    try:
        a = await store.deposit(BOX, voicemail("1234"))
        await store.delete(BOX, [a])
        await client.select("INBOX")
        assert "\\Deleted" in await client.flags(a.uid)
        assert (await store.counts(BOX)).new == 0
        await store.undelete(BOX, a)
        assert (await store.counts(BOX)).new == 1
    finally:
        await store.aclose()


async def test_mail_client_changes_reach_the_counts(
    store: ImapStore, client: AsyncMailClient
) -> None:
    a = await store.deposit(BOX, voicemail("1234"))
    b = await store.deposit(BOX, voicemail("1234"))
    await client.select("INBOX")
    await client.read(a.uid)  # opening a message in the mail client sets \Seen
    counts = await store.counts(BOX)
    assert (counts.new, counts.old) == (1, 1)
    await client.delete([b.uid])
    counts = await store.counts(BOX)
    assert (counts.new, counts.old) == (0, 1)
    with pytest.raises(MessageGone):
        await store.fetch(BOX, b)
    with pytest.raises(MessageGone):
        await store.mark_heard(BOX, b)
    assert (await store.fetch(BOX, a)).startswith(b"Date:")


async def test_exact_match_in_a_shared_folder(store: ImapStore, client: AsyncMailClient) -> None:
    mine = await store.deposit(BOX, voicemail("1234"))
    await store.deposit(MailboxRef("12345", "default"), voicemail("12345"))
    await store.deposit(MailboxRef("123", "default"), voicemail("123"))
    await store.deposit(MailboxRef("1234", "nondefault"), voicemail("1234", "nondefault"))
    await client.append("INBOX", simple_message(
        "mentions", headers={"X-Asterisk-VM-Extension": "x1234x",
                             "X-Asterisk-VM-Context": "default"}))
    assert [m.ref for m in await store.list(BOX, Folder.INBOX)] == [mine]
    assert (await store.counts(BOX)).new == 1
    assert (await store.counts(MailboxRef("123", "default"))).new == 1
    assert (await store.counts(MailboxRef("1234", "nondefault"))).new == 1


async def test_urgent_deposit(store: ImapStore, client: AsyncMailClient) -> None:
    ref = await store.deposit(BOX, voicemail("1234"), urgent=True)
    counts = await store.counts(BOX)
    assert (counts.new, counts.old, counts.urgent, counts.mwi_new) == (0, 0, 1, 1)
    assert [m.ref for m in await store.list(BOX, Folder.URGENT)] == [ref]
    await client.select("INBOX")
    assert "\\Flagged" in await client.flags(ref.uid)


async def test_save_to_folder_is_a_real_move(store: ImapStore, client: AsyncMailClient,
                                             account: Account) -> None:
    ref = await store.deposit(BOX, voicemail("1234"))
    moved = await store.save_to_folder(BOX, ref, Folder.WORK)
    assert moved.location != ref.location
    assert [m.ref for m in await store.list(BOX, Folder.WORK)] == [moved]
    assert await store.list(BOX, Folder.INBOX) == []
    work = "Work"
    await client.select("INBOX")
    assert ref.uid not in await client.uids()
    await client.select(work)
    assert await client.uids() == [moved.uid]
    # and back into the main folder as Old
    back = await store.save_to_folder(BOX, moved, Folder.OLD)
    assert [m.ref for m in await store.list(BOX, Folder.OLD)] == [back]
    # Old <-> INBOX is a flag change, not a move
    again = await store.save_to_folder(BOX, back, Folder.INBOX)
    assert again == back
    assert [m.ref for m in await store.list(BOX, Folder.INBOX)] == [back]


async def test_parent_folder_and_separator(account: Account, client: AsyncMailClient) -> None:
    store = ImapStore(settings_for(account, parent_folder="Voicemail"))
    try:
        ref = await store.deposit(BOX, voicemail("1234"))
        moved = await store.save_to_folder(BOX, ref, Folder.FAMILY)
        expected = f"Voicemail{account.separator}Family"
        assert moved.location == expected
        assert expected in await client.folders()
    finally:
        await store.aclose()


async def test_master_user_login(account: Account, client: AsyncMailClient) -> None:
    if account.variant == "cyrus":
        master, pw = cyrus_support.MASTER_USER, cyrus_support.MASTER_PASSWORD
    else:
        master, pw = dovecot_support.MASTER_USER, dovecot_support.MASTER_PASSWORD
    store = ImapStore(settings_for(account, password=None, authuser=master, authpassword=pw))
    try:
        ref = await store.deposit(BOX, voicemail("1234"))
        await client.select("INBOX")
        assert await client.uids() == [ref.uid]  # it landed in the user's mailbox
    finally:
        await store.aclose()


async def test_maxmsg_refuses_deposits(account: Account) -> None:
    store = ImapStore(settings_for(account, maxmsg=2))
    try:
        await store.deposit(BOX, voicemail("1234"))
        await store.deposit(BOX, voicemail("1234"))
        with pytest.raises(MailboxFull):
            await store.deposit(BOX, voicemail("1234"))
        q = await store.quota(BOX)
        assert (q.messages, q.maxmsg) == (2, 2)
    finally:
        await store.aclose()


async def test_storage_quota_refuses_deposits(store: ImapStore, account: Account) -> None:
    big = voicemail("1234", size=150 * 1024)  # ~200 KiB encoded; the servers allow 300 KiB
    await store.deposit(BOX, big)
    with pytest.raises(MailboxFull):
        await store.deposit(BOX, big)
    assert (await store.counts(BOX)).new == 1
    if account.variant != "restricted":  # QUOTA is not advertised there
        q = await store.quota(BOX)
        assert q.storage_limit == 300
        assert q.nearly_full(0.6)
        assert not q.nearly_full(0.8)


async def test_greetings_round_trip_and_never_counted(store: ImapStore) -> None:
    assert await store.get_greeting(BOX, GreetingKind.UNAVAIL) is None
    first = voicemail("1234", message_type="unavail")
    second = voicemail("1234", message_type="unavail")
    other_box = voicemail("1235", message_type="unavail")
    await store.put_greeting(BOX, GreetingKind.UNAVAIL, first)
    await store.put_greeting(MailboxRef("1235", "default"), GreetingKind.UNAVAIL, other_box)
    got = await store.get_greeting(BOX, GreetingKind.UNAVAIL)
    assert got is not None
    assert got == extract_audio(first).message
    assert got.filename == "unavail.wav"
    await store.put_greeting(BOX, GreetingKind.UNAVAIL, second)
    assert await store.get_greeting(BOX, GreetingKind.UNAVAIL) == extract_audio(second).message
    assert await store.get_greeting(BOX, GreetingKind.BUSY) is None
    counts = await store.counts(BOX)
    assert (counts.new, counts.old) == (0, 0)  # Asterisk counts greetings as voicemail (§6 #22)
    await store.delete_greeting(BOX, GreetingKind.UNAVAIL)
    assert await store.get_greeting(BOX, GreetingKind.UNAVAIL) is None
    assert await store.get_greeting(MailboxRef("1235", "default"),
                                    GreetingKind.UNAVAIL) == extract_audio(other_box).message


async def test_concurrent_expunge_by_another_client_never_hits_the_wrong_message(
    store: ImapStore, client: AsyncMailClient
) -> None:
    refs = [await store.deposit(BOX, voicemail("1234")) for _ in range(3)]
    listed = await store.list(BOX, Folder.INBOX)
    assert [m.ref for m in listed] == refs
    assert [m.ref for m in await store.list(BOX, Folder.INBOX, limit=2)] == refs[:2]
    await client.select("INBOX")
    await client.delete([refs[0].uid])  # another client expunges the first one mid-session
    with pytest.raises(MessageGone):
        await store.mark_heard(BOX, refs[0])
    await store.mark_heard(BOX, refs[1])  # the phone still acts on exactly the right message
    assert "\\Seen" in await client.flags(refs[1].uid)
    assert "\\Seen" not in await client.flags(refs[2].uid)
    await store.delete(BOX, [refs[2]])
    assert await client.uids() == [refs[1].uid]


async def test_deposit_message_id_lookup(store: ImapStore) -> None:
    email = voicemail("1234")
    ref = await store.deposit(BOX, email)
    assert await store.contains_message_id(BOX, message_id(email)) == ref
    assert await store.contains_message_id(BOX, "<nope@example>") is None


async def test_non_ascii_parent_folder_in_modified_utf7(account: Account,
                                                        client: AsyncMailClient) -> None:
    store = ImapStore(settings_for(account, parent_folder="Boîte vocale"))
    try:
        ref = await store.deposit(BOX, voicemail("1234"))
        moved = await store.save_to_folder(BOX, ref, Folder.FRIENDS)
        wire = f"Bo&AO4-te vocale{account.separator}Friends"
        assert moved.location == wire
        assert wire in await client.folders()
        assert [m.ref for m in await store.list(BOX, Folder.FRIENDS)] == [moved]
    finally:
        await store.aclose()
