"""Encode/decode speed of every stored audio format on 60 s of speech, as times real time.

Speech comes from espeak-ng (the same recipe as reference/test-infra.md §4), resampled to 8 kHz
with soxr and repeated to 60 s. Each figure is the best of several runs (least disturbed by other
load). Also times building and parsing a complete voicemail e-mail around that recording.

Run: /work/main/.venv/bin/python bench/codecs.py
The last line is machine-readable ``key=value`` pairs (``gsm_encode_x_realtime=`` etc.).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from imapvm.audio import Audio, decode, encode, to_telephony
from imapvm.audio.formats import can_encode
from imapvm.message import Deposit, EmailSettings, build_voicemail, parse_message

SECONDS = 60
TEXT = (
    "Hello, this is a test voicemail. Please call me back at five five five, one two three four, "
    "before five o'clock tomorrow, about the invoice we discussed last week. Thank you, goodbye."
)
FORMATS = ["wav", "WAV", "gsm", "ulaw", "alaw", "sln", "mp3", "ogg", "opus"]


def speech() -> Audio:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), TEXT], check=True)
        data, rate = sf.read(wav, dtype="int16")
    base = to_telephony(data, rate)
    n = SECONDS * 8000
    return Audio(np.tile(base.samples, -(-n // base.frames))[:n])


def best(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    audio = speech()
    results: dict[str, float] = {}
    print(f"{'format':8} {'bytes':>9} {'encode ms':>10} {'x realtime':>11} {'decode ms':>10} "
          f"{'x realtime':>11}")
    for fmt in FORMATS:
        if not can_encode(fmt):
            print(f"{fmt:8} (not encodable with this libsndfile)")
            continue
        data = encode(audio, fmt)
        t_enc = best(lambda fmt=fmt: encode(audio, fmt))
        t_dec = best(lambda fmt=fmt, data=data: decode(data, fmt))
        results[f"{fmt.lower() if fmt != 'WAV' else 'wav49'}_encode_x_realtime"] = SECONDS / t_enc
        results[f"{fmt.lower() if fmt != 'WAV' else 'wav49'}_decode_x_realtime"] = SECONDS / t_dec
        print(f"{fmt:8} {len(data):9d} {t_enc * 1000:10.1f} {SECONDS / t_enc:11.0f} "
              f"{t_dec * 1000:10.1f} {SECONDS / t_dec:11.0f}")
    settings = EmailSettings(context="default", mailbox="1234", fullname="Bench",
                             emails=("bench@example.org",), formats=("wav",), hostname="bench")
    raw = build_voicemail(Deposit(number=1), settings, audio).raw
    t_build = best(lambda: build_voicemail(Deposit(number=1), settings, audio), runs=7)
    t_parse = best(lambda: parse_message(raw), runs=7)
    t_full = best(lambda: parse_message(raw).message.decode(), runs=7)
    results["email_build_x_realtime"] = SECONDS / t_build
    results["email_parse_x_realtime"] = SECONDS / t_parse
    results["email_parse_decode_x_realtime"] = SECONDS / t_full
    print(f"e-mail (wav + gsm, {len(raw)} bytes): build {t_build * 1000:.1f} ms, "
          f"parse {t_parse * 1000:.1f} ms, parse+decode {t_full * 1000:.1f} ms")
    print(" ".join(f"{k}={v:.0f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
