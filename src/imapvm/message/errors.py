"""Errors raised while reading stored messages.

A shared INBOX holds ordinary mail next to voicemail, and Exchange, Gmail or a user's client may
have rewritten anything. Readers must therefore tell three cases apart without crashing:
not ours at all (:class:`ForeignMessage`: skip it silently), ours but damaged
(:class:`MalformedVoicemail`: log it, show it as unplayable), and too large to even look at
(:class:`MessageTooLarge`).
"""

from __future__ import annotations


class MessageError(Exception):
    """Base class of every message-layer error."""


class ForeignMessage(MessageError):
    """The message is not a voicemail or greeting (no X-Asterisk-VM-Context/Extension headers)."""


class MalformedVoicemail(MessageError):
    """Voicemail headers are present but the body cannot be used (no audio, bad base64...)."""


class TruncatedAttachment(MalformedVoicemail):
    """A base64 attachment ends in the middle of a quantum: the message was cut short."""


class MessageTooLarge(MessageError):
    """Message or attachment above 128 MiB (Asterisk's cap since ASTERISK-25899)."""
