"""G.722 (ITU-T, 64 kbit/s) for wideband calls: 16 kHz audio, 8 bits per pair of samples.

The codec is libg722 through the PyPI ``G722`` package: bit-exact with the ITU reference and
with FFmpeg's encoder, and faster per 20 ms frame than PyAV (``bench/g722_codecs.py``). Encoder
and decoder are adaptive (ADPCM), so each call direction keeps its own state: use one
:class:`G722Encoder` and one :class:`G722Decoder` per stream, frame after frame.

RFC 3551 §4.5.2: the RTP clock of G.722 runs at 8000 Hz although the audio is sampled at 16 kHz
(a 20 ms frame is 160 bytes, 320 samples, and advances the timestamp by 160).

:class:`Decimator` and :func:`upsample` move between the 16 kHz line and the 8 kHz voice menus.
"""

from __future__ import annotations

import G722
import numpy as np
import numpy.typing as npt
import soxr

WIDEBAND_RATE = 16000
BIT_RATE = 64000

Pcm = npt.NDArray[np.int16]


def _as_pcm(samples: object) -> Pcm:
    out: Pcm = np.asarray(samples, dtype=np.int16)
    return out


class G722Encoder:
    """16 kHz int16 samples in, G.722 bytes out (one byte per two samples)."""

    def __init__(self) -> None:
        self._codec = G722.G722(WIDEBAND_RATE, BIT_RATE)

    def encode(self, pcm: Pcm) -> bytes:
        if len(pcm) % 2:
            pcm = np.concatenate([pcm, np.zeros(1, dtype=np.int16)])
        return bytes(self._codec.encode(np.ascontiguousarray(pcm, dtype=np.int16)))


class G722Decoder:
    """G.722 bytes in, 16 kHz int16 samples out (two per byte)."""

    def __init__(self) -> None:
        self._codec = G722.G722(WIDEBAND_RATE, BIT_RATE)

    def decode(self, payload: bytes) -> Pcm:
        return _as_pcm(self._codec.decode(payload))


def encode(pcm: Pcm) -> bytes:
    """A whole 16 kHz buffer, from a fresh encoder."""
    return G722Encoder().encode(pcm)


def decode(payload: bytes) -> Pcm:
    """A whole G.722 stream (e.g. a ``.g722`` prompt file), from a fresh decoder."""
    return G722Decoder().decode(payload)


def _halfband(taps: int = 31) -> npt.NDArray[np.float64]:
    n = np.arange(taps) - (taps - 1) / 2
    h = 0.5 * np.sinc(n / 2) * np.blackman(taps)
    result: npt.NDArray[np.float64] = h / h.sum()
    return result


_HALFBAND = _halfband()


class Decimator:
    """16 kHz to 8 kHz for a stream of chunks: a low-pass FIR whose history carries over, so
    every even-length chunk gives exactly half as many samples, with no clicks at the seams."""

    def __init__(self) -> None:
        self._history = np.zeros(len(_HALFBAND) - 1, dtype=np.float64)

    def process(self, pcm: Pcm) -> Pcm:
        if len(pcm) == 0:
            return np.zeros(0, dtype=np.int16)
        x = np.concatenate([self._history, pcm.astype(np.float64)])
        self._history = x[len(x) - (len(_HALFBAND) - 1):]
        y = np.convolve(x, _HALFBAND, mode="valid")[::2]
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def upsample(pcm: Pcm, rate: int = 8000) -> Pcm:
    """A whole buffer from ``rate`` to 16 kHz (prompts and greetings played on a G.722 call)."""
    if rate == WIDEBAND_RATE or len(pcm) == 0:
        return _as_pcm(pcm)
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, WIDEBAND_RATE, quality="HQ")
    return _as_pcm(np.clip(np.rint(out * 32768.0), -32768, 32767))


def downsample(pcm: Pcm) -> Pcm:
    """A whole 16 kHz buffer to 8 kHz."""
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, WIDEBAND_RATE, 8000, quality="HQ")
    return _as_pcm(np.clip(np.rint(out * 32768.0), -32768, 32767))
