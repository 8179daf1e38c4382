"""Shared fixtures for the telephony tests: caller audio, a running SIP server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture(scope="session")
def caller_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of synthetic speech at 8 kHz mono (espeak-ng + sox), like a caller."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed")
    work = tmp_path_factory.mktemp("audio")
    raw = work / "speech.wav"
    out = work / "caller.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(raw), "Hello, this is a test message for the voicemail "
         "server. Please call me back tomorrow."], check=True, capture_output=True,
    )
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def caller_wav_padded(caller_wav: Path) -> Path:
    """The caller's speech followed by 20 s of silence (baresip hangs up at end of file)."""
    out = caller_wav.with_name("caller_padded.wav")
    subprocess.run(["sox", str(caller_wav), str(out), "pad", "0", "20"], check=True)
    return out


def read_pcm(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000
    return data if data.ndim == 1 else data[:, 0]


def best_correlation(reference: np.ndarray, received: np.ndarray,
                     min_overlap: float = 0.9) -> float:
    """Peak normalised cross-correlation of ``reference`` against ``received``, at any lag,
    negative ones included: a recording may start a frame or two *into* the reference (on a
    busy machine the caller's first RTP packets arrive before the flow starts recording, and
    are rightly not recorded). At least ``min_overlap`` of the reference must overlap."""
    ref = reference.astype(np.float64)
    rec = received.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(ref) + len(rec))))
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    shortest = int(len(ref) * min_overlap)
    best = 0.0
    for lag in np.argsort(corr)[::-1][:8]:  # the strongest few peaks, normalised properly
        lag = int(lag) - n if lag > n - len(ref) else int(lag)
        r0, w0 = (0, lag) if lag >= 0 else (-lag, 0)
        length = min(len(ref) - r0, len(rec) - w0)
        if length < shortest:
            continue
        a, b = ref[r0 : r0 + length], rec[w0 : w0 + length]
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        if denom:
            best = max(best, float(np.dot(a, b) / denom))
    return best


def tone(freq: float, seconds: float, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_frequency(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum[1:]) + 1) * 8000 / len(pcm)
