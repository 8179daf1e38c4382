"""Audio files handed to imapvm by an operator (`imapvm deposit`), read as a caller's recording
would be: never more than the seconds that will be kept, and refused with one line saying why
when the file is not audio, is only a header, or was cut off.

A two-hour file is not decoded whole to keep five minutes: only the frames that will be kept are
read (libsndfile seeks and streams; raw formats are sliced before decoding).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from imapvm.audio import formats
from imapvm.audio.convert import float_to_int16
from imapvm.audio.core import MAX_AUDIO_BYTES, TELEPHONY_RATE, Audio
from imapvm.audio.errors import AudioFormatError, UnsupportedFormat

#: Bytes per second of the raw formats, which carry no header to ask.
_RAW_RATE = {"sln": 2 * TELEPHONY_RATE, "ulaw": TELEPHONY_RATE, "alaw": TELEPHONY_RATE,
             "raw_gsm": formats.GSM_FRAME_BYTES * TELEPHONY_RATE // formats.GSM_FRAME_SAMPLES}
_RAW_UNIT = {"sln": 2, "ulaw": 1, "alaw": 1, "raw_gsm": formats.GSM_FRAME_BYTES}


@dataclass(frozen=True)
class Upload:
    """What was read: the audio to keep and the file's whole length in seconds."""

    audio: Audio
    file_seconds: float

    @property
    def truncated(self) -> bool:
        return self.file_seconds > self.audio.duration + 0.02


def file_seconds(path: Path) -> float:
    """The length of an audio file from its header (or size, for raw formats), without
    decoding it. Raises AudioFormatError (one line) for what is not readable audio."""
    return _probe(path)[0]


def read_upload(path: Path, max_seconds: float) -> Upload:
    """At most `max_seconds` of `path` as 8 kHz mono. Raises AudioFormatError for a file that
    is not audio, a WAV that is truncated, and AudioTooLarge only for what cannot be streamed."""
    seconds, raw = _probe(path)
    if raw is not None:
        unit, rate = _RAW_UNIT[raw.kind], _RAW_RATE[raw.kind]
        keep = min(path.stat().st_size, math.ceil(max_seconds * rate / unit) * unit)
        with path.open("rb") as f:
            data = f.read(keep)
        return Upload(formats.decode(data, raw), seconds)
    if seconds <= max_seconds and path.stat().st_size <= MAX_AUDIO_BYTES:
        try:  # the exact reader where there is one (GSM WAV trimmed to its fact chunk, ...)
            fmt = formats.lookup(path.suffix.lstrip("."))
        except UnsupportedFormat:
            fmt = None
        if fmt is not None and fmt.kind == "soundfile":
            return Upload(formats.decode(path.read_bytes(), fmt), seconds)
    return Upload(_stream(path, max_seconds), seconds)


def _probe(path: Path) -> tuple[float, formats.AudioFormat | None]:
    if not path.is_file():
        raise AudioFormatError(f"{path}: no such file" if not path.exists()
                               else f"{path}: not a regular file")
    try:
        fmt: formats.AudioFormat | None = formats.lookup(path.suffix.lstrip("."))
    except UnsupportedFormat:
        fmt = None
    size = path.stat().st_size
    if fmt is not None and fmt.kind in _RAW_RATE:
        if size == 0:
            raise AudioFormatError(f"{path}: the file is empty")
        return size / _RAW_RATE[fmt.kind], fmt
    with path.open("rb") as f:
        head = f.read(64 * 1024)
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        _check_wav(path, head, size)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioFormatError(f"{path}: not an audio file imapvm can read "
                               f"({formats.libsndfile_reason(exc)})") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise AudioFormatError(f"{path}: holds no audio (0 s)")
    return info.frames / info.samplerate, None


def _check_wav(path: Path, head: bytes, size: int) -> None:
    """A WAV whose data chunk says more than the file holds was cut off (a copy that stopped,
    a recorder that crashed): refused rather than stored as a shorter or empty message."""
    order = ">" if head[:4] == b"RIFX" else "<"
    pos = 12
    while pos + 8 <= len(head):
        cid = head[pos:pos + 4]
        (length,) = struct.unpack_from(f"{order}I", head, pos + 4)
        if cid == b"data":
            if length in (0, 0xFFFFFFFF):  # written while streaming: the length is unknown
                if size <= pos + 8:
                    raise AudioFormatError(f"{path}: a WAV header with no audio (0 s)")
                return
            if size <= pos + 8:
                raise AudioFormatError(f"{path}: a WAV header with no audio (0 s)")
            if pos + 8 + length > size:
                raise AudioFormatError(
                    f"{path}: truncated WAV: its data chunk declares {length} bytes but the "
                    f"file holds {max(size - pos - 8, 0)}")
            return
        pos += 8 + length + (length & 1)
    if pos + 8 > size:
        raise AudioFormatError(f"{path}: a WAV header with no audio (0 s)")


def _stream(path: Path, max_seconds: float) -> Audio:
    """The first `max_seconds` through libsndfile, 10 s at a time, mixed down and resampled as
    it goes into one array of the 8 kHz result: memory holds that result once, never the
    file's own rate and channels, nor a list of pieces to join."""
    out = np.zeros(0, dtype=np.int16)
    filled = 0

    def put(piece: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        nonlocal out, filled
        if filled + piece.size > out.size:  # the resampler's output length is approximate
            out = np.resize(out, filled + piece.size + TELEPHONY_RATE)
        out[filled:filled + piece.size] = float_to_int16(piece)
        filled += piece.size

    try:
        with sf.SoundFile(str(path)) as snd:
            rate = snd.samplerate
            left = min(snd.frames, int(max_seconds * rate))
            out = np.empty(math.ceil(left * TELEPHONY_RATE / rate) + 64, dtype=np.int16)
            stream = None if rate == TELEPHONY_RATE else soxr.ResampleStream(
                rate, TELEPHONY_RATE, 1, dtype="float32", quality="HQ")
            while left > 0:
                pcm = snd.read(frames=min(left, 10 * rate), dtype="float32", always_2d=True)
                if pcm.shape[0] == 0:
                    break
                left -= pcm.shape[0]
                mono = pcm.mean(axis=1, dtype=np.float32)
                put(mono if stream is None else stream.resample_chunk(mono, last=left <= 0))
            if stream is not None and left > 0:  # the file ended before its header said
                put(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioFormatError(
            f"{path}: cannot decode ({formats.libsndfile_reason(exc)})") from None
    if filled == 0:
        raise AudioFormatError(f"{path}: holds no audio (0 s)")
    return Audio(out[:filled].copy() if filled < out.size // 2 else out[:filled],
                 TELEPHONY_RATE)
