"""Greetings stored as IMAP messages, keyed by mailbox *and* context.

Asterisk finds a greeting by scanning the greetings folder for the first message whose part-2
file name starts with ``unavail``/``busy``/``greet``/``temp``, whoever it belongs to, so mailboxes
sharing an IMAP account share greetings (reference §6 #22). imapvm writes
``X-Imapvm-Mailbox`` next to Asterisk's Context header and matches on (context, mailbox, name).
For greetings Asterisk wrote (no ``X-Imapvm-Mailbox``), the Extension header stands in for the
mailbox; that is the best Asterisk's data allows.

Building is :func:`imapvm.message.build.build_greeting`; this module is the reading side.
"""

from __future__ import annotations

from dataclasses import dataclass

from imapvm.message.errors import ForeignMessage
from imapvm.message.meta import GREETING_NAMES
from imapvm.message.parse import StoredMessage, parse_message


@dataclass(frozen=True)
class GreetingKey:
    """Identity of one greeting: which mailbox in which context, and which greeting."""

    context: str
    mailbox: str
    name: str


def greeting_key(stored: StoredMessage) -> GreetingKey | None:
    """The key of a greeting message; None when the message is an ordinary voicemail."""
    meta = stored.meta
    if meta.message_type not in GREETING_NAMES:
        return None
    return GreetingKey(context=meta.context, mailbox=meta.owner, name=meta.message_type)


def parse_greeting(raw: bytes) -> tuple[GreetingKey, StoredMessage]:
    """Parse a greeting message; :class:`ForeignMessage` for anything that is not a greeting."""
    stored = parse_message(raw)
    key = greeting_key(stored)
    if key is None:
        raise ForeignMessage("a voicemail, not a greeting")
    return key, stored


def is_greeting_for(stored: StoredMessage, *, context: str, mailbox: str, name: str) -> bool:
    """Whether ``stored`` is greeting ``name`` of ``mailbox@context`` (exact matches only)."""
    return greeting_key(stored) == GreetingKey(context=context, mailbox=mailbox, name=name)
