"""imapvm.audio: audio values, file formats and conversions (see DESIGN.md, Layers).

Public API: :class:`Audio` (mono int16 at 8 kHz), :func:`encode` / :func:`decode` /
:func:`read_file` / :func:`write_file` for the formats in :mod:`imapvm.audio.formats`,
:func:`resample`, :func:`to_telephony`, :func:`concat`, and the :class:`AudioError` family.
G.711 for RTP lives in ``imapvm.audio.g711`` (SIP side). Everything here is pure and thread-safe;
async callers use ``asyncio.to_thread`` for encode/decode.
"""

from imapvm.audio.convert import concat, resample, to_telephony
from imapvm.audio.core import MAX_AUDIO_BYTES, TELEPHONY_RATE, Audio
from imapvm.audio.errors import (
    AudioError,
    AudioFormatError,
    AudioTooLarge,
    SampleRateError,
    UnsupportedFormat,
)
from imapvm.audio.formats import FORMATS, AudioFormat, decode, encode, lookup, read_file, write_file

__all__ = [
    "FORMATS",
    "MAX_AUDIO_BYTES",
    "TELEPHONY_RATE",
    "Audio",
    "AudioError",
    "AudioFormat",
    "AudioFormatError",
    "AudioTooLarge",
    "SampleRateError",
    "UnsupportedFormat",
    "concat",
    "decode",
    "encode",
    "lookup",
    "read_file",
    "resample",
    "to_telephony",
    "write_file",
]
