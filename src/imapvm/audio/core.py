"""The in-memory audio value every layer passes around.

Telephony audio in imapvm is always mono 16-bit linear PCM; 8 kHz is the rate of every codec we
store (GSM 06.10, G.711) and the rate of the RTP streams, so :class:`Audio` is that and nothing
more. Anything else (a 44.1 kHz stereo WAV a user uploads as a greeting) is converted on the way in
by :func:`imapvm.audio.convert.to_telephony`.

All functions here are pure and may be called from a worker thread (``asyncio.to_thread``): numpy
and libsndfile do the heavy lifting and nothing touches shared state.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from imapvm.audio.errors import AudioTooLarge, SampleRateError

#: The one rate of stored voicemail and RTP.
TELEPHONY_RATE = 8000

#: Largest encoded audio or message body accepted, as Asterisk does since ASTERISK-25899.
#: 128 MiB is about 4.6 hours of 8 kHz PCM: no real voicemail comes near it, so anything larger is
#: damage or abuse, and refusing it early keeps one bad message from exhausting memory.
MAX_AUDIO_BYTES = 128 * 1024 * 1024

#: Rates we accept as input at all; outside this range the header is damaged, not exotic.
MIN_INPUT_RATE = 1000
MAX_INPUT_RATE = 384000


Samples = npt.NDArray[np.int16]


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono int16 samples at ``rate`` Hz (8000 for everything imapvm stores).

    ``eq=False`` because comparing numpy arrays with ``==`` is elementwise; use :meth:`same_as`.
    """

    samples: Samples
    rate: int = TELEPHONY_RATE

    def __post_init__(self) -> None:
        if not MIN_INPUT_RATE <= self.rate <= MAX_INPUT_RATE:
            raise SampleRateError(
                f"sample rate {self.rate} Hz is outside {MIN_INPUT_RATE}..{MAX_INPUT_RATE}"
            )
        arr = np.asarray(self.samples)
        if arr.ndim != 1:
            raise ValueError(f"Audio holds mono samples, got an array of shape {arr.shape}")
        if arr.dtype != np.int16:
            raise TypeError(f"Audio samples must be int16, got {arr.dtype}")
        if arr.nbytes > MAX_AUDIO_BYTES:
            raise AudioTooLarge(f"{arr.nbytes} bytes of PCM exceed the {MAX_AUDIO_BYTES} B limit")
        arr.flags.writeable = False  # frozen means frozen: no caller can change shared samples
        object.__setattr__(self, "samples", arr)

    @classmethod
    def silence(cls, seconds: float, rate: int = TELEPHONY_RATE) -> Audio:
        """Digital silence, handy for padding and tests."""
        return cls(np.zeros(round(seconds * rate), dtype=np.int16), rate)

    @property
    def frames(self) -> int:
        """Number of samples (one channel, so frames == samples)."""
        return int(self.samples.shape[0])

    @property
    def exact_duration(self) -> Fraction:
        """Duration in seconds as an exact fraction (no float drift when durations are summed)."""
        return Fraction(self.frames, self.rate)

    @property
    def duration(self) -> float:
        """Duration in seconds as a float, for display."""
        return self.frames / self.rate

    @property
    def whole_seconds(self) -> int:
        """Duration truncated to whole seconds, as Asterisk writes ``X-Asterisk-VM-Duration``."""
        return self.frames // self.rate

    def same_as(self, other: Audio) -> bool:
        """True when both hold the same rate and identical samples."""
        return self.rate == other.rate and np.array_equal(self.samples, other.samples)
