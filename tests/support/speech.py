"""Deterministic test audio: espeak-ng speech resampled to 8 kHz, and pure tones."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from imapvm.audio import Audio, to_telephony

TEXT = (
    "Hello, this is a test voicemail for the i map voicemail server. Please call me back at "
    "five five five, one two three four, before five o'clock tomorrow. Thank you, goodbye."
)


@functools.cache
def speech(seconds: float = 10.0) -> Audio:
    """espeak-ng speech at 8 kHz, repeated or cut to ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), TEXT],
            check=True,
            capture_output=True,
        )
        data, rate = sf.read(wav, dtype="int16")
    base = to_telephony(data, rate)
    want = round(seconds * 8000)
    reps = -(-want // base.frames)
    return Audio(np.tile(base.samples, reps)[:want])


def tone(freq: float = 440.0, seconds: float = 1.0, amplitude: float = 0.5) -> Audio:
    t = np.arange(round(seconds * 8000)) / 8000.0
    return Audio(np.rint(np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16))


def snr_db(reference: Audio, test: Audio) -> float:
    """Signal-to-noise ratio of ``test`` against ``reference`` (same length prefix)."""
    n = min(reference.frames, test.frames)
    ref = reference.samples[:n].astype(np.float64)
    err = ref - test.samples[:n].astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-9)))
