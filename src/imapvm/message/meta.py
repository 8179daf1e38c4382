"""Voicemail metadata: what the X-Asterisk-VM-* headers say about one stored message.

One frozen value for both directions: the builder writes it to headers and the parser rebuilds it
from headers of messages written by imapvm or by Asterisk. Fields Asterisk does not write (the
real mailbox behind a share id, forward provenance) are optional so Asterisk-written messages parse
to the same type with those fields empty.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass

#: X-Asterisk-VM-Flag values.
FLAG_NONE = ""
FLAG_URGENT = "Urgent"
FLAG_PRIORITY = "PRIORITY"

#: X-Asterisk-VM-Message-Type of an ordinary voicemail.
MESSAGE_TYPE = "Message"
#: Greeting names, which are also the X-Asterisk-VM-Message-Type of greeting messages.
GREETING_NAMES = ("unavail", "busy", "greet", "temp")

UNKNOWN_CALLER = "an unknown caller"


def new_msg_id(epoch: int, token: int | None = None) -> str:
    """An X-Asterisk-VM-Message-ID in Asterisk's ``<epoch>-<8 hex>`` shape.

    Asterisk uses a per-process counter for the hex part; with several imapvm nodes a counter
    would collide, so the default is 32 random bits (same shape, Asterisk-readable).
    """
    if token is None:
        token = secrets.randbits(32)
    return f"{epoch}-{token & 0xFFFFFFFF:08x}"


def strip_controls(text: str) -> str:
    """Drop control characters, as Asterisk does for caller-ID headers (no header injection).

    Asterisk drops bytes below 0x20; we also drop DEL and the C1 controls, which no name needs
    and which mail parsers flag as defects.
    """
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc")


@dataclass(frozen=True)
class ForwardInfo:
    """Where a forwarded copy came from (our headers; Asterisk loses this, §6 #24)."""

    #: Mailbox and context of the forwarder.
    mailbox: str
    context: str
    #: When the forward happened (epoch seconds).
    time: int
    #: Duration in whole seconds of the spoken comment, None when forwarded without one.
    comment_duration: int | None = None


@dataclass(frozen=True)
class VoicemailMeta:
    """Metadata of one stored voicemail or greeting."""

    #: X-Asterisk-VM-Message-Num: 1-based, as spoken; 0 for greetings.
    number: int
    #: Voicemail context (not the dialplan context, §6 #25).
    context: str
    #: X-Asterisk-VM-Extension: the mailbox number or its ``imapvmshareid``.
    extension: str
    #: The real mailbox number (X-Imapvm-Mailbox); None on Asterisk-written messages.
    mailbox: str | None = None
    flag: str = FLAG_NONE
    #: X-Asterisk-VM-Priority: the dialplan priority of the recording channel (not urgency).
    priority: int = 0
    caller_id_num: str = ""
    caller_id_name: str = ""
    #: Whole seconds of the message itself (never of a forward comment).
    duration: int = 0
    #: Epoch seconds when the caller left the message (kept across forwards).
    orig_time: int = 0
    #: Orig-date text as written (emaildateformat in the mailbox's zone and locale).
    orig_date: str = ""
    #: Always empty in IMAP-stored Asterisk messages (§6 #25); kept for completeness.
    category: str = ""
    message_type: str = MESSAGE_TYPE
    #: X-Asterisk-VM-Message-ID; None when absent or Asterisk's literal ``(null)``.
    msg_id: str | None = None
    #: X-Asterisk-VM-Server-Name (the global ``fromstring``).
    server_name: str = ""
    forwarded: ForwardInfo | None = None

    @property
    def is_greeting(self) -> bool:
        """True for greeting messages (Message-Type unavail/busy/greet/temp)."""
        return self.message_type in GREETING_NAMES

    @property
    def is_urgent(self) -> bool:
        """True when the flag marks the message urgent."""
        return self.flag.lower() == FLAG_URGENT.lower()

    @property
    def file_index(self) -> int:
        """0-based index Asterisk uses in attachment names (``msg0000`` is Message-Num 1)."""
        return max(self.number - 1, 0)

    @property
    def owner(self) -> str:
        """The mailbox the message belongs to: X-Imapvm-Mailbox, else the Extension header."""
        return self.mailbox or self.extension

    @property
    def callerid(self) -> str:
        """Caller ID merged as Asterisk does: ``"Name" <num>``, either one, or the unknown text."""
        if self.caller_id_name and self.caller_id_num:
            return f'"{self.caller_id_name}" <{self.caller_id_num}>'
        return self.caller_id_name or self.caller_id_num or UNKNOWN_CALLER


@dataclass(frozen=True)
class Deposit:
    """What the caller side knows when a message is stored; the builder derives the rest.

    Context, extension and mailbox come from :class:`~imapvm.message.settings.EmailSettings`;
    duration comes from the audio unless given.
    """

    #: X-Asterisk-VM-Message-Num (1-based).
    number: int
    caller_id_num: str = ""
    caller_id_name: str = ""
    #: Epoch seconds the caller left the message; None = the build time.
    orig_time: int | None = None
    flag: str = FLAG_NONE
    priority: int = 0
    #: None = a new ``<epoch>-<hex>`` id.
    msg_id: str | None = None
    category: str = ""
    forwarded: ForwardInfo | None = None
    #: Whole seconds; None = taken from the recording.
    duration: int | None = None
    #: The Message-ID header to write (``<...>``); None = a new one. A recording kept while the
    #: caller speaks chooses it up front, so the message built after a crash has the same one.
    message_id: str | None = None
    #: The recording was cut short (the node died while the caller spoke): marked in a header
    #: (``X-Imapvm-Partial: yes``) and a sentence in the text part.
    partial: bool = False

    @classmethod
    def forward_of(
        cls,
        original: VoicemailMeta,
        *,
        number: int,
        by_mailbox: str,
        by_context: str,
        at: int,
        keep_urgent: bool = False,
    ) -> Deposit:
        """A forwarded copy that keeps the original caller, time, id and duration (§6 #24).

        ``keep_urgent`` is ``forward_urgent_auto``: without it the copy is not urgent, as in
        Asterisk. The comment's duration is filled in by the builder from the intro audio.
        """
        return cls(
            number=number,
            caller_id_num=original.caller_id_num,
            caller_id_name=original.caller_id_name,
            orig_time=original.orig_time or at,
            flag=original.flag if keep_urgent else FLAG_NONE,
            priority=original.priority,
            msg_id=original.msg_id,
            category=original.category,
            forwarded=ForwardInfo(mailbox=by_mailbox, context=by_context, time=at),
            duration=original.duration or None,
        )
