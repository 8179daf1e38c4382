"""The outbox lock: one holder at a time, freed when its process dies, even by kill -9."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from imapvm.storage.lease import OutboxBusy, OutboxLock


def test_one_holder_at_a_time_and_release(tmp_path: Path) -> None:
    first, second = OutboxLock(tmp_path, "node-a"), OutboxLock(tmp_path, "node-b")
    assert first.try_acquire()
    assert not second.try_acquire()
    with pytest.raises(OutboxBusy, match="in use by node-a"):
        second.acquire()
    first.release()
    assert second.try_acquire()
    assert second.holder() == "node-b"
    second.release()


async def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    code = ("import sys, time; from imapvm.storage.lease import OutboxLock\n"
            f"lock = OutboxLock({str(tmp_path)!r}, 'doomed'); assert lock.try_acquire()\n"
            "print('held', flush=True); time.sleep(600)\n")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code,
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"held\n"
        mine = OutboxLock(tmp_path, "survivor")
        assert not mine.try_acquire()
        assert mine.holder() == "doomed"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert mine.try_acquire()
    mine.release()
