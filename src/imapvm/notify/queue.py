"""The durable mail queue: notifications wait on disk until a transport accepts them.

Sending never runs in a call: the outbox hands a stored voicemail to the notifier, which writes
its notifications here (fsynced) and returns; this queue's worker sends them, retrying with
backoff while the MTA or the SMTP server refuses, across restarts. An item is removed only once
sent, and, for ``delete=yes``, once the voicemail it announced is deleted from the store (an item
whose e-mail is out but whose delete failed is kept, marked sent, and only the delete is retried:
never a second e-mail, never a deleted voicemail that was not e-mailed).

A send refused for good (an SMTP server's 5xx: unknown recipient, message refused) is not
retried in a loop and not dropped: the item moves to ``rejected/`` with the reason in its
``last_error`` (for ``delete=yes`` the voicemail stays in the store, since it was not e-mailed),
``imapvm doctor`` lists it and ``imapvm outbox retry`` puts it back once the cause is fixed.

Layout, next to the outbox's own directories::

    <outbox>/mail/<id>.eml            the message, CRLF line ends
    <outbox>/mail/<id>.json           envelope, mailbox, delete_ref, attempts, last error
    <outbox>/mail/rejected/<id>.*     refused for good, kept
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from imapvm.metrics import Counter
from imapvm.notify.transport import RefusedForGood, SendError, Transport
from imapvm.storage.base import MailboxRef, MessageGone, MessageRef, StoreError
from imapvm.storage.fsutil import fsync_dir, write_durably

log = logging.getLogger(__name__)

Kind = Literal["email", "pager"]
#: Deletes the announced voicemail (``delete=yes``); MessageGone counts as done.
Deleter = Callable[[MailboxRef, MessageRef], Awaitable[None]]


@dataclass
class MailItem:
    id: str
    kind: Kind
    mailbox: str
    context: str
    sender: str
    recipients: list[str]
    #: ``delete=yes``: the stored voicemail to delete once this e-mail is out ("" = none).
    delete_ref: str = ""
    sent: bool = False
    attempts: int = 0
    last_error: str = ""
    created: float = field(default_factory=time.time)

    @property
    def box(self) -> MailboxRef:
        return MailboxRef(self.mailbox, self.context)


def new_item(kind: Kind, box: MailboxRef, sender: str, recipients: list[str],
             delete_ref: MessageRef | None = None) -> MailItem:
    return MailItem(id=f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}", kind=kind,
                    mailbox=box.mailbox, context=box.context, sender=sender,
                    recipients=recipients, delete_ref=str(delete_ref) if delete_ref else "")


class MailQueue:
    def __init__(self, directory: Path, transport: Callable[[MailItem], Transport],
                 deleter: Deleter | None = None, *, max_backoff: float = 300.0,
                 first_backoff: float = 1.0, rescan_interval: float = 60.0) -> None:
        self.directory = Path(directory)
        self.rejected_dir = self.directory / "rejected"
        self.transport = transport
        self.deleter = deleter
        self.max_backoff = max_backoff
        self.first_backoff = first_backoff
        self.rescan_interval = rescan_interval
        self.sent = Counter("imapvm_mail_sent_total", "Notification e-mails sent, by kind")
        self.failures = Counter("imapvm_mail_send_failures_total",
                                "Notification sends that failed and wait for a retry, by kind")
        self.refusals = Counter("imapvm_mail_rejected_total",
                                "Notifications refused for good and set aside, by kind")
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False

    # -- adding ---------------------------------------------------------------------------
    async def enqueue(self, items: list[tuple[MailItem, bytes]]) -> None:
        """Write the items durably; the worker sends them (OSError before anything is kept)."""
        if not items:
            return
        await asyncio.to_thread(self._write, items)
        self._idle.clear()
        self._wake.set()

    def _write(self, items: list[tuple[MailItem, bytes]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for item, message in items:
            write_durably(self.directory / f"{item.id}.eml", message)
            write_durably(self.directory / f"{item.id}.json", _dump(item))  # last: complete
        fsync_dir(self.directory)

    def pending(self) -> list[MailItem]:
        return waiting(self.directory)

    def depth(self) -> int:
        return len(list(self.directory.glob("*.json"))) if self.directory.is_dir() else 0

    def rejected_count(self) -> int:
        return len(list(self.rejected_dir.glob("*.json"))) if self.rejected_dir.is_dir() else 0

    # -- the worker -----------------------------------------------------------------------
    async def run(self) -> None:
        """Send pending items until stopped; failed ones are retried with growing backoff."""
        backoff = self.first_backoff
        while not self._stopping:
            items = await asyncio.to_thread(self.pending)
            if not items:
                self._idle.set()
                self._wake.clear()
                # Also look again now and then: `imapvm deposit` may have left an item here.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.rescan_interval)
                continue
            failed = False
            for item in items:
                if self._stopping:
                    break
                if not await self._process(item):
                    failed = True
            if failed:
                self._idle.set()  # everything was tried once: flush() may stop waiting
                delay = min(self.max_backoff, backoff) * (0.5 + random.random())
                backoff = min(self.max_backoff, backoff * 2)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
            else:
                backoff = self.first_backoff

    async def _process(self, item: MailItem) -> bool:
        """True when the item is finished and removed."""
        if not item.sent:
            try:
                message = await asyncio.to_thread((self.directory / f"{item.id}.eml").read_bytes)
                item.attempts += 1
                await self.transport(item).send(message, item.sender, item.recipients)
            except RefusedForGood as exc:
                item.last_error = str(exc)
                self.refusals.inc(kind=item.kind)
                log.error("mail queue: %s to %s for %s refused for good: %s; kept in %s "
                          "(`imapvm outbox retry %s` once the cause is fixed)", item.kind,
                          ", ".join(item.recipients), item.box, exc, self.rejected_dir, item.id)
                await asyncio.to_thread(self._move_to_rejected, item)
                return True
            except (SendError, OSError) as exc:
                self.failures.inc(kind=item.kind)
                item.last_error = str(exc)
                log.warning("mail queue: %s to %s for %s not sent (attempt %d): %s", item.kind,
                            ", ".join(item.recipients), item.box, item.attempts, exc)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._save, item)
                return False
            item.sent = True
            self.sent.inc(kind=item.kind)
            log.info("mail queue: %s for %s sent to %s", item.kind, item.box,
                     ", ".join(item.recipients))
            if item.delete_ref:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._save, item)
        if item.delete_ref and self.deleter is not None:
            try:
                await self.deleter(item.box, MessageRef.parse(item.delete_ref))
            except MessageGone:
                pass
            except (StoreError, OSError, ValueError) as exc:
                item.last_error = f"delete=yes: {exc}"
                log.warning("mail queue: %s e-mailed, but deleting it failed: %s; retrying",
                            item.box, exc)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._save, item)
                return False
            log.info("mail queue: delete=yes: the voicemail of %s was e-mailed and deleted",
                     item.box)
        await asyncio.to_thread(self._remove, item)
        return True

    async def send_now(self, items: list[MailItem]) -> list[MailItem]:
        """One attempt at each of ``items`` (``imapvm deposit``, which runs no worker); returns
        those left pending, which a running server's worker retries."""
        return [item for item in items if not await self._process(item)]

    def _save(self, item: MailItem) -> None:
        write_durably(self.directory / f"{item.id}.json", _dump(item))

    def _move_to_rejected(self, item: MailItem) -> None:
        self.rejected_dir.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{item.id}.eml").replace(self.rejected_dir / f"{item.id}.eml")
        write_durably(self.rejected_dir / f"{item.id}.json", _dump(item))
        (self.directory / f"{item.id}.json").unlink(missing_ok=True)
        fsync_dir(self.rejected_dir)
        fsync_dir(self.directory)

    def _remove(self, item: MailItem) -> None:
        (self.directory / f"{item.id}.json").unlink(missing_ok=True)
        (self.directory / f"{item.id}.eml").unlink(missing_ok=True)
        fsync_dir(self.directory)

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not a cancel
        """Wait until every item was tried once (True when nothing is left pending), or until
        `timeout` passes (False)."""
        if self.depth() == 0:
            return True
        self._idle.clear()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self.depth() == 0

    def retry_now(self) -> None:
        """Skip the current backoff (tests, or an operator who fixed the MTA)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


def waiting(directory: Path) -> list[MailItem]:
    """The notifications waiting in ``directory`` (blocking)."""
    items = []
    for meta in sorted(Path(directory).glob("*.json")):
        try:
            items.append(MailItem(**json.loads(meta.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            log.error("mail queue: unreadable item %s (%s); left in place", meta, exc)
    return items


def rejected(directory: Path) -> list[MailItem]:
    """The notifications set aside under ``<directory>/rejected`` (blocking)."""
    items = []
    for meta in sorted((Path(directory) / "rejected").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            items.append(MailItem(**json.loads(meta.read_text())))
    return items


def requeue(directory: Path, ids: Collection[str] | None = None) -> tuple[list[MailItem],
                                                                        list[str]]:
    """Put rejected notifications back in the queue (all when `ids` is None); returns the items
    put back and one line per id that could not be. Blocking."""
    directory = Path(directory)
    rejected_dir = directory / "rejected"
    wanted = None if ids is None else set(ids)
    done: list[MailItem] = []
    problems: list[str] = []
    found: set[str] = set()
    for meta in sorted(rejected_dir.glob("*.json")):
        if wanted is not None and meta.stem not in wanted:
            continue
        found.add(meta.stem)
        try:
            item = MailItem(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{meta.stem}: unreadable ({exc}); left in {rejected_dir}")
            continue
        eml = rejected_dir / f"{item.id}.eml"
        if not eml.exists():
            problems.append(f"{item.id}: its message file {eml.name} is lost; nothing to retry")
            continue
        eml.replace(directory / eml.name)
        write_durably(directory / meta.name, _dump(item))  # last: marks it complete
        meta.unlink()
        fsync_dir(directory)
        fsync_dir(rejected_dir)
        done.append(item)
    for missing in sorted((wanted or set()) - found):
        problems.append(f"{missing}: no such rejected notification in {rejected_dir}")
    return done, problems


def _dump(item: MailItem) -> bytes:
    return json.dumps(asdict(item), sort_keys=True).encode()
