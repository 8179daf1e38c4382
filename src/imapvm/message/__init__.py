"""imapvm.message: the stored voicemail e-mail (see DESIGN.md, Layers).

Public API used by the storage and IVR layers:

* :class:`EmailSettings`: per-mailbox inputs (the config layer builds one per mailbox).
* :func:`build_voicemail` (new message or forwarded copy, :meth:`Deposit.forward_of`) and
  :func:`build_greeting` → :class:`BuiltMessage` (bytes, metadata, APPEND flags).
* :func:`parse_message` → :class:`StoredMessage`; :func:`parse_greeting`,
  :func:`greeting_key`, :func:`is_greeting_for` for greetings.
* Errors: :class:`ForeignMessage` (not voicemail), :class:`MalformedVoicemail`,
  :class:`TruncatedAttachment`, :class:`MessageTooLarge`, all :class:`MessageError`.

The MIME layout and why it is safe for Asterisk: :mod:`imapvm.message.layout`.
"""

from imapvm.message.build import BuiltMessage, Randomness, build_greeting, build_voicemail
from imapvm.message.errors import (
    ForeignMessage,
    MalformedVoicemail,
    MessageError,
    MessageTooLarge,
    TruncatedAttachment,
)
from imapvm.message.greeting import GreetingKey, greeting_key, is_greeting_for, parse_greeting
from imapvm.message.meta import (
    FLAG_NONE,
    FLAG_PRIORITY,
    FLAG_URGENT,
    GREETING_NAMES,
    Deposit,
    ForwardInfo,
    VoicemailMeta,
)
from imapvm.message.parse import StoredAudio, StoredMessage, parse_message
from imapvm.message.settings import EmailSettings

__all__ = [
    "FLAG_NONE",
    "FLAG_PRIORITY",
    "FLAG_URGENT",
    "GREETING_NAMES",
    "BuiltMessage",
    "Deposit",
    "EmailSettings",
    "ForeignMessage",
    "ForwardInfo",
    "GreetingKey",
    "MalformedVoicemail",
    "MessageError",
    "MessageTooLarge",
    "Randomness",
    "StoredAudio",
    "StoredMessage",
    "TruncatedAttachment",
    "VoicemailMeta",
    "build_greeting",
    "build_voicemail",
    "greeting_key",
    "is_greeting_for",
    "parse_greeting",
    "parse_message",
]
