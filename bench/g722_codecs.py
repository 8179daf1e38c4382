"""G.722 for RTP: the PyPI `G722` package (libg722) against PyAV (FFmpeg's g722), per 20 ms frame
as a call uses them. Prints the cost of encoding and decoding one second of audio frame by frame,
whether both produce the same bit stream, and the round-trip SNR (ending with one key=value line).

    .venv/bin/python bench/g722_codecs.py
"""

from __future__ import annotations

import time

import G722
import numpy as np

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz -> 160 bytes of G.722
SECONDS = 20


def signal() -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(RATE * SECONDS) / RATE
    x = 6000 * np.sin(2 * np.pi * 440 * t) + 2500 * np.sin(2 * np.pi * 5200 * t)
    return np.clip(x + rng.normal(0, 300, len(t)), -32768, 32767).astype(np.int16)


def libg722(x: np.ndarray) -> tuple[bytes, np.ndarray, float, float]:
    enc, dec = G722.G722(RATE, 64000), G722.G722(RATE, 64000)
    start = time.perf_counter()
    payloads = [enc.encode(x[i : i + FRAME]) for i in range(0, len(x), FRAME)]
    mid = time.perf_counter()
    out = [np.asarray(dec.decode(p), dtype=np.int16) for p in payloads]
    end = time.perf_counter()
    return b"".join(payloads), np.concatenate(out), (mid - start) / SECONDS, (end - mid) / SECONDS


def pyav(x: np.ndarray) -> tuple[bytes, np.ndarray, float, float]:
    import av
    from av.audio.frame import AudioFrame

    enc = av.CodecContext.create("g722", "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", "s16"  # type: ignore[attr-defined]
    enc.open()
    dec = av.CodecContext.create("g722", "r")
    dec.sample_rate, dec.layout = RATE, "mono"  # type: ignore[attr-defined]
    dec.open()
    start = time.perf_counter()
    payloads = []
    for i in range(0, len(x), FRAME):
        frame = AudioFrame.from_ndarray(x[i : i + FRAME].reshape(1, -1), format="s16",
                                        layout="mono")
        frame.sample_rate = RATE
        payloads += [bytes(p) for p in enc.encode(frame)]  # type: ignore[attr-defined]
    mid = time.perf_counter()
    out = []
    for p in payloads:
        for f in dec.decode(av.Packet(p)):  # type: ignore[attr-defined]
            out.append(f.to_ndarray().reshape(-1).astype(np.int16))
    end = time.perf_counter()
    return b"".join(payloads), np.concatenate(out), (mid - start) / SECONDS, (end - mid) / SECONDS


def snr(x: np.ndarray, y: np.ndarray) -> float:
    a, b = x.astype(np.float64), y.astype(np.float64)
    delay = max(range(64), key=lambda k: float(np.dot(a[: len(a) - k], b[k : len(a)])))
    ref, got = a[: len(a) - delay], b[delay : len(a)]
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2)))


def main() -> None:
    x = signal()
    lb, ly, le, ld = libg722(x)
    ab, ay, ae, ad = pyav(x)
    print(f"libg722 (PyPI G722): encode {le * 1e3:.3f} ms, decode {ld * 1e3:.3f} ms per second "
          f"of audio; round-trip SNR {snr(x, ly):.1f} dB")
    print(f"PyAV (FFmpeg g722):  encode {ae * 1e3:.3f} ms, decode {ad * 1e3:.3f} ms per second "
          f"of audio; round-trip SNR {snr(x, ay):.1f} dB")
    same = lb == ab
    print(f"same bit stream: {same}; decoders agree: {np.array_equal(ly, ay[: len(ly)])}")
    print(f"libg722_enc_ms_per_s={le * 1e3:.3f} libg722_dec_ms_per_s={ld * 1e3:.3f} "
          f"pyav_enc_ms_per_s={ae * 1e3:.3f} pyav_dec_ms_per_s={ad * 1e3:.3f} "
          f"same_bitstream={same} snr_db={snr(x, ly):.1f}")


if __name__ == "__main__":
    main()
