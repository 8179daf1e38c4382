"""Message numbers from the mailbox at delivery time, right even with several nodes.

Sits between the outbox and the store. For each deposit it counts the mailbox immediately
before the APPEND and writes that count plus one into the message (``message.renumber``): a
message queued while the store was down, or behind other deposits, gets the number the mailbox
gives it when it arrives, never the stale count of the moment the caller hung up.

Two nodes can still count at the same moment. After the APPEND the node asks whether an older
voicemail of the box (lower UID: the server assigns UIDs in order) already carries the same
number; if so the newer message yields: it is replaced by a copy numbered one higher (same
Message-ID, so the outbox's never-twice check still holds) and the old copy is deleted by UID,
and the check repeats. The older message never changes, so every race ends with distinct
numbers. Deposits of one mailbox on one node go one at a time: a node never races itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from imapvm.message.errors import MessageError
from imapvm.message.renumber import CannotRenumber, renumber
from imapvm.message.settings import EmailSettings
from imapvm.storage.base import Counts, MailboxRef, MessageRef, StoreError

log = logging.getLogger(__name__)

#: Corrections tried after races before the message keeps the number it has.
MAX_CORRECTIONS = 8


class NumberedStore(Protocol):
    async def counts(self, box: MailboxRef) -> Counts: ...

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False
                      ) -> MessageRef: ...

    async def contains_message_id(self, box: MailboxRef, message_id: str
                                  ) -> MessageRef | None: ...

    async def number_taken(self, box: MailboxRef, ref: MessageRef, number: int) -> bool: ...

    async def delete(self, box: MailboxRef, refs: list[MessageRef]) -> None: ...


class Numbering:
    """The outbox's deposit target: numbers each message from the mailbox as it is delivered."""

    def __init__(self, store: NumberedStore,
                 settings: Callable[[MailboxRef], EmailSettings]) -> None:
        self.store = store
        self.settings = settings
        self._locks: dict[MailboxRef, asyncio.Lock] = {}
        #: Messages replaced because another node's deposit took their number (metrics).
        self.corrections = 0

    async def contains_message_id(self, box: MailboxRef, message_id: str) -> MessageRef | None:
        return await self.store.contains_message_id(box, message_id)

    async def deposit(self, box: MailboxRef, email: bytes, *, urgent: bool = False
                      ) -> MessageRef:
        lock = self._locks.setdefault(box, asyncio.Lock())
        async with lock:
            counts = await self.store.counts(box)  # a failure: the outbox retries later
            number = counts.new + counts.old + counts.urgent + 1
            raw = await self._renumbered(box, email, number)
            ref = await self.store.deposit(box, raw, urgent=urgent)
            for _ in range(MAX_CORRECTIONS):
                try:
                    taken = await self.store.number_taken(box, ref, number)
                except StoreError as exc:  # delivered all the same; the number may be shared
                    log.warning("number check of %s in %s failed: %s", ref, box, exc)
                    return ref
                if not taken:
                    return ref
                log.info("deposit %s in %s raced another node's for number %d; renumbered",
                         ref, box, number)
                number += 1
                raw = await self._renumbered(box, email, number)
                old = ref
                ref = await self.store.deposit(box, raw, urgent=urgent)
                await self.store.delete(box, [old])
                self.corrections += 1
            return ref

    async def _renumbered(self, box: MailboxRef, email: bytes, number: int) -> bytes:
        try:
            return await asyncio.to_thread(renumber, email, number, self.settings(box))
        except (CannotRenumber, MessageError, KeyError, ValueError) as exc:
            log.warning("deposit for %s delivered with the number it was built with: %s",
                        box, exc)
            return email
