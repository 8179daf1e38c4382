"""One deposit, settled now, for a caller that has no outbox (`imapvm deposit`).

When the connection is lost after an APPEND was sent, the message may or may not be stored.
As the outbox does, the answer is asked of the store by Message-ID before anything is sent
again: a message that landed is reported stored (no false failure) and never appended twice
(no duplicate on retry).
"""

from __future__ import annotations

import asyncio
import logging

from imapvm.storage.base import (
    LoginRefused,
    MailboxRef,
    MessageRef,
    ServerNotAnswering,
    StoreUnavailable,
)
from imapvm.storage.outbox import DepositTarget, message_id_of

log = logging.getLogger(__name__)


class DepositUnsettled(StoreUnavailable):
    """The store could not be asked whether the message landed: the outcome is unknown."""


async def deposit_settled(target: DepositTarget, box: MailboxRef, email: bytes, *,
                          urgent: bool = False, attempts: int = 3,
                          backoff: float = 0.5) -> MessageRef:
    """Deposit `email` exactly once, or raise saying whether it is stored or unknown.

    MailboxFull and refused logins are raised at once; a lost connection is settled by
    searching the Message-ID (up to `attempts` connections in all)."""
    message_id = message_id_of(email)
    unclear: StoreUnavailable | None = None
    for attempt in range(attempts):
        if unclear is not None:
            await asyncio.sleep(backoff * attempt)  # a pause before reconnecting, not a sync
            try:
                found = await target.contains_message_id(box, message_id)
            except StoreUnavailable as exc:
                unclear = exc
                continue
            if found is not None:
                log.info("%s: the deposit landed although its answer was lost (%s)", box, found)
                return found
        try:
            return await target.deposit(box, email, urgent=urgent)
        except (LoginRefused, ServerNotAnswering):
            if unclear is None:  # nothing was sent: a plain failure, said as it is
                raise
            raise DepositUnsettled(_unknown(unclear, message_id)) from None
        except StoreUnavailable as exc:
            unclear = exc
    assert unclear is not None
    raise DepositUnsettled(_unknown(unclear, message_id))


def _unknown(exc: StoreUnavailable, message_id: str) -> str:
    return (f"{exc}; whether the message was stored is unknown: look for Message-ID "
            f"{message_id} before depositing it again")
