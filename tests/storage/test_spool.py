"""The file-spool back end: Asterisk's layout, renumbering, locking, and the Store semantics."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from imapvm.storage import spool as spool_module
from imapvm.storage.audio_parts import extract_audio
from imapvm.storage.base import Folder, GreetingKind, MailboxFull, MailboxRef, MessageGone
from imapvm.storage.outbox import Outbox
from imapvm.storage.spool import SpoolSettings, SpoolStore
from tests.support.vmmail import message_id, voicemail

BOX = MailboxRef("1234", "default")


@pytest.fixture
def store(tmp_path: Path) -> SpoolStore:
    return SpoolStore(tmp_path / "voicemail", lambda _box: SpoolSettings(maxmsg=5))


async def test_deposit_writes_asterisk_layout(store: SpoolStore, tmp_path: Path) -> None:
    email = voicemail("1234", caller="5550001", duration=9)
    ref = await store.deposit(BOX, email)
    inbox = tmp_path / "voicemail/default/1234/INBOX"
    assert sorted(p.name for p in inbox.iterdir()) == ["msg0000.txt", "msg0000.wav"]
    txt = (inbox / "msg0000.txt").read_text()
    assert txt.startswith(";\n; Message Information file\n;\n[message]\n")
    assert 'callerid="Test Caller" <5550001>' in txt
    assert "duration=9" in txt
    assert (inbox / "msg0000.wav").read_bytes() == extract_audio(email).message.data
    assert ref.uid == 0
    assert ref.key
    counts = await store.counts(BOX)
    assert (counts.new, counts.old, counts.urgent) == (1, 0, 0)
    [m] = await store.list(BOX, Folder.INBOX)
    assert m.caller_id == ("Test Caller", "5550001")
    assert m.duration == 9
    assert m.header("message-id") == message_id(email)


async def test_heard_moves_to_old_and_renumbering_keeps_refs_valid(store: SpoolStore,
                                                                   tmp_path: Path) -> None:
    refs = [await store.deposit(BOX, voicemail("1234")) for _ in range(3)]
    await store.mark_heard(BOX, refs[0])
    inbox = tmp_path / "voicemail/default/1234/INBOX"
    assert sorted(p.name for p in inbox.glob("*.txt")) == ["msg0000.txt", "msg0001.txt"]
    counts = await store.counts(BOX)
    assert (counts.new, counts.old) == (2, 1)
    # the reference follows the heard message into Old, as it stays valid in IMAP
    assert (await store.fetch_audio(BOX, refs[0])).message.fmt == "wav"
    await store.mark_unheard(BOX, refs[0])
    assert (await store.counts(BOX)).new == 3
    await store.mark_heard(BOX, refs[0])
    # refs[2] was msg0002 and is msg0001 now: it still reaches the same message
    audio = await store.fetch_audio(BOX, refs[2])
    assert audio.message.fmt == "wav"
    await store.delete(BOX, [refs[1]])
    [left] = await store.list(BOX, Folder.INBOX)
    assert left.ref.key == refs[2].key
    assert left.ref.uid == 0
    with pytest.raises(MessageGone):
        await store.fetch_audio(BOX, refs[1])


async def test_urgent_save_and_unheard(store: SpoolStore) -> None:
    ref = await store.deposit(BOX, voicemail("1234"), urgent=True)
    assert (await store.counts(BOX)).urgent == 1
    work = await store.save_to_folder(BOX, ref, Folder.WORK)
    assert [m.ref.key for m in await store.list(BOX, Folder.WORK)] == [ref.key]
    assert (await store.counts(BOX)).urgent == 0
    old = await store.save_to_folder(BOX, work, Folder.OLD)
    await store.mark_unheard(BOX, old)
    assert (await store.counts(BOX)).new == 1


async def test_maxmsg(store: SpoolStore) -> None:
    for _ in range(5):
        await store.deposit(BOX, voicemail("1234"))
    with pytest.raises(MailboxFull):
        await store.deposit(BOX, voicemail("1234"))


async def test_greetings(store: SpoolStore, tmp_path: Path) -> None:
    assert await store.get_greeting(BOX, GreetingKind.BUSY) is None
    g = voicemail("1234", message_type="busy")
    await store.put_greeting(BOX, GreetingKind.BUSY, g)
    assert (tmp_path / "voicemail/default/1234/busy.wav").exists()
    got = await store.get_greeting(BOX, GreetingKind.BUSY)
    assert got is not None
    assert got.data == extract_audio(g).message.data
    await store.delete_greeting(BOX, GreetingKind.BUSY)
    assert await store.get_greeting(BOX, GreetingKind.BUSY) is None


async def test_reads_a_tree_written_by_asterisk(store: SpoolStore, tmp_path: Path) -> None:
    old = tmp_path / "voicemail/default/1234/Old"
    old.mkdir(parents=True)
    (old / "msg0000.txt").write_text(
        ";\n; Message Information file\n;\n[message]\norigmailbox=1234\ncontext=default\n"
        "macrocontext=\nexten=s\nrdnis=unknown\npriority=2\ncallerchan=SIP/100-00000001\n"
        'callerid="Alice" <100>\norigdate=Thu Nov 26 09:00:00 AM UTC 2026\n'
        "origtime=1795683600\ncategory=\nmsg_id=1795683600-00000000\nflag=\nduration=4\n")
    (old / "msg0000.gsm").write_bytes(b"\xd8" * 33 * 50)
    [m] = await store.list(BOX, Folder.OLD)
    assert (m.caller_id, m.duration, m.orig_time) == (("Alice", "100"), 4, 1795683600)
    audio = await store.fetch_audio(BOX, m.ref)
    assert audio.message.fmt == "gsm"
    rebuilt = await store.fetch(BOX, m.ref)
    assert extract_audio(rebuilt).message.data == audio.message.data
    assert b"X-Asterisk-VM-Caller-ID-Num: 100" in rebuilt


async def test_lock_held_by_another_writer(store: SpoolStore, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "voicemail/default/1234/INBOX"
    inbox.mkdir(parents=True)
    other = inbox / ".lock-asterisk"
    other.write_text("1\n")
    os.link(other, inbox / ".lock")
    monkeypatch.setattr(spool_module, "LOCK_TIMEOUT", 0.2)
    with pytest.raises(spool_module.StoreError, match="locked"):
        await store.deposit(BOX, voicemail("1234"))
    # a lock left behind by a crashed writer long ago is broken
    stale = time.time() - 2 * spool_module.STALE_LOCK
    os.utime(inbox / ".lock", (stale, stale))
    await store.deposit(BOX, voicemail("1234"))
    assert (await store.counts(BOX)).new == 1
    assert not (inbox / ".lock").exists()


async def test_outbox_delivers_into_the_spool(store: SpoolStore, tmp_path: Path) -> None:
    import asyncio

    outbox = Outbox(tmp_path / "outbox", store)
    task = asyncio.create_task(outbox.run())
    try:
        email = voicemail("1234")
        ref = await asyncio.wait_for(outbox.delivered(await outbox.submit(BOX, email)), 10)
        assert await store.contains_message_id(BOX, message_id(email)) == ref
    finally:
        outbox.stop()
        task.cancel()


async def test_deposit_writes_every_configured_format(tmp_path: Path) -> None:
    """format=ulaw|wav49|wav: .ulaw, .WAV and .wav, as Asterisk writes them; the e-mail's
    GSM copy is kept too, and each file decodes to the same recording."""
    import numpy as np

    from imapvm.audio import formats
    from imapvm.audio.core import Audio
    from imapvm.message import Deposit, build_voicemail
    from imapvm.message.settings import EmailSettings

    fmts = ("ulaw", "wav49", "wav")
    store = SpoolStore(tmp_path / "voicemail",
                       lambda _box: SpoolSettings(maxmsg=5, formats=fmts))
    t = np.arange(8000 * 2) / 8000
    tone = Audio((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))
    built = build_voicemail(Deposit(number=1, caller_id_num="5550001"),
                            EmailSettings(context="default", mailbox="1234", formats=fmts), tone)
    await store.deposit(BOX, built.raw)
    inbox = tmp_path / "voicemail/default/1234/INBOX"
    assert sorted(p.name for p in inbox.iterdir()) == [
        "msg0000.WAV", "msg0000.gsm", "msg0000.txt", "msg0000.ulaw", "msg0000.wav"]
    [ulaw] = [a for a in extract_audio(built.raw).alternatives if a.fmt == "ulaw"]
    assert (inbox / "msg0000.ulaw").read_bytes() == ulaw.data  # the e-mail's copy, unchanged
    for name, fmt in (("msg0000.WAV", "wav49"), ("msg0000.wav", "wav"),
                      ("msg0000.gsm", "gsm")):
        decoded = formats.read_file(inbox / name, fmt)
        assert abs(len(decoded.samples) - len(tone.samples)) <= 320, name
