"""Errors raised by the audio layer.

One base class so a caller (storage, IVR) can catch every audio problem in one place and turn it
into "this attachment is unplayable" instead of a crash; the subclasses exist so tests and logs can
tell a hostile upload (too large) from a damaged one (bad header) from a caller bug (wrong rate).
"""

from __future__ import annotations


class AudioError(Exception):
    """Base class of every audio error."""


class AudioTooLarge(AudioError):
    """Input above ``MAX_AUDIO_BYTES``: Asterisk's 128 MiB cap (ASTERISK-25899)."""


class AudioFormatError(AudioError):
    """The bytes are not a valid file of the named format (bad WAV header, truncated frame...)."""


class UnsupportedFormat(AudioError):
    """A format name imapvm does not know, or cannot encode in this installation."""


class SampleRateError(AudioError):
    """Audio at a rate the operation cannot take (e.g. GSM needs 8 kHz, call ``resample`` first)."""
