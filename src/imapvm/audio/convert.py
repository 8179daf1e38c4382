"""Conversions between :class:`~imapvm.audio.core.Audio` values: rate, channels, joining.

Resampling uses ``soxr`` (the SoX resampler library, maintained, vectorised); we never write a
filter of our own. Every function is pure and thread-safe, so callers on the event loop wrap them
in ``asyncio.to_thread`` when the input is long.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from imapvm.audio.core import TELEPHONY_RATE, Audio
from imapvm.audio.errors import SampleRateError


def float_to_int16(data: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Scale [-1, 1] floats to int16 with rounding and clipping (clipping, not wrap-around)."""
    scaled = np.rint(np.asarray(data, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def mix_to_mono(data: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    """Average the channels of a (frames, channels) array; a 1-D array passes through as float."""
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.mean(axis=1)
    return arr


def resample(audio: Audio, rate: int = TELEPHONY_RATE) -> Audio:
    """Return ``audio`` at ``rate`` Hz (soxr "HQ" quality; a no-op when the rate matches)."""
    if audio.rate == rate:
        return audio
    if rate <= 0:
        raise SampleRateError(f"cannot resample to {rate} Hz")
    out = soxr.resample(audio.samples.astype(np.float32) / 32768.0, audio.rate, rate, quality="HQ")
    return Audio(float_to_int16(out), rate)


def to_telephony(samples: npt.NDArray[np.generic], rate: int) -> Audio:
    """Any decoded PCM (int16 or float, mono or multi-channel, any rate) → mono 8 kHz ``Audio``.

    This is the single entry point for foreign audio (uploaded greetings, test speech), so every
    stored recording has one shape whatever it came from.
    """
    arr = np.asarray(samples)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 1 and arr.dtype == np.int16:
        mono = Audio(arr.copy(), rate)
    else:
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            arr = arr.astype(np.float64) / float(-info.min if info.min < 0 else info.max)
        mono = Audio(float_to_int16(mix_to_mono(arr)), rate)
    return resample(mono, TELEPHONY_RATE)


def concat(*parts: Audio) -> Audio:
    """Join recordings end to end (forward-with-comment: comment, then the original message).

    All parts must share one rate: silently resampling here would hide a caller bug, so a mismatch
    raises :class:`SampleRateError`.
    """
    if not parts:
        raise ValueError("concat needs at least one Audio")
    rate = parts[0].rate
    for p in parts[1:]:
        if p.rate != rate:
            raise SampleRateError(f"cannot join {p.rate} Hz to {rate} Hz audio; resample first")
    return Audio(np.concatenate([p.samples for p in parts]).astype(np.int16, copy=False), rate)
