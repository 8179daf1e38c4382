"""Message ids on the file spool (issue 17, items 1, 3 and 17): an id of another mailbox (a sibling
whose number is a prefix, another context) is refused, a deleted or moved id is reported gone,
and a message's voicemail context is its directory's, not the .txt's dialplan `context=`."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapvm.storage.base import Folder, MailboxRef, MessageGone, MessageRef, NotAVoicemail
from imapvm.storage.spool import SpoolStore
from tests.support.vmmail import voicemail

BOX = MailboxRef("1234", "default")


@pytest.fixture
def store(tmp_path: Path) -> SpoolStore:
    return SpoolStore(tmp_path / "voicemail")


async def test_ids_of_other_mailboxes_are_refused(store: SpoolStore, tmp_path: Path) -> None:
    sibling = await store.deposit(MailboxRef("123"), voicemail("123"))
    other_ctx = await store.deposit(MailboxRef("1234", "other"), voicemail("1234", "other"))
    mine = await store.deposit(BOX, voicemail("1234"))
    tree = {p: p.read_bytes() for p in (tmp_path / "voicemail").rglob("*") if p.is_file()}
    unkeyed = MessageRef(sibling.location, 0, sibling.uid)
    traversal = MessageRef("default/1234/../123/INBOX", 0, 0)
    for ref in (sibling, other_ctx, unkeyed, traversal):
        for op in (lambda r=ref: store.delete(BOX, [r]), lambda r=ref: store.mark_heard(BOX, r),
                   lambda r=ref: store.save_to_folder(BOX, r, Folder.WORK),
                   lambda r=ref: store.fetch(BOX, r)):
            with pytest.raises(NotAVoicemail):
                await op()
    assert {p: p.read_bytes() for p in (tmp_path / "voicemail").rglob("*")
            if p.is_file()} == tree
    await store.delete(BOX, [mine])
    assert (await store.counts(BOX)).new == 0


async def test_delete_of_a_gone_id_reports_it_and_deletes_the_rest(store: SpoolStore) -> None:
    a = await store.deposit(BOX, voicemail("1234"))
    b = await store.deposit(BOX, voicemail("1234"))
    moved = await store.save_to_folder(BOX, a, Folder.WORK)
    gone_a = MessageRef(a.location, a.validity, a.uid, "no-such-msg-id")
    with pytest.raises(MessageGone, match="no-such-msg-id"):
        await store.delete(BOX, [b, gone_a])
    assert (await store.counts(BOX)).new == 0  # b went
    with pytest.raises(MessageGone):
        await store.delete(BOX, [b])  # already deleted
    await store.delete(BOX, [moved])
    assert (await store.counts(BOX)).folders["Work"] == 0


async def test_exported_context_is_the_voicemail_context(store: SpoolStore,
                                                         tmp_path: Path) -> None:
    """Asterisk's file storage writes the caller's dialplan context in the .txt's context=."""
    ref = await store.deposit(BOX, voicemail("1234"))
    txt = tmp_path / "voicemail/default/1234/INBOX/msg0000.txt"
    txt.write_text(txt.read_text().replace("context=default", "context=from-internal"))
    [listed] = await store.list(BOX, Folder.INBOX)
    assert listed.header("x-asterisk-vm-context") == "default"
    assert b"X-Asterisk-VM-Context: default\r\n" in await store.fetch(BOX, ref)
