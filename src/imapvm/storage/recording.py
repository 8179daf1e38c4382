"""Recordings made durable while the caller speaks, so a node's death keeps what was said.

A recording in progress is a directory under ``<outbox>/recording/``:

    <id>/meta.json   who it is for (mailboxes and the Message-ID each will get), the caller,
                     the time and flag; written durably before the first sample
    <id>/audio.s16   the caller's audio as it arrives: 8 kHz mono, signed 16-bit little-endian,
                     appended and fsynced at least every ``sync_interval`` seconds

When the call ends normally the flow puts the finished message into the outbox and then removes
the directory. A directory still present at start-up is a recording cut short by a crash: the
node builds a message from the audio that reached the disk (marked partial) and delivers it.

All file work happens on one writer thread shared by every call of the process: the event loop
only copies the samples into a queue, never waits for the disk (DESIGN.md, principle 6).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imapvm.storage.fsutil import fsync_dir, write_durably

log = logging.getLogger(__name__)

META = "meta.json"
AUDIO = "audio.s16"
SAMPLE_RATE = 8000


@dataclass
class RecordingMeta:
    """What a recording is for; enough to build its messages without the call."""

    id: str
    #: ``[mailbox, context]`` pairs, the first being the one the caller dialled.
    boxes: list[list[str]]
    #: ``"mailbox@context"`` -> the Message-ID its message gets, chosen up front so that a
    #: message built after a crash is recognised if the live one had already reached the store.
    message_ids: dict[str, str]
    caller_num: str = ""
    caller_name: str = ""
    orig_time: int = 0
    flag: str = ""
    created: float = field(default_factory=time.time)

    @staticmethod
    def key(mailbox: str, context: str) -> str:
        return f"{mailbox}@{context}"

    def message_id(self, mailbox: str, context: str) -> str:
        return self.message_ids[self.key(mailbox, context)]


def new_meta(boxes: list[tuple[str, str]], *, caller_num: str, caller_name: str,
             orig_time: int, flag: str, hostname: str = "imapvm") -> RecordingMeta:
    rid = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    host = "".join(c for c in hostname if c.isalnum() or c in ".-") or "imapvm"
    return RecordingMeta(
        id=rid, boxes=[[m, c] for m, c in boxes],
        message_ids={RecordingMeta.key(m, c): f"<Imapvm-{uuid.uuid4().hex}-{m}@{host}>"
                     for m, c in boxes},
        caller_num=caller_num, caller_name=caller_name, orig_time=orig_time, flag=flag)


@dataclass(frozen=True)
class Unfinished:
    """A recording found at start-up: its metadata and the samples that reached the disk."""

    meta: RecordingMeta
    directory: Path
    audio: npt.NDArray[np.int16]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# -- the writer thread ------------------------------------------------------------------------

_Op = tuple[str, str, object]


class _Open:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = open(directory / AUDIO, "ab")  # noqa: SIM115 - lives until finish/discard
        self.dirty = False
        self.synced_at = time.monotonic()


class JournalWriter:
    """The one thread that appends and fsyncs the audio of every recording in progress."""

    def __init__(self, directory: Path, *, sync_interval: float = 0.5) -> None:
        self.directory = Path(directory)
        self.sync_interval = sync_interval
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._files: dict[str, _Open] = {}
        #: Bytes fsynced so far per recording id (for tests and metrics).
        self.synced_bytes: dict[str, int] = {}

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recording-journal",
                                            daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Stop the thread after it has written and synced everything queued."""
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def begin(self, meta: RecordingMeta) -> Journal:
        """Create the recording's directory and metadata durably; returns its journal."""
        self.start()
        directory = self.directory / meta.id
        await asyncio.to_thread(self._create, directory, meta)
        journal = Journal(self, meta, directory)
        self._queue.put(("open", meta.id, directory))
        return journal

    def _create(self, directory: Path, meta: RecordingMeta) -> None:
        directory.mkdir(parents=True)
        write_durably(directory / META, json.dumps(asdict(meta), sort_keys=True).encode())
        (directory / AUDIO).touch()
        fsync_dir(directory)
        fsync_dir(self.directory)

    def put(self, op: str, rid: str, arg: object = None) -> None:
        if self._thread is None:  # closed (the server stops): the files are closed and kept
            if callable(arg):
                arg()
            return
        self._queue.put((op, rid, arg))

    # -- on the thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.sync_interval / 2)
            except queue.Empty:
                item = ("tick", "", None)
            if item is None:
                self._sync(force=True)
                for f in self._files.values():
                    f.file.close()
                self._files.clear()
                return
            try:
                self._apply(*item)
            except Exception:  # a disk error loses durability for that call, not the thread
                log.exception("recording journal: %s of %s failed", item[0], item[1])
            self._sync(force=False)

    def _apply(self, op: str, rid: str, arg: object) -> None:
        if op == "open":
            assert isinstance(arg, Path)
            self._files[rid] = _Open(arg)
        elif op == "append":
            f = self._files.get(rid)
            if f is not None:
                assert isinstance(arg, bytes)
                f.file.write(arg)
                f.dirty = True
        elif op == "restart":
            f = self._files.get(rid)
            if f is not None:
                f.file.truncate(0)
                f.file.seek(0)
                f.dirty = True
        elif op in ("finish", "keep"):
            f = self._files.pop(rid, None)
            if f is not None:
                if op == "keep":
                    f.file.flush()
                    os.fsync(f.file.fileno())
                f.file.close()
                if op == "finish":
                    shutil.rmtree(f.directory, ignore_errors=True)
                    fsync_dir(self.directory)
            self.synced_bytes.pop(rid, None)
            if callable(arg):
                arg()
        elif op == "tick":
            pass

    def _sync(self, *, force: bool) -> None:
        now = time.monotonic()
        for rid, f in self._files.items():
            if f.dirty and (force or now - f.synced_at >= self.sync_interval):
                f.file.flush()
                os.fsync(f.file.fileno())
                f.dirty = False
                f.synced_at = now
                self.synced_bytes[rid] = f.file.tell()


