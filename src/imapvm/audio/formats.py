"""Audio file formats: bytes in a named format ⇄ :class:`~imapvm.audio.core.Audio`.

Format names are Asterisk's, because they travel inside stored messages (``msg0000.wav``,
``msg0000.WAV``) and Asterisk derives the codec from that suffix:

========  =====================================  ====================  ===========================
name      content                                MIME type (Asterisk)  codec
========  =====================================  ====================  ===========================
``wav``   RIFF WAV, PCM 16-bit, 8 kHz mono       ``audio/x-wav``       libsndfile
``WAV``   RIFF WAV, GSM 06.10 ("wav49"), 8 kHz   ``audio/x-WAV``       libsndfile (= libgsm bits)
``gsm``   raw GSM 06.10, 33-byte frames          ``audio/x-gsm``       libsndfile (= libgsm bits)
``ulaw``  raw G.711 µ-law                        ``audio/x-ulaw``      numpy tables (= ITU G.191)
``alaw``  raw G.711 A-law                        ``audio/x-alaw``      numpy tables (= ITU G.191)
``sln``   raw signed linear 16-bit LE, 8 kHz     ``audio/x-sln``       numpy
``wav16`` RIFF WAV, PCM 16-bit, 16 kHz mono      ``audio/x-wav``       libsndfile
``sln16`` raw signed linear 16-bit LE, 16 kHz    ``audio/x-sln``       numpy
``mp3``   MPEG layer III (mail clients only)     ``audio/mpeg``        libsndfile (LAME)
``ogg``   Ogg Vorbis (Asterisk's ``ogg``)        ``application/ogg``   libsndfile
``opus``  Ogg Opus (mail clients only)           ``audio/ogg``         libsndfile
========  =====================================  ====================  ===========================

``wav16`` and ``sln16`` hold wideband (G.722) recordings at their full bandwidth, under the names
Asterisk gives its 16 kHz formats; audio at another rate is resampled to a format's rate when
encoded (a G.722 call stored as ``gsm`` is narrowband, as it must be).
``wav49`` is accepted as a synonym of ``WAV`` and Asterisk's file-extension aliases (``ul``,
``mu``, ``al``, ``raw``...) are accepted for decoding. Names are case-sensitive only
where Asterisk's are: ``wav`` and ``WAV`` are different formats.

Why these libraries: soundfile bundles libsndfile, whose GSM 06.10 is byte-identical with libgsm,
sox and toast (``reference/test-infra.md`` §4). G.711 files use ``imapvm.audio.g711``, the same
numpy tables as RTP, computed by the ITU-T G.191 reference algorithm (DESIGN.md allows numpy
tables for G.711): libsndfile's and sox's encoders round differently, and ``audioop``'s µ-law
encoder differs from G.191 on 508 of the 65,536 negative-side inputs.

Exact durations: raw GSM carries no length, so a decoded ``.gsm`` is the encoded length rounded up
to 160 samples (20 ms); ``WAV`` records the true length in its ``fact`` chunk and we trim to it.

Every function is pure and thread-safe; encode/decode of minutes of audio takes milliseconds to
tens of milliseconds, so async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from imapvm.audio import g711
from imapvm.audio.convert import to_telephony
from imapvm.audio.core import MAX_AUDIO_BYTES, TELEPHONY_RATE, Audio
from imapvm.audio.errors import (
    AudioFormatError,
    AudioTooLarge,
    SampleRateError,
    UnsupportedFormat,
)

Kind = Literal["soundfile", "raw_gsm", "ulaw", "alaw", "sln"]

GSM_FRAME_BYTES = 33
GSM_FRAME_SAMPLES = 160


@dataclass(frozen=True)
class AudioFormat:
    """One storable format: its Asterisk name, MIME type and how we code it."""

    name: str
    mime_type: str
    kind: Kind
    sf_format: str | None = None
    sf_subtype: str | None = None
    #: False for formats Asterisk cannot play out of the box (kept out of MIME part 2).
    asterisk_playable: bool = True
    #: Sample rate of the stored audio.
    rate: int = TELEPHONY_RATE

    @property
    def extension(self) -> str:
        """File-name suffix, which is the format name itself (Asterisk's convention)."""
        return self.name


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        AudioFormat("wav", "audio/x-wav", "soundfile", "WAV", "PCM_16"),
        AudioFormat("WAV", "audio/x-WAV", "soundfile", "WAV", "GSM610"),
        AudioFormat("gsm", "audio/x-gsm", "raw_gsm"),
        AudioFormat("ulaw", "audio/x-ulaw", "ulaw"),
        AudioFormat("alaw", "audio/x-alaw", "alaw"),
        AudioFormat("sln", "audio/x-sln", "sln"),
        AudioFormat("wav16", "audio/x-wav", "soundfile", "WAV", "PCM_16", rate=16000),
        AudioFormat("sln16", "audio/x-sln", "sln", rate=16000),
        AudioFormat("mp3", "audio/mpeg", "soundfile", "MP3", "MPEG_LAYER_III", False),
        AudioFormat("ogg", "application/ogg", "soundfile", "OGG", "VORBIS"),
        AudioFormat("opus", "audio/ogg", "soundfile", "OGG", "OPUS", False),
    )
}

