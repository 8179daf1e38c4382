"""G.711 µ-law and A-law codecs (ITU-T G.711) as numpy lookup tables.

RTP carries G.711 for every call, 50 frames a second each, so the per-frame cost must be one
table lookup per sample. Encoding indexes a 65536-entry table by the raw 16-bit sample; decoding
indexes a 256-entry table. The tables are built once at import by the reference segment
algorithm (the one in the ITU/Sun sources and in CPython's ``audioop``), which makes the results
bit-exact with G.711 and with ``audioop`` (still needed on 3.13+ only as a test oracle).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "ulaw_decode",
    "ulaw_encode",
]

ULAW_SILENCE = 0xFF
"""The µ-law byte for digital zero (used to fill lost packets and silence frames)."""
ALAW_SILENCE = 0xD5
"""The A-law byte for digital zero."""

Pcm = npt.NDArray[np.int16]


def _segment(values: npt.NDArray[np.int64], ends: list[int]) -> npt.NDArray[np.int64]:
    """Index of the first segment end >= value (8 when beyond the last), as ``search()`` does."""
    return np.searchsorted(np.asarray(ends, dtype=np.int64), values, side="left").astype(np.int64)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    samples = np.arange(65536, dtype=np.int64)
    samples = np.where(samples >= 32768, samples - 65536, samples)  # index = uint16 view of int16
    pcm = samples >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), 8159) + 0x21
    seg = _segment(pcm, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    uval = (np.minimum(seg, 7) << 4) | ((pcm >> (np.minimum(seg, 7) + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> Pcm:
    u = (~np.arange(256, dtype=np.int64)) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    samples = np.arange(65536, dtype=np.int64)
    samples = np.where(samples >= 32768, samples - 65536, samples)
    pcm = samples >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(pcm, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    aval = (np.minimum(seg, 7) << 4) | ((pcm >> shift) & 0xF)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


def _build_alaw_decode() -> Pcm:
    a = np.arange(256, dtype=np.int64) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()


def _as_index(pcm: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    return np.ascontiguousarray(pcm, dtype=np.int16).view(np.uint16)


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit linear samples → µ-law bytes."""
    return _ULAW_ENC[_as_index(pcm)].tobytes()


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """16-bit linear samples → A-law bytes."""
    return _ALAW_ENC[_as_index(pcm)].tobytes()


def ulaw_decode(data: bytes) -> Pcm:
    """µ-law bytes → int16 samples."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> Pcm:
    """A-law bytes → int16 samples."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def encode(encoding: str, pcm: npt.ArrayLike) -> bytes:
    """Encode by SDP encoding name (``PCMU`` or ``PCMA``, case-insensitive)."""
    name = encoding.upper()
    if name == "PCMU":
        return ulaw_encode(pcm)
    if name == "PCMA":
        return alaw_encode(pcm)
    raise ValueError(f"not a G.711 encoding: {encoding}")


def decode(encoding: str, data: bytes) -> Pcm:
    """Decode by SDP encoding name (``PCMU`` or ``PCMA``)."""
    name = encoding.upper()
    if name == "PCMU":
        return ulaw_decode(data)
    if name == "PCMA":
        return alaw_decode(data)
    raise ValueError(f"not a G.711 encoding: {encoding}")


def silence_byte(encoding: str) -> int:
    """The byte that decodes to zero in this encoding."""
    return ULAW_SILENCE if encoding.upper() == "PCMU" else ALAW_SILENCE
