"""The audio codecs of an RTP stream: G.711 (PCMU, PCMA) at 8 kHz, G.722 at 16 kHz.

A :class:`StreamCodec` belongs to one call and keeps that call's codec state (G.722 is
adaptive). ``rate`` is the audio rate of the line; the RTP clock is 8000 Hz for all three
(RFC 3551 §4.5.2 for G.722), so a 20 ms frame is ``rate // 50`` samples but always 160 clock ticks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ...audio import g711, g722

Pcm = npt.NDArray[np.int16]

#: Codecs we can put on the line, by SDP encoding name; the RTP clock of each is 8000 Hz.
STATIC_PT = {"PCMU": 0, "PCMA": 8, "G722": 9}
RATES = {"PCMU": 8000, "PCMA": 8000, "G722": g722.WIDEBAND_RATE}


class StreamCodec:
    """Encode what we send and decode what we receive on one call."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding.upper()
        if self.encoding not in RATES:
            raise ValueError(f"unsupported codec {encoding!r}")
        self.rate = RATES[self.encoding]
        self.wideband = self.rate > 8000
        self._encoder = g722.G722Encoder() if self.wideband else None
        self._decoder = g722.G722Decoder() if self.wideband else None
        # G.711: the encoder and decoder chosen once, not by name for every packet
        self._g711_encode = g711.alaw_encode if self.encoding == "PCMA" else g711.ulaw_encode
        self._g711_decode = g711.alaw_decode if self.encoding == "PCMA" else g711.ulaw_decode

    def from_menu_audio(self, pcm: Pcm, rate: int = 8000) -> Pcm:
        """Menu audio (8 kHz, or a 16 kHz wideband prompt) at the line's rate."""
        if rate == self.rate:
            return pcm
        if self.wideband:
            return g722.upsample(pcm, rate)
        return g722.downsample(pcm)

    def encode(self, pcm: Pcm) -> bytes:
        """One frame of line-rate samples."""
        if self._encoder is not None:
            return self._encoder.encode(pcm)
        return self._g711_encode(pcm)

    def decode(self, payload: bytes) -> Pcm:
        """One payload to line-rate samples."""
        if self._decoder is not None:
            return self._decoder.decode(payload)
        return self._g711_decode(payload)
