"""Messages whose caller was still speaking when the node died (DESIGN.md, Several nodes).

At start-up, before the outbox worker runs, every recording the journal kept
(``storage.recording``) becomes one message per recipient, built from the audio that reached
the disk: its duration and headers are those of that audio, it carries ``X-Imapvm-Partial: yes``
and says so in its text. Exactly once, whatever moment the crash hit:

* each message gets the Message-ID chosen when the recording began, the same one the live call
  would have used; the outbox item asks the store for that Message-ID before appending, so a
  message the live call had already delivered is not delivered again;
* a recipient whose message is already waiting in the outbox (the crash came between the
  outbox write and the journal's removal, or during an earlier recovery) is skipped;
* the journal is removed only once every recipient's message is in the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from imapvm.audio.core import Audio as AudioValue
from imapvm.ivr.leave import next_number
from imapvm.ivr.session import Session
from imapvm.message import FLAG_URGENT, Deposit, build_voicemail
from imapvm.storage.base import MailboxRef
from imapvm.storage.recording import Unfinished, remove

log = logging.getLogger(__name__)


class RecoveryOutbox(Protocol):
    def pending_message_ids(self) -> set[str]: ...

    async def submit(self, box: MailboxRef, email: bytes, *, urgent: bool = False,
                     check_first: bool = False) -> str: ...


async def deliver_unfinished(session: Session, found: list[Unfinished],
                             outbox: RecoveryOutbox) -> int:
    """Put the partial messages of `found` into the outbox; returns how many were queued."""
    queued = 0
    waiting = await asyncio.to_thread(outbox.pending_message_ids)
    for rec in found:
        if len(rec.audio) == 0:
            log.info("recording %s kept no audio; nothing to deliver", rec.meta.id)
            await asyncio.to_thread(remove, rec.directory)
            continue
        for mailbox, context in rec.meta.boxes:
            box = MailboxRef(mailbox, context)
            mid = rec.meta.message_id(mailbox, context)
            if mid in waiting:
                continue
            try:
                settings = session.email_settings(box)
            except KeyError:
                log.error("recording %s: mailbox %s is no longer configured; its %.1f s are "
                          "kept in %s", rec.meta.id, box, rec.seconds, rec.directory)
                raise
            dep = Deposit(number=await next_number(session, box),
                          caller_id_num=rec.meta.caller_num,
                          caller_id_name=rec.meta.caller_name, orig_time=rec.meta.orig_time,
                          flag=rec.meta.flag, message_id=mid, partial=True)
            built = await asyncio.to_thread(build_voicemail, dep, settings,
                                            AudioValue(rec.audio))
            await outbox.submit(box, built.raw, urgent=rec.meta.flag == FLAG_URGENT,
                                check_first=True)
            queued += 1
            log.warning("recording %s for %s was cut short after %.1f s; delivering what was "
                        "kept", rec.meta.id, box, rec.seconds)
        await asyncio.to_thread(remove, rec.directory)
    return queued
