"""The durable outbox: a deposit is safe once it is on local disk, before IMAP has it.

A caller hears "goodbye" only after `submit()` returns, and `submit()` returns only after the
complete email and its metadata are written and fsynced (file and directory). A worker then hands
each item to the store and removes it only after the store confirms (APPENDUID or an equivalent).

Never twice: before a retry of an item that may already have reached the server (the connection
died after APPEND was sent, or the process restarted mid-deposit), the worker asks the store
whether a message with that Message-ID is already there.

Layout under the outbox directory:
    pending/<id>.eml, pending/<id>.json   waiting for the store
    rejected/<id>.eml, rejected/<id>.json  refused for good (mailbox full, login refused, a
                                           mailbox the store refuses); kept, never lost; the
                                           .json's last_error says why. `imapvm outbox
                                           retry` (`requeue`) puts them back in pending/.

A running worker also looks at pending/ every `rescan_interval` seconds while idle, so an item
put back there by the operator is delivered without waiting for the next deposit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from imapvm.storage.base import MailboxFull, MailboxRef, MessageRef, Refused, StoreError
from imapvm.storage.fsutil import fsync_dir, write_durably

log = logging.getLogger(__name__)


#: Told of each deposit once the store has it, before the item leaves the outbox (voicemail to
#: e-mail queues its notifications there); failures are logged, never retried by the outbox.
DeliveredHook = Callable[[MailboxRef, bytes, MessageRef], Awaitable[object]]


class DepositTarget(Protocol):
    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False
                      ) -> MessageRef: ...

    async def contains_message_id(self, box: MailboxRef, message_id: str
                                  ) -> MessageRef | None: ...


@dataclass
class OutboxItem:
    id: str
    mailbox: str
    context: str
    urgent: bool
    message_id: str
    created: float
    attempts: int = 0
    last_error: str = ""
    #: The message may already be in the store (a recording recovered after a crash): ask for
    #: its Message-ID before the first append too.
    check_first: bool = False

    @property
    def box(self) -> MailboxRef:
        return MailboxRef(self.mailbox, self.context)


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.+?)\r?$", re.I | re.M)


def message_id_of(email: bytes) -> str:
    head = email.split(b"\r\n\r\n", 1)[0]
    m = _MESSAGE_ID.search(head)
    if not m:
        raise ValueError("a deposit must carry a Message-ID header")
    return m.group(1).decode("ascii", "replace").strip()


class Outbox:
    def __init__(self, directory: Path, target: DepositTarget, *,
                 max_backoff: float = 30.0, on_delivered: DeliveredHook | None = None,
                 max_lanes: int = 8, rescan_interval: float = 10.0) -> None:
        self.directory = Path(directory)
        self.pending_dir = self.directory / "pending"
        self.rejected_dir = self.directory / "rejected"
        self.target = target
        self.max_backoff = max_backoff
        self.on_delivered = on_delivered
        self.rescan_interval = rescan_interval
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._delivered: dict[str, asyncio.Future[MessageRef]] = {}
        self._stopping = False
        self._hold: dict[str, float] = {}  # item id -> monotonic time before which it waits
        self._backoff: dict[str, float] = {}
        self._lanes = asyncio.Semaphore(max_lanes)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)

    # -- submitting -----------------------------------------------------------------------
    async def submit(self, box: MailboxRef, email: bytes, *, urgent: bool = False,
                     check_first: bool = False) -> str:
        """Write the deposit durably; returns its outbox id. Raises ValueError (no Message-ID)
        or OSError (disk) before anything is acknowledged."""
        item = OutboxItem(id=f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}",
                          mailbox=box.mailbox, context=box.context, urgent=urgent,
                          message_id=message_id_of(email), created=time.time(),
                          check_first=check_first)
        await asyncio.to_thread(self._write_new, item, email)
        self._delivered[item.id] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._wake.set()
        return item.id

    def _write_new(self, item: OutboxItem, email: bytes) -> None:
        write_durably(self.pending_dir / f"{item.id}.eml", email)
        write_durably(self.pending_dir / f"{item.id}.json", _dump(item))  # last: marks complete
        fsync_dir(self.pending_dir)

    async def delivered(self, item_id: str) -> MessageRef:
        """Wait until the item is in the store (for tests and for callers that want the ref)."""
        fut = self._delivered.setdefault(item_id, asyncio.get_running_loop().create_future())
        return await asyncio.shield(fut)

    def pending(self) -> list[OutboxItem]:
        return pending_items(self.directory)

    def pending_message_ids(self) -> set[str]:
        """Message-IDs waiting for the store (blocking: run in a thread)."""
        return {item.message_id for item in self.pending()}

    def depth(self) -> int:
        return len(list(self.pending_dir.glob("*.json")))

    # -- the worker -----------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver pending items until cancelled.

        Items are independent: mailboxes are served side by side (in order within one mailbox,
        so its messages keep their order), an item that fails for now backs off on its own
        (doubling up to `max_backoff`) while the others keep flowing, and an item that can never
        succeed (mailbox full, login refused, a mailbox or context the store refuses, its .eml
        missing) is set aside under rejected/ with its reason at once, never retried in a loop."""
        while not self._stopping:
            items = await asyncio.to_thread(self.pending)
            known = {i.id for i in items}
            for gone in set(self._hold) - known:
                self._hold.pop(gone, None)
                self._backoff.pop(gone, None)
            if not items:
                self._idle.set()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # or the operator put something back
                    await asyncio.wait_for(self._wake.wait(), self.rescan_interval)
                continue
            now = time.monotonic()
            lanes: dict[MailboxRef, list[OutboxItem]] = {}
            for item in items:
                lanes.setdefault(item.box, []).append(item)
            due = {box: lane for box, lane in lanes.items()
                   if self._hold.get(lane[0].id, 0.0) <= now}
            if due:
                self._wake.clear()
                await asyncio.gather(*(self._deliver_lane(lane) for lane in due.values()))
                continue
            delay = min(self._hold[lane[0].id] for lane in lanes.values()) - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, delay))
            if self._wake.is_set():  # something new (or a flush): try everything once more
                self._wake.clear()
                self._hold.clear()

    async def _deliver_lane(self, lane: list[OutboxItem]) -> None:
        """One mailbox's items in order, until one fails for now (it then holds the lane)."""
        async with self._lanes:
            for item in lane:
                if self._stopping or not await self._deliver(item):
                    return

    def rejected(self) -> list[OutboxItem]:
        """Items set aside for good, each with its reason in `last_error` (blocking)."""
        return rejected_items(self.directory)

    def rejected_count(self) -> int:
        return len(list(self.rejected_dir.glob("*.json")))

    async def _deliver(self, item: OutboxItem) -> bool:
        """True when the item is done (delivered, found already delivered, or rejected);
        False when it failed for now (it is then held back for its own backoff)."""
        email_path = self.pending_dir / f"{item.id}.eml"
        try:
            email = await asyncio.to_thread(email_path.read_bytes)
        except FileNotFoundError:
            await self._reject(item, f"its message file {email_path.name} is missing")
            return True
        except OSError as exc:
            log.error("outbox: %s: cannot read %s: %s", item.id, email_path, exc)
            self._retry_later(item)
            return False
        try:
            ref = None
            if item.attempts > 0 or item.check_first:  # it may have landed unbeknown to us
                ref = await self.target.contains_message_id(item.box, item.message_id)
            if ref is None:
                item.attempts += 1
                await asyncio.to_thread(self._save_meta, item)
                ref = await self.target.deposit(item.box, email, urgent=item.urgent)
        except (MailboxFull, Refused) as exc:
            await self._reject(item, str(exc), exc)
            return True
        except Exception as exc:  # the worker must survive anything; the item stays pending
            item.last_error = str(exc)
            if isinstance(exc, (StoreError, OSError)):
                log.warning("outbox: %s for %s not delivered yet: %s", item.id, item.box, exc)
            else:
                log.exception("outbox: %s for %s: unexpected error", item.id, item.box)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._save_meta, item)
            self._retry_later(item)
            return False
        self._hold.pop(item.id, None)
        self._backoff.pop(item.id, None)
        if self.on_delivered is not None:
            try:
                await self.on_delivered(item.box, email, ref)
            except Exception:
                log.exception("outbox: %s delivered, but its delivery hook failed", item.id)
        await asyncio.to_thread(self._remove, item)
        log.info("outbox: %s delivered to %s as %s", item.id, item.box, ref)
        self._resolve(item.id, ref=ref)
        return True

    def _retry_later(self, item: OutboxItem) -> None:
        backoff = self._backoff.get(item.id, 0.1) * 2
        self._backoff[item.id] = min(self.max_backoff, backoff)
        delay = min(self.max_backoff, backoff) * (0.5 + random.random())
        self._hold[item.id] = time.monotonic() + delay

    async def _reject(self, item: OutboxItem, reason: str, exc: Exception | None = None) -> None:
        log.error("outbox: %s for %s refused for good: %s; kept in %s", item.id, item.box,
                  reason, self.rejected_dir)
        item.last_error = reason
        await asyncio.to_thread(self._move_to_rejected, item)
        self._hold.pop(item.id, None)
        self._backoff.pop(item.id, None)
        self._resolve(item.id, exc=exc or StoreError(f"{item.id}: {reason}"))

    def _resolve(self, item_id: str, ref: MessageRef | None = None,
                 exc: Exception | None = None) -> None:
        fut = self._delivered.pop(item_id, None)
        if fut is not None and not fut.done():
            if exc is not None:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: nobody may be waiting
            else:
                fut.set_result(ref)  # type: ignore[arg-type]

    def _save_meta(self, item: OutboxItem) -> None:
        write_durably(self.pending_dir / f"{item.id}.json", _dump(item))

    def _remove(self, item: OutboxItem) -> None:
        (self.pending_dir / f"{item.id}.json").unlink(missing_ok=True)
        (self.pending_dir / f"{item.id}.eml").unlink(missing_ok=True)
        fsync_dir(self.pending_dir)

    def _move_to_rejected(self, item: OutboxItem) -> None:
        with contextlib.suppress(FileNotFoundError):  # a .json whose .eml is lost goes too
            os.replace(self.pending_dir / f"{item.id}.eml", self.rejected_dir / f"{item.id}.eml")
        write_durably(self.rejected_dir / f"{item.id}.json", _dump(item))
        (self.pending_dir / f"{item.id}.json").unlink(missing_ok=True)
        fsync_dir(self.rejected_dir)
        fsync_dir(self.pending_dir)

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not a cancel
        """Wait until nothing is pending (True) or `timeout` passes (False)."""
        if self.depth() == 0:
            return True
        self._idle.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


