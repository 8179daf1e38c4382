"""What every flow needs besides the call: the store, the outbox, the configuration, the exits.

One explicit value instead of app_voicemail's globals (DESIGN.md, the anti-model): the server
builds a ``Session`` once and passes it to every call's flow, and a test builds one over a
``SpoolStore`` in a temporary directory. Nothing in ``ivr`` reaches for configuration or storage
any other way.

Exits (``0`` to the operator, ``*`` out of the greeting, callback, outdial) are Asterisk dialplan
jumps; we have no dialplan, so the flow describes where the caller wants to go as an ``Exit``
and the server's ``exits`` resolver turns it into a transfer target (a SIP URI), or None when
that exit is not configured, in which case the key does nothing, as in Asterisk when the
extension does not exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from imapvm.config.model import MailboxSettings
from imapvm.config.voicemail import VoicemailConfig
from imapvm.message.from_config import email_settings
from imapvm.message.settings import EmailSettings
from imapvm.storage.base import MailboxRef, Store
from imapvm.storage.lockout import Lockouts
from imapvm.storage.recording import JournalWriter

log = logging.getLogger(__name__)

ExitKind = Literal["operator", "star", "callback", "outdial", "goto"]


@dataclass(frozen=True)
class Exit:
    """Where the caller asked to leave to, in Asterisk's terms.

    ``operator`` is extension ``o`` and ``star`` extension ``a``, both in the mailbox's
    ``exitcontext`` (or its voicemail context when unset); ``callback`` and ``outdial`` carry the
    number to dial in the mailbox's ``callback`` / ``dialout`` context; ``goto`` is a digit
    pressed during the greeting with ``VoiceMail()``'s ``d(context)`` option.
    """

    kind: ExitKind
    extension: str
    context: str
    mailbox: MailboxRef | None = None


class DepositSink(Protocol):
    """The outbox as the flows use it: durable on return (``storage.outbox.Outbox``)."""

    async def submit(self, box: MailboxRef, email: bytes, *, urgent: bool = False) -> str: ...


ExitResolver = Callable[[Exit], str | None]
PasswordSaver = Callable[[MailboxRef, str], Awaitable[None]]
ChangeHook = Callable[[MailboxRef], Awaitable[None]]


def no_exits(_exit: Exit) -> None:
    """The default resolver: no operator, no ``a`` extension, no dialling out."""
    return None


@dataclass
class Session:
    """The services a call's flow uses; shared by all calls of one server."""

    store: Store
    outbox: DepositSink
    config: VoicemailConfig
    exits: ExitResolver = no_exits
    #: Persists a changed password (voicemail.conf rewrite, secret.conf, realtime...); None =
    #: kept for the running process only (``passwords``), which the server should not rely on.
    save_password: PasswordSaver | None = None
    #: Told when a flow changed a mailbox (a deposit queued, a VoiceMailMain call ended), so
    #: the MWI engine can recount at once instead of waiting for IMAP to tell it (spool boxes
    #: have no push at all). Failures are logged, never raised into the call.
    changed: ChangeHook | None = None
    clock: Callable[[], float] = time.time
    #: Passwords changed during this process's life, applied over voicemail.conf's.
    passwords: dict[MailboxRef, str] = field(default_factory=dict)
    #: Failed logins counted per mailbox and source across calls and nodes; None: only
    #: ``maxlogins`` per call limits guessing.
    lockouts: Lockouts | None = None
    #: Keeps callers' audio on disk while they speak (None = only in memory until the end).
    recordings: JournalWriter | None = None

    def settings(self, box: MailboxRef) -> MailboxSettings:
        """Effective settings of a configured mailbox (KeyError when unknown)."""
        return self.config.effective(box.mailbox, box.context)

    def email_settings(self, box: MailboxRef) -> EmailSettings:
        return email_settings(self.settings(box), self.config)

    def find(self, number: str, context: str | None = None) -> MailboxRef | None:
        """A mailbox as app_voicemail's find_user looks it up (None when unknown)."""
        if not number:
            return None
        found = self.config.find(number, context)
        return MailboxRef(found.number, found.context) if found else None

    def password(self, box: MailboxRef) -> str:
        if box in self.passwords:
            return self.passwords[box]
        return self.settings(box).password

    def call_language(self, requested: str | None, box: MailboxRef | None = None) -> str:
        """The language a call speaks before the owner logs in: what the network asked for
        (a ``language`` URI parameter or Accept-Language), else the mailbox's ``language=``
        (a deposit speaks the owner's language), else ``[general] language``, else English."""
        if requested:
            return requested
        if box is not None:
            try:
                if self.settings(box).language:
                    return self.settings(box).language
            except KeyError:
                pass
        return str(self.config.general["language"] or "") or "en"

    async def notify_changed(self, box: MailboxRef) -> None:
        if self.changed is None:
            return
        try:
            await self.changed(box)
        except Exception:  # a lamp must never break a call
            log.exception("change hook for %s failed", box)

    def exit_target(self, exit_: Exit) -> str | None:
        return self.exits(exit_)

    def operator_exit(self, box: MailboxRef) -> Exit:
        s = self.settings(box)
        return Exit("operator", "o", s.exitcontext or s.context, box)

    def star_exit(self, box: MailboxRef) -> Exit:
        s = self.settings(box)
        return Exit("star", "a", s.exitcontext or s.context, box)
