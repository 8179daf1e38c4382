"""What happens once a voicemail is stored: Asterisk's ``notify_new_message`` (§2.6, §4.11).

The voicemail is in the store (IMAP or the spool) before this runs; the notifications are then
written to the durable mail queue and sent by its worker, so the caller never waits for an MTA
and a failed send loses nothing. For the mailbox's ``email`` the owner's e-mail; for ``pager`` the
short notice; with ``delete=yes`` the voicemail is deleted once its e-mail is out (Asterisk
deletes it straight after handing it to sendmail, whether that worked or not; and it deletes it
even without an ``email`` address, losing it: imapvm keeps it then, and ``imapvm check`` warns).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from imapvm.config.loader import LoadedConfig
from imapvm.config.model import MailboxSettings
from imapvm.config.settings import SmtpSettings
from imapvm.message.errors import MessageError
from imapvm.notify.compose import owner_email, pager_email, recipients, sender_address
from imapvm.notify.queue import Deleter, MailItem, MailQueue, new_item
from imapvm.notify.transport import MailCommand, Smtp, Transport
from imapvm.storage.base import MailboxRef, MessageRef
from imapvm.storage.router import RoutingStore

log = logging.getLogger(__name__)

SettingsLookup = Callable[[MailboxRef], MailboxSettings]


def choose_transport(smtp: SmtpSettings | None, settings: SettingsLookup
                     ) -> Callable[[MailItem], Transport]:
    """SMTP when ``[smtp]`` is configured, else the mailbox's ``mailcmd``."""
    def pick(item: MailItem) -> Transport:
        if smtp is not None:
            return Smtp(smtp)
        return MailCommand(settings(item.box).mailcmd)
    return pick


def mail_queue(outbox: Path, smtp: Callable[[], SmtpSettings | None], store: RoutingStore,
               deleter: Deleter | None) -> MailQueue:
    """The queue under ``<outbox>/mail``, sending as configured at each send (so a reload's new
    ``mailcmd``, ``[smtp]`` or mailbox applies to the items already queued)."""
    def transport(item: MailItem) -> Transport:
        return choose_transport(smtp(), store.settings)(item)

    return MailQueue(outbox / "mail", transport, deleter)


def notifications(box: MailboxRef, stored: bytes, ms: MailboxSettings, ref: MessageRef | None,
                  *, hostname: str | None = None) -> list[tuple[MailItem, bytes]]:
    """The queue items for one stored voicemail (CPU work: call it in a thread)."""
    out: list[tuple[MailItem, bytes]] = []
    sender = sender_address(ms, hostname)
    to = list(recipients(ms))
    if to:
        delete = ref if ms.delete else None
        out.append((new_item("email", box, sender, to, delete),
                    owner_email(stored, ms, hostname=hostname)))
    if ms.pager.strip():
        out.append((new_item("pager", box, sender, [ms.pager.strip()]),
                    pager_email(stored, ms, hostname=hostname)))
    return out


class Notifier:
    """The outbox's ``on_delivered`` hook and ``imapvm deposit``'s follow-up."""

    def __init__(self, queue: MailQueue, settings: SettingsLookup,
                 hostname: str | None = None) -> None:
        self.queue = queue
        self.settings = settings
        self.hostname = hostname

    async def stored(self, box: MailboxRef, email: bytes, ref: MessageRef | None
                     ) -> list[MailItem]:
        """Queue the notifications of a voicemail just stored as ``ref``; returns them.

        Never raises for a message it cannot read (logged): the voicemail itself is safe."""
        try:
            ms = self.settings(box)
        except KeyError:
            log.warning("notify: %s is no longer configured; no e-mail", box)
            return []
        if ms.delete and not recipients(ms):
            log.warning("notify: %s has delete=yes but no e-mail address; the voicemail is "
                        "kept", box)
        if not recipients(ms) and not ms.pager.strip():
            return []
        try:
            items = await asyncio.to_thread(notifications, box, email, ms, ref,
                                            hostname=self.hostname)
        except (MessageError, ValueError, LookupError) as exc:
            log.error("notify: cannot build the e-mail for %s: %s", box, exc)
            return []
        await self.queue.enqueue(items)
        return [item for item, _ in items]


async def notify_after_deposit(loaded: LoadedConfig, store: RoutingStore, box: MailboxRef,
                               email: bytes, ref: MessageRef) -> list[str]:
    """``imapvm deposit``: queue the notifications and try each once, now; what is not sent
    stays queued for ``imapvm serve`` to retry. Returns one line per notification."""
    async def delete(box: MailboxRef, ref: MessageRef) -> None:
        await store.delete(box, [ref])

    queue = mail_queue(loaded.settings.paths.outbox, lambda: loaded.settings.smtp, store, delete)
    try:
        items = await Notifier(queue, store.settings).stored(box, email, ref)
    except OSError as exc:
        return [f"e-mail not queued: cannot write {queue.directory}: {exc.strerror or exc}"]
    left = {item.id for item in await queue.send_now(items)}
    lines = []
    for item in items:
        what = "e-mail" if item.kind == "email" else "pager notice"
        to = ", ".join(item.recipients)
        if item.id not in left:
            done = " (delete=yes: e-mailed, then deleted)" if item.delete_ref else ""
            lines.append(f"{what} sent to {to}{done}")
        else:
            lines.append(f"{what} to {to} not sent yet ({item.last_error}); queued in "
                         f"{queue.directory}, imapvm serve retries it")
    return lines
