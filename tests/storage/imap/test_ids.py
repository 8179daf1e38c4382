"""Message ids are user input (issue 17, items 1, 2, 4, 5 and 17), on every real server variant.

Every operation on an id first proves, in the store, that the id is an undeleted voicemail of
that very mailbox (exact X-Asterisk-VM-Extension and -Context match, as listing does); ordinary
mail, another mailbox's voicemail (a sibling whose number is a prefix too), another context's,
and the user's own \\Deleted mail are never touched. A STORE that changes nothing is not "gone".
Read-only operations create no folder; folder names are built once the separator is known."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from imapvm.storage.base import (
    Folder,
    GreetingKind,
    MailboxRef,
    MessageGone,
    MessageRef,
    NotAVoicemail,
)
from imapvm.storage.imap.store import ImapStore
from tests.conftest import Account
from tests.storage.imap.test_store import settings_for
from tests.support.mailclient import AsyncMailClient, simple_message
from tests.support.vmmail import voicemail

BOX = MailboxRef("1234", "default")


@pytest.fixture
async def store(account: Account) -> AsyncIterator[ImapStore]:
    mark = account.server.command_mark() if account.variant == "restricted" else 0
    s = ImapStore(settings_for(account))
    yield s
    await s.aclose()
    if account.variant == "restricted":
        account.server.assert_only_offered(since=mark)


@pytest.fixture
async def client(account: Account) -> AsyncIterator[AsyncMailClient]:
    c = await AsyncMailClient.connect(account.server, account.user, account.password)
    yield c
    await c.close()


async def _snapshot(client: AsyncMailClient, folder: str) -> dict[int, tuple[bytes, set[str]]]:
    await client.select(folder)
    return {u: (await client.fetch(u), await client.flags(u)) for u in await client.uids()}


async def _append(client: AsyncMailClient, message: bytes, flags: str = "") -> int:
    """APPEND as another client; the new UID, also where the server has no UIDPLUS."""
    await client.select("INBOX")
    before = set(await client.uids())
    uid = await client.append("INBOX", message, flags=flags)
    if uid is None:
        [uid] = set(await client.uids()) - before
    return int(uid)


def _ops(store: ImapStore, ref: MessageRef) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "fetch": lambda: store.fetch(BOX, ref),
        "fetch_audio": lambda: store.fetch_audio(BOX, ref),
        "mark_heard": lambda: store.mark_heard(BOX, ref),
        "mark_unheard": lambda: store.mark_unheard(BOX, ref),
        "undelete": lambda: store.undelete(BOX, ref),
        "save Old": lambda: store.save_to_folder(BOX, ref, Folder.OLD),
        "save INBOX": lambda: store.save_to_folder(BOX, ref, Folder.INBOX),
        "save Work": lambda: store.save_to_folder(BOX, ref, Folder.WORK),
        "delete": lambda: store.delete(BOX, [ref]),
    }


async def test_no_operation_touches_what_is_not_a_voicemail_of_the_mailbox(
    store: ImapStore, client: AsyncMailClient
) -> None:
    mine = await store.deposit(BOX, voicemail("1234"))
    v = mine.validity
    foreign = {
        "ordinary mail": await _append(client, simple_message("plain")),
        "own \\Deleted mail": await _append(client, simple_message("trash"), "\\Deleted"),
        "mailbox 123 (prefix)": (await store.deposit(MailboxRef("123"), voicemail("123"))).uid,
        "mailbox 12345": (await store.deposit(MailboxRef("12345"), voicemail("12345"))).uid,
        "context nondefault": (await store.deposit(MailboxRef("1234", "nondefault"),
                                                   voicemail("1234", "nondefault"))).uid,
        "mentions 1234": await _append(client, simple_message("m", headers={
            "X-Asterisk-VM-Extension": "x1234x", "X-Asterisk-VM-Context": "default"})),
        "1234's own voicemail, \\Deleted": await _append(client, voicemail("1234"),
                                                          "\\Deleted"),
    }
    await store.put_greeting(BOX, GreetingKind.UNAVAIL, voicemail("1234", message_type="unavail"))
    await client.select("INBOX")
    foreign["1234's greeting"] = max(await client.uids())
    before = await _snapshot(client, "INBOX")
    for what, uid in foreign.items():
        ref = MessageRef("INBOX", v, uid)
        for name, op in _ops(store, ref).items():
            if name == "undelete" and what == "1234's own voicemail, \\Deleted":
                continue  # undoing a voicemail's own deletion is what undelete is for
            with pytest.raises(MessageGone):
                await op()
    # a folder that is not one of the mailbox's voicemail folders is refused as well
    await client.create("Private")
    with pytest.raises(NotAVoicemail):
        await store.delete(BOX, [MessageRef("Private", v, mine.uid)])
    assert await _snapshot(client, "INBOX") == before  # bytes and flags, message for message
    assert [m.ref for m in await store.list(BOX, Folder.INBOX)] == [mine]


async def test_an_operation_on_a_foreign_id_says_so(store: ImapStore,
                                                    client: AsyncMailClient) -> None:
    mine = await store.deposit(BOX, voicemail("1234"))
    other = await store.deposit(MailboxRef("123"), voicemail("123"))
    with pytest.raises(NotAVoicemail, match="not a voicemail of 1234@default"):
        await store.delete(BOX, [other])
    await store.delete(BOX, [mine])  # the mailbox's own voicemail still goes
    await client.select("INBOX")
    assert other.uid in await client.uids()


async def test_delete_of_a_gone_id_reports_it_and_deletes_the_rest(
    store: ImapStore, client: AsyncMailClient
) -> None:
    a = await store.deposit(BOX, voicemail("1234"))
    b = await store.deposit(BOX, voicemail("1234"))
    moved = await store.save_to_folder(BOX, a, Folder.WORK)
    with pytest.raises(MessageGone, match=str(a)):
        await store.delete(BOX, [a])  # moved away: its old id is gone
    with pytest.raises(MessageGone, match=str(a)):
        await store.delete(BOX, [b, a])
    assert await store.list(BOX, Folder.INBOX) == []  # b went
    assert [m.ref for m in await store.list(BOX, Folder.WORK)] == [moved]
    with pytest.raises(MessageGone, match=str(b)):
        await store.delete(BOX, [b])  # already deleted
    stale = MessageRef(a.location, a.validity + 1, a.uid)
    with pytest.raises(MessageGone, match=rf"{stale}: folder was recreated"):
        await store.delete(BOX, [stale])
    never = MessageRef(moved.location, moved.validity, moved.uid + 7)
    with pytest.raises(MessageGone, match=str(never)):
        await store.save_to_folder(BOX, never, Folder.OLD)


async def test_a_store_that_changes_nothing_is_not_gone(store: ImapStore) -> None:
    """Item 2: play (\\Seen), then save to Old; every flag already set."""
    ref = await store.deposit(BOX, voicemail("1234"))
    await store.mark_heard(BOX, ref)
    await store.mark_heard(BOX, ref)
    assert await store.save_to_folder(BOX, ref, Folder.OLD) == ref
    assert [m.ref for m in await store.list(BOX, Folder.OLD)] == [ref]
    await store.mark_unheard(BOX, ref)
    await store.mark_unheard(BOX, ref)
    assert await store.save_to_folder(BOX, ref, Folder.INBOX) == ref
    await store.undelete(BOX, ref)  # not deleted: nothing to change, and not gone
    urgent = await store.deposit(BOX, voicemail("1234"), urgent=True)
    await store.mark_unheard(BOX, urgent)
    counts = await store.counts(BOX)
    assert (counts.new, counts.old, counts.urgent) == (1, 0, 1)


async def test_read_only_operations_create_no_folder(
    account: Account, client: AsyncMailClient
) -> None:
    """Item 5: ls (every folder), counts, quota and greetings on a fresh account CREATE nothing;
    the first save to a folder creates it."""
    before = sorted(await client.folders())
    store = ImapStore(settings_for(account, parent_folder="Voicemail", imap_greetings=True,
                                   greetings_folder="Greetings"))
    try:
        for folder in Folder:
            assert await store.list(BOX, folder) == []
        assert (await store.counts(BOX)).new == 0
        assert (await store.quota(BOX)).messages == 0
        assert await store.get_greeting(BOX, GreetingKind.BUSY) is None
        await store.delete_greeting(BOX, GreetingKind.BUSY)
        assert sorted(await client.folders()) == before
        ref = await store.deposit(BOX, voicemail("1234"))
        await store.save_to_folder(BOX, ref, Folder.FAMILY)
        created = set(await client.folders()) - set(before)
        assert created == {f"Voicemail{account.separator}Family"} or created == {
            "Voicemail", f"Voicemail{account.separator}Family"}
    finally:
        await store.aclose()


async def test_move_target_is_built_with_the_servers_separator(
    account: Account, client: AsyncMailClient
) -> None:
    """Item 4: a fresh store (as the CLI has) whose first operation is a move, with '/' in
    imapparentfolder and imapfolder, names every folder with the server's separator."""
    sep = account.separator
    await client.create(f"INBOX{sep}Voicemail")
    seeded = ImapStore(settings_for(account, folder="INBOX/Voicemail", parent_folder="VM/Sub"))
    try:
        ref = await seeded.deposit(BOX, voicemail("1234"))
    finally:
        await seeded.aclose()
    assert ref.location == f"INBOX{sep}Voicemail"
    fresh = ImapStore(settings_for(account, folder="INBOX/Voicemail", parent_folder="VM/Sub"))
    try:
        moved = await fresh.save_to_folder(BOX, ref, Folder.WORK)
        assert moved.location == f"VM{sep}Sub{sep}Work"
        assert moved.location in await client.folders()
    finally:
        await fresh.aclose()
    fresh = ImapStore(settings_for(account, folder="INBOX/Voicemail", parent_folder="VM/Sub"))
    try:
        assert [m.ref for m in await fresh.list(BOX, Folder.WORK)] == [moved]
    finally:
        await fresh.aclose()


async def test_a_voicemail_undeleted_by_the_mail_client_counts_again(
    store: ImapStore, client: AsyncMailClient
) -> None:
    """Found by the model-based test: the exact-match cache forgot a voicemail while it was
    flagged \\Deleted, so after the user took the flag back (or undelete) it never counted
    again (hidden while it was not the folder's newest message, whose `n:*` search re-found it)."""
    a = await store.deposit(BOX, voicemail("1234"))
    await store.deposit(BOX, voicemail("1234"))
    assert (await store.counts(BOX)).new == 2
    await client.select("INBOX")
    await client.store([a.uid], "+FLAGS", "\\Deleted")
    assert (await store.counts(BOX)).new == 1
    await client.store([a.uid], "-FLAGS", "\\Deleted")
    assert (await store.counts(BOX)).new == 2
    assert next(m.ref for m in await store.list(BOX, Folder.INBOX)) == a
    await client.store([a.uid], "+FLAGS", "\\Deleted")
    assert (await store.counts(BOX)).new == 1
    await store.undelete(BOX, a)
    assert (await store.counts(BOX)).new == 2