class Journal:
    """One recording in progress. `append` is called on the loop for every packet's samples."""

    def __init__(self, writer: JournalWriter, meta: RecordingMeta, directory: Path) -> None:
        self.writer = writer
        self.meta = meta
        self.directory = directory
        self._closed = False

    def append(self, pcm: npt.NDArray[np.int16]) -> None:
        if not self._closed and len(pcm):
            self.writer.put("append", self.meta.id, np.asarray(pcm, dtype="<i2").tobytes())

    def restart(self) -> None:
        """The caller re-records: what was kept so far is not the message any more."""
        if not self._closed:
            self.writer.put("restart", self.meta.id)

    async def finish(self) -> None:
        """The message is in the outbox (or was dropped on purpose): forget the recording."""
        await self._close("finish")

    async def keep(self) -> None:
        """Leave the recording for the next start-up to deliver (its message is not safe)."""
        await self._close("keep")

    async def _close(self, op: str) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def resolve() -> None:
            loop.call_soon_threadsafe(settle)

        self.writer.put(op, self.meta.id, resolve)
        await done


# -- start-up: what a crash left --------------------------------------------------------------

def unfinished(directory: Path) -> list[Unfinished]:
    """Recordings left by a process that died while a caller spoke (blocking: run in a thread).

    A directory without readable metadata (the crash came before it was complete) holds no
    audio yet and is removed."""
    out: list[Unfinished] = []
    if not directory.is_dir():
        return out
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        try:
            meta = RecordingMeta(**json.loads((sub / META).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("recording %s has no usable metadata (%s); removed", sub.name, exc)
            shutil.rmtree(sub, ignore_errors=True)
            continue
        try:
            data = (sub / AUDIO).read_bytes()
        except OSError:
            data = b""
        data = data[: len(data) - len(data) % 2]
        out.append(Unfinished(meta, sub, np.frombuffer(data, dtype="<i2").astype(np.int16)))
    return out


def remove(directory: Path) -> None:
    """Forget a recovered recording once its messages are in the outbox (blocking)."""
    shutil.rmtree(directory, ignore_errors=True)
    fsync_dir(directory.parent)


RecordingTap = Callable[[npt.NDArray[np.int16]], None]
