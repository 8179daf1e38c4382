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


def best_correlation(reference: np.ndarray, received: np.ndarray) -> float:
    """Peak normalised cross-correlation of ``reference`` against ``received`` (any lag)."""
    ref = reference.astype(np.float64)
    rec = received.astype(np.float64)
    if len(rec) < len(ref):
        rec = np.concatenate([rec, np.zeros(len(ref) - len(rec))])
    n = 1 << int(np.ceil(np.log2(len(ref) + len(rec))))
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(corr[: len(rec)]))
    window = rec[lag : lag + len(ref)]
    window = np.concatenate([window, np.zeros(len(ref) - len(window))])
    denom = np.linalg.norm(ref) * np.linalg.norm(window)
    return float(np.dot(ref, window) / denom) if denom else 0.0


def tone(freq: float, seconds: float, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_frequency(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum[1:]) + 1) * 8000 / len(pcm)