def pending_items(directory: Path) -> list[OutboxItem]:
    """The deposits waiting in `<directory>/pending` (blocking)."""
    items = []
    for meta in sorted((Path(directory) / "pending").glob("*.json")):
        try:
            items.append(OutboxItem(**json.loads(meta.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            log.error("outbox: unreadable item %s (%s); left in place", meta, exc)
    return items


def rejected_items(directory: Path) -> list[OutboxItem]:
    """The deposits set aside for good in `<directory>/rejected`, each with its reason in
    `last_error` (blocking)."""
    items = []
    for meta in sorted((Path(directory) / "rejected").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            items.append(OutboxItem(**json.loads(meta.read_text())))
    return items


def requeue(directory: Path, ids: Collection[str] | None = None) -> tuple[list[OutboxItem],
                                                                        list[str]]:
    """Put rejected deposits back in pending/ (all of them when `ids` is None), each to be asked
    for by Message-ID before it is appended again (never twice). Returns the items put back and
    one line per id that could not be (unknown, or its message file is lost). Blocking."""
    rejected_dir, pending_dir = Path(directory) / "rejected", Path(directory) / "pending"
    wanted = None if ids is None else set(ids)
    done: list[OutboxItem] = []
    problems: list[str] = []
    found: set[str] = set()
    for meta in sorted(rejected_dir.glob("*.json")):
        if wanted is not None and meta.stem not in wanted:
            continue
        found.add(meta.stem)
        try:
            item = OutboxItem(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{meta.stem}: unreadable ({exc}); left in {rejected_dir}")
            continue
        eml = rejected_dir / f"{item.id}.eml"
        if not eml.exists():
            problems.append(f"{item.id}: its message file {eml.name} is lost; nothing to retry")
            continue
        item.check_first = True
        pending_dir.mkdir(parents=True, exist_ok=True)
        os.replace(eml, pending_dir / eml.name)
        write_durably(pending_dir / meta.name, _dump(item))  # last: marks it complete
        meta.unlink()
        fsync_dir(pending_dir)
        fsync_dir(rejected_dir)
        done.append(item)
    for missing in sorted((wanted or set()) - found):
        problems.append(f"{missing}: no such rejected deposit in {rejected_dir}")
    return done, problems


def _dump(item: OutboxItem) -> bytes:
    return json.dumps(asdict(item), sort_keys=True).encode()