#: Alternative names (Asterisk file extensions and config spellings) → canonical name.
ALIASES: dict[str, str] = {
    "wav49": "WAV",
    "ul": "ulaw",
    "ulw": "ulaw",
    "mu": "ulaw",
    "pcm": "ulaw",
    "al": "alaw",
    "alw": "alaw",
    "raw": "sln",
    "slin": "sln",
}


def lookup(name: str) -> AudioFormat:
    """The :class:`AudioFormat` for a format name or alias; :class:`UnsupportedFormat` if none."""
    if name in FORMATS:
        return FORMATS[name]
    canonical = ALIASES.get(name) or ALIASES.get(name.lower())
    if canonical is None and name.lower() in FORMATS and name.lower() != "wav":
        canonical = name.lower()
    if canonical is None:
        raise UnsupportedFormat(f"unknown audio format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[canonical]


def _check_size(data: bytes | bytearray | memoryview) -> None:
    if len(data) > MAX_AUDIO_BYTES:
        raise AudioTooLarge(f"{len(data)} bytes of audio exceed the {MAX_AUDIO_BYTES} byte limit")


def _at_rate(audio: Audio, fmt: AudioFormat) -> Audio:
    if audio.rate == fmt.rate:
        return audio
    from imapvm.audio.convert import resample

    return resample(audio, fmt.rate)


def encode(audio: Audio, fmt: str | AudioFormat) -> bytes:
    """Encode ``audio`` as the bytes of a ``fmt`` file (resampled to the format's rate)."""
    f = fmt if isinstance(fmt, AudioFormat) else lookup(fmt)
    audio = _at_rate(audio, f)
    pcm = audio.samples
    if f.kind == "sln":
        return pcm.astype("<i2").tobytes()
    if f.kind in ("ulaw", "alaw"):
        return g711.ulaw_encode(pcm) if f.kind == "ulaw" else g711.alaw_encode(pcm)
    buf = io.BytesIO()
    if f.kind == "raw_gsm":
        sf.write(buf, pcm, TELEPHONY_RATE, format="RAW", subtype="GSM610")
    else:
        try:
            sf.write(buf, pcm, f.rate, format=f.sf_format, subtype=f.sf_subtype)
        except (sf.LibsndfileError, TypeError, ValueError) as exc:  # pragma: no cover - build dep
            raise UnsupportedFormat(f"this libsndfile cannot encode {f.name}: {exc}") from exc
    return buf.getvalue()


def decode(data: bytes, fmt: str | AudioFormat, *, resample: bool = True) -> Audio:
    """Decode the bytes of a ``fmt`` file to 8 kHz mono :class:`Audio`.

    Container formats at another rate or with several channels are converted (``resample=True``,
    the default, for uploads) or refused with :class:`SampleRateError` (``resample=False``, for
    callers that must not silently accept a mislabelled file). Damaged input raises
    :class:`AudioFormatError`; input over 128 MiB raises :class:`AudioTooLarge`.
    """
    f = fmt if isinstance(fmt, AudioFormat) else lookup(fmt)
    _check_size(data)
    if f.kind == "sln":
        if len(data) % 2:
            raise AudioFormatError(f"signed-linear data has an odd length ({len(data)} bytes)")
        raw = Audio(np.frombuffer(data, dtype="<i2").astype(np.int16), f.rate)
        return raw if f.rate == TELEPHONY_RATE else to_telephony(raw.samples, f.rate)
    if f.kind in ("ulaw", "alaw"):
        pcm = g711.ulaw_decode(data) if f.kind == "ulaw" else g711.alaw_decode(data)
        return Audio(pcm.copy(), TELEPHONY_RATE)
    if f.kind == "raw_gsm":
        return _decode_raw_gsm(data)
    return _decode_container(data, f, resample=resample)


def _decode_raw_gsm(data: bytes) -> Audio:
    if len(data) % GSM_FRAME_BYTES:
        raise AudioFormatError(
            f"raw GSM is a sequence of {GSM_FRAME_BYTES}-byte frames; {len(data)} bytes leaves a "
            f"truncated frame of {len(data) % GSM_FRAME_BYTES} bytes"
        )
    if not data:
        return Audio(np.zeros(0, dtype=np.int16))
    try:
        pcm, _ = sf.read(
            io.BytesIO(data), dtype="int16", format="RAW", subtype="GSM610",
            samplerate=TELEPHONY_RATE, channels=1,
        )
    except sf.LibsndfileError as exc:
        raise AudioFormatError(f"cannot decode raw GSM: {libsndfile_reason(exc)}") from exc
    return Audio(np.ascontiguousarray(pcm, dtype=np.int16))


def _decode_container(data: bytes, f: AudioFormat, *, resample: bool) -> Audio:
    if f.sf_format == "WAV":
        _check_riff(data)
    try:
        with sf.SoundFile(io.BytesIO(data)) as snd:
            rate = snd.samplerate
            subtype = snd.subtype
            # libsndfile does not scale float files read as int16 (they would read as zeros),
            # so float data is read as float and scaled by to_telephony.
            dtype = "float64" if subtype in ("FLOAT", "DOUBLE") else "int16"
            pcm: Any = snd.read(frames=snd.frames, dtype=dtype, always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioFormatError(f"not a valid {f.name} file: {libsndfile_reason(exc)}") from exc
    if subtype == "GSM610" and f.sf_format == "WAV":
        true_len = _wav_fact_length(data)
        if true_len is not None and true_len <= pcm.shape[0]:
            pcm = pcm[:true_len]
    if not resample and (rate != f.rate or pcm.shape[1] != 1):
        raise SampleRateError(
            f"{f.name} file is {rate} Hz with {pcm.shape[1]} channel(s); expected {f.rate} Hz "
            "mono"
        )
    return to_telephony(pcm, rate)


def libsndfile_reason(exc: BaseException) -> str:
    """libsndfile's own words, without `Error opening <_io.BytesIO object at 0x…>: `."""
    text = getattr(exc, "error_string", "") or str(exc)
    text = re.sub(r"Error opening (<[^>]*>|'[^']*'|\S+): ", "", text)
    return re.sub(r"<_io\.\w+ object at 0x[0-9a-f]+>", "the data", text).strip().rstrip(".")


def _check_riff(data: bytes) -> None:
    """Reject obviously broken WAV headers with a message that says what is wrong."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX", b"RF64") or data[8:12] != b"WAVE":
        raise AudioFormatError("not a WAV file: missing RIFF/WAVE header")
    if _riff_chunk(data, b"fmt ") is None:
        raise AudioFormatError("WAV file has no 'fmt ' chunk before its data")


def _riff_chunk(data: bytes, wanted: bytes) -> int | None:
    """Offset of the payload of the first ``wanted`` chunk before ``data``, or None."""
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if cid == wanted:
            return pos + 8
        if cid == b"data":
            return None
        pos += 8 + size + (size & 1)
    return None


def _wav_fact_length(data: bytes) -> int | None:
    """Sample count from a WAV ``fact`` chunk (present in GSM WAVs), or None."""
    at = _riff_chunk(data, b"fact")
    if at is None or at + 4 > len(data):
        return None
    return int(struct.unpack_from("<I", data, at)[0])


def can_encode(fmt: str) -> bool:
    """Whether this installation's libsndfile encodes ``fmt`` (MP3/Opus depend on the build)."""
    try:
        encode(Audio.silence(0.1), fmt)
    except (UnsupportedFormat, sf.LibsndfileError):
        return False
    return True


def read_file(path: str | Path, fmt: str | None = None, *, resample: bool = True) -> Audio:
    """Read an audio file; the format defaults to the file-name suffix (``msg0000.WAV`` → WAV)."""
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_AUDIO_BYTES:
        raise AudioTooLarge(f"{p} is {size} bytes, above the {MAX_AUDIO_BYTES} byte limit")
    return decode(p.read_bytes(), fmt or p.suffix.lstrip("."), resample=resample)


def write_file(path: str | Path, audio: Audio, fmt: str | None = None) -> None:
    """Write ``audio`` to ``path``; the format defaults to the file-name suffix."""
    p = Path(path)
    p.write_bytes(encode(audio, fmt or p.suffix.lstrip(".")))
