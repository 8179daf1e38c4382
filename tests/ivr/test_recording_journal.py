"""The recording journal: audio on disk while the caller speaks, and exactly-once recovery."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np

from imapvm.ivr.leave import leave_message
from imapvm.ivr.recovered import deliver_unfinished
from imapvm.storage.base import Folder
from imapvm.storage.recording import JournalWriter, new_meta, unfinished
from tests.ivr.conftest import BOB, BOX, WorldFactory
from tests.ivr.scripted import Rec, ScriptedChannel, tone


async def _until(predicate, within: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the writer is a thread: nothing to await
            await asyncio.sleep(0.01)


async def test_journal_appends_syncs_restarts_and_forgets(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "recording", sync_interval=0.2)
    meta = new_meta([("1234", "default")], caller_num="555", caller_name="Carol",
                    orig_time=1, flag="")
    journal = await writer.begin(meta)
    first = tone(1.0)
    for start in range(0, len(first), 160):
        journal.append(first[start:start + 160])
    await _until(lambda: writer.synced_bytes.get(meta.id) == 2 * len(first))
    [found] = unfinished(writer.directory)
    assert found.meta == meta
    assert np.array_equal(found.audio, first)

    journal.restart()  # a re-recording replaces what was kept
    second = tone(0.5, 300)
    journal.append(second)
    await _until(lambda: writer.synced_bytes.get(meta.id) == 2 * len(second))
    assert np.array_equal(unfinished(writer.directory)[0].audio, second)

    await journal.finish()
    assert unfinished(writer.directory) == []
    await writer.close()


async def test_a_finished_call_leaves_no_journal_and_keeps_the_chosen_message_id(
        make_world: WorldFactory) -> None:
    w = await make_world()
    writer = JournalWriter(w.outbox.directory / "recording")
    w.session.recordings = writer
    ch = ScriptedChannel([Rec(3)])
    result = await leave_message(ch, w.session)
    assert result.status == "SUCCESS"
    await w.settle()
    [msg] = await w.store.list(BOX, Folder.INBOX)
    assert msg.duration == 3
    assert unfinished(writer.directory) == []
    await writer.close()


async def test_recovery_delivers_once_whenever_the_crash_came(make_world: WorldFactory,
                                                              tmp_path: Path) -> None:
    w = await make_world()
    w.outbox.stop()  # the worker starts later, as in the server: after the recovery
    await w.outbox.flush(0.1)
    writer = JournalWriter(w.outbox.directory / "recording", sync_interval=0.1)
    meta = new_meta([(BOX.mailbox, BOX.context), (BOB.mailbox, BOB.context)],
                    caller_num="5550001", caller_name="Carol", orig_time=1_764_000_000,
                    flag="")
    journal = await writer.begin(meta)
    journal.append(tone(2.6))
    await journal.keep()  # the process died here
    await writer.close()
    backup = tmp_path / "backup"
    shutil.copytree(writer.directory, backup)

    def crash_before_removal() -> None:
        shutil.rmtree(writer.directory, ignore_errors=True)
        shutil.copytree(backup, writer.directory)

    queued = await deliver_unfinished(w.session, unfinished(writer.directory), w.outbox)
    assert queued == 2
    assert w.outbox.depth() == 2
    assert unfinished(writer.directory) == []
    crash_before_removal()  # the journal survived: its messages are already waiting
    assert await deliver_unfinished(w.session, unfinished(writer.directory), w.outbox) == 0
    assert w.outbox.depth() == 2

    w.outbox._stopping = False
    task = asyncio.create_task(w.outbox.run())
    try:
        assert await w.outbox.flush(10)
        crash_before_removal()  # the journal survived although the messages were delivered
        assert await deliver_unfinished(w.session, unfinished(writer.directory),
                                        w.outbox) == 2
        assert await w.outbox.flush(10)
        for box in (BOX, BOB):
            [msg] = await w.store.list(box, Folder.INBOX)
            assert msg.duration == 2  # the spool keeps no extra headers: see tests/cluster
    finally:
        w.outbox.stop()
        await task
