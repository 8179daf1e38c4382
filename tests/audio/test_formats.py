"""Audio formats: round trips, bit-exactness against libgsm tools and sox, exact lengths, errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imapvm.audio import (
    FORMATS,
    MAX_AUDIO_BYTES,
    Audio,
    AudioFormatError,
    AudioTooLarge,
    SampleRateError,
    UnsupportedFormat,
    decode,
    encode,
    lookup,
    read_file,
    resample,
    write_file,
)
from tests.support.speech import snr_db, speech, tone

# Minimum SNR per lossy format on speech and on a 440 Hz tone. GSM speech around 10-11 dB is
# normal for a 13 kbit/s vocoder (reference/test-infra.md §4); G.711 is about 37 dB.
LOSSY_SNR = {
    "gsm": (9.0, 25.0),
    "WAV": (9.0, 25.0),
    "ulaw": (35.0, 35.0),
    "alaw": (35.0, 35.0),
    "mp3": (15.0, 40.0),
    "ogg": (18.0, 30.0),
    "opus": (12.0, 18.0),
}


@pytest.mark.parametrize("fmt", ["wav", "sln"])
def test_pcm_formats_are_lossless(fmt: str) -> None:
    s = speech(5.0)
    back = decode(encode(s, fmt), fmt)
    assert back.same_as(s)


@pytest.mark.parametrize("fmt", sorted(LOSSY_SNR))
def test_lossy_round_trip_snr_and_length(fmt: str) -> None:
    min_speech, min_tone = LOSSY_SNR[fmt]
    s = speech(10.0)
    back = decode(encode(s, fmt), fmt)
    assert back.rate == 8000
    assert back.frames == s.frames  # no codec delay, no padding on whole frames
    assert snr_db(s, back) >= min_speech
    t = tone(440.0, 2.0)
    assert snr_db(t, decode(encode(t, fmt), fmt)) >= min_tone


def test_wav_header_is_pcm16_8k_mono() -> None:
    data = encode(tone(seconds=0.5), "wav")
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 8000, 1)
    assert info.frames == 4000


def test_wav49_is_gsm_in_wav_with_fact_chunk() -> None:
    data = encode(tone(seconds=0.5), "WAV")
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WAVE"
    assert int.from_bytes(data[20:22], "little") == 0x31  # WAVE_FORMAT_GSM610
    assert int.from_bytes(data[32:34], "little") == 65  # block align: 2 frames in 65 bytes
    assert b"fact" in data[:64]


def _raw_s16(audio: Audio, path: Path) -> None:
    native = "<i2" if sys.byteorder == "little" else ">i2"
    path.write_bytes(audio.samples.astype(native).tobytes())


def test_gsm_encode_is_bit_exact_with_libgsm_toast(tmp_path: Path) -> None:
    s = speech(10.0)
    raw = tmp_path / "in.raw"
    _raw_s16(s, raw)
    toast = subprocess.run(["toast", "-l", "-c", str(raw)], check=True, capture_output=True).stdout
    ours = encode(s, "gsm")
    assert len(ours) == 80000 // 160 * 33
    assert ours == toast


def test_gsm_decode_is_bit_exact_with_libgsm_untoast(tmp_path: Path) -> None:
    gsm = tmp_path / "in.gsm"
    gsm.write_bytes(encode(speech(4.0), "gsm"))
    pcm = subprocess.run(["untoast", "-l", "-c", str(gsm)], check=True, capture_output=True).stdout
    theirs = np.frombuffer(pcm, dtype=np.int16)
    assert np.array_equal(decode(gsm.read_bytes(), "gsm").samples, theirs)


def test_gsm_and_wav49_are_bit_exact_with_sox(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    write_file(src, speech(6.0))
    sox_gsm, sox_wav49 = tmp_path / "sox.gsm", tmp_path / "sox49.wav"
    subprocess.run(["sox", str(src), str(sox_gsm)], check=True)
    subprocess.run(["sox", str(src), "-e", "gsm-full-rate", str(sox_wav49)], check=True)
    assert encode(speech(6.0), "gsm") == sox_gsm.read_bytes()
    assert encode(speech(6.0), "WAV") == sox_wav49.read_bytes()


@pytest.mark.parametrize(("fmt", "sox_type"), [("ulaw", "ul"), ("alaw", "al")])
def test_g711_decode_tables_match_sox(tmp_path: Path, fmt: str, sox_type: str) -> None:
    every_code = bytes(range(256))
    src = tmp_path / f"codes.{sox_type}"
    src.write_bytes(every_code)
    out = tmp_path / "out.raw"
    subprocess.run(
        ["sox", "-t", sox_type, "-r", "8000", "-c", "1", str(src), "-t", "raw", "-e", "signed",
         "-b", "16", "-L", str(out)],
        check=True,
    )
    assert np.array_equal(decode(every_code, fmt).samples, np.frombuffer(out.read_bytes(), "<i2"))


def _g191_ulaw(x: int) -> int:
    """ITU-T G.191 ``ulaw_compress`` for one 16-bit sample, written out plainly as an oracle."""
    absno = min((((~x) >> 2) if x < 0 else (x >> 2)) + 33, 0x1FFF)
    i, segno = absno >> 6, 1
    while i:
        segno, i = segno + 1, i >> 1
    code = ((8 - segno) << 4) | (15 - ((absno >> segno) & 15))
    return code | 0x80 if x >= 0 else code


def _g191_alaw(x: int) -> int:
    """ITU-T G.191 ``alaw_compress`` for one 16-bit sample."""
    ix = ((~x) >> 4) if x < 0 else (x >> 4)
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix, iexp = ix >> 1, iexp + 1
        ix = ix - 16 + (iexp << 4)
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


@pytest.mark.parametrize(("fmt", "oracle"), [("ulaw", _g191_ulaw), ("alaw", _g191_alaw)])
def test_g711_encoder_is_bit_exact_with_itu_g191_for_every_input(fmt: str, oracle: object) -> None:
    every = Audio(np.arange(-32768, 32768, dtype=np.int16))
    expected = bytes(oracle(int(x)) for x in every.samples)  # type: ignore[operator]
    assert encode(every, fmt) == expected


def test_g711_encoder_matches_itu_reference_points() -> None:
    # G.711: µ-law silence is 0xFF, full-scale positive 0x80; A-law of 0 is 0xD5, of +max 0xAA.
    samples = Audio(np.array([0, 32767, -32768], dtype=np.int16))
    assert encode(samples, "ulaw") == bytes([0xFF, 0x80, 0x00])
    assert encode(samples, "alaw") == bytes([0xD5, 0xAA, 0x2A])


@given(hnp.arrays(np.int16, st.integers(0, 2000)))
@settings(max_examples=60, deadline=None)
def test_exact_formats_round_trip_any_samples(samples: np.ndarray) -> None:
    a = Audio(samples)
    for fmt in ("wav", "sln"):
        assert decode(encode(a, fmt), fmt).same_as(a)
    for fmt in ("ulaw", "alaw"):
        once = decode(encode(a, fmt), fmt)
        # decoded G.711 values survive re-encoding (codes may not: µ-law has +0 and -0)
        assert decode(encode(once, fmt), fmt).same_as(once)


@given(st.integers(1, 3000))
@settings(max_examples=40, deadline=None)
def test_exact_durations(frames: int) -> None:
    a = Audio(np.full(frames, 1000, dtype=np.int16))
    assert decode(encode(a, "WAV"), "WAV").frames == frames  # fact chunk trims WAV49 padding
    assert decode(encode(a, "wav"), "wav").frames == frames
    assert decode(encode(a, "gsm"), "gsm").frames == -(-frames // 160) * 160  # 20 ms frames
    assert a.exact_duration * 8000 == frames


def test_format_lookup_names_and_aliases() -> None:
    assert lookup("wav49") is FORMATS["WAV"]
    assert lookup("WAV") is not lookup("wav")
    assert lookup("ul").name == "ulaw"
    assert lookup("GSM").name == "gsm"
    assert lookup("wav16").name == "wav16"
    assert lookup("sln16").rate == 16000
    with pytest.raises(UnsupportedFormat, match="unknown audio format 'flac'"):
        lookup("flac")


def test_read_and_write_infer_format_from_suffix(tmp_path: Path) -> None:
    t = tone(seconds=1.0)
    for name in ("msg0000.wav", "msg0000.WAV", "msg0000.gsm", "msg0000.ulaw", "msg0000.alaw"):
        write_file(tmp_path / name, t)
        assert read_file(tmp_path / name).frames == 8000
    assert (tmp_path / "msg0000.WAV").read_bytes()[:4] == b"RIFF"
    assert len((tmp_path / "msg0000.gsm").read_bytes()) == 50 * 33


def test_foreign_wav_is_resampled_and_mixed_down() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 1000 * t)], axis=1) * 0.4
    buf = io.BytesIO()
    sf.write(buf, stereo, rate, format="WAV", subtype="FLOAT")
    a = decode(buf.getvalue(), "wav")
    assert a.rate == 8000
    assert a.frames == 8000
    spectrum = np.abs(np.fft.rfft(a.samples.astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) - 1000) <= 1  # 1 Hz bins: the tone is still at 1 kHz
    with pytest.raises(SampleRateError, match="44100 Hz with 2 channel"):
        decode(buf.getvalue(), "wav", resample=False)


def test_narrowband_formats_resample_wideband_audio() -> None:
    wide = Audio(np.zeros(1600, dtype=np.int16), 16000)
    for fmt in ("gsm", "wav", "ulaw", "WAV"):
        assert encode(wide, fmt) == encode(resample(wide), fmt)
    assert encode(resample(wide), "gsm") == encode(Audio(np.zeros(800, dtype=np.int16)), "gsm")


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"RIFX\x00\x00\x00\x00WAVE", "wav", "no 'fmt ' chunk"),
        (b"OggS but not a wave", "wav", "missing RIFF/WAVE header"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x07\x00\x05\x00", "wav", "not a valid"),
        (b"\x00" * 34, "gsm", "truncated frame of 1 bytes"),
        (b"\x00\x01\x02", "sln", "odd length"),
        (b"not an mp3 at all" * 10, "mp3", "not a valid mp3"),
    ],
)
def test_damaged_input_raises_clear_errors(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        decode(data, fmt)


def test_truncated_wav_data_is_tolerated_but_garbage_header_is_not() -> None:
    full = encode(tone(seconds=1.0), "wav")
    cut = decode(full[: len(full) // 2], "wav")  # libsndfile reads what is there
    assert 0 < cut.frames < 8000
    with pytest.raises(AudioFormatError):
        decode(full[:30], "wav")


def test_over_128_mib_is_refused() -> None:
    big = bytes(MAX_AUDIO_BYTES + 1)
    for fmt in ("ulaw", "gsm", "wav"):
        with pytest.raises(AudioTooLarge, match=r"exceed the 134217728 byte limit"):
            decode(big, fmt)


def test_audio_value_validates() -> None:
    with pytest.raises(SampleRateError):
        Audio(np.zeros(10, dtype=np.int16), 0)
    with pytest.raises(TypeError, match="int16"):
        Audio(np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mono"):
        Audio(np.zeros((10, 2), dtype=np.int16))
    a = Audio(np.arange(16, dtype=np.int16))
    with pytest.raises(ValueError, match="read-only"):
        a.samples[0] = 5
    assert a.whole_seconds == 0
    assert Audio.silence(2.9).whole_seconds == 2


def test_wav_with_large_chunk_before_fmt_is_read() -> None:
    wav = encode(tone(seconds=0.25), "wav")
    junk = b"JUNK" + (5000).to_bytes(4, "little") + bytes(5000)
    padded = wav[:12] + junk + wav[12:]
    padded = padded[:4] + (len(padded) - 8).to_bytes(4, "little") + padded[8:]
    assert decode(padded, "wav").same_as(decode(wav, "wav"))


def test_wideband_formats_keep_16_khz_and_narrow_ones_are_resampled() -> None:
    t = np.arange(16000) / 16000
    wide = Audio((8000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16), 16000)
    data = encode(wide, "wav16")
    import soundfile as sf

    stored, rate = sf.read(__import__("io").BytesIO(data), dtype="int16")
    assert rate == 16000
    assert np.array_equal(stored, wide.samples)  # full bandwidth, bit for bit
    assert np.frombuffer(encode(wide, "sln16"), "<i2").tolist() == wide.samples.tolist()
    narrow = decode(encode(wide, "wav"), "wav")  # 6 kHz cannot live at 8 kHz: filtered out
    assert narrow.rate == 8000
    assert narrow.frames == 8000
    assert np.sqrt(np.mean(narrow.samples[400:-400].astype(float) ** 2)) < 100
    assert decode(data, "wav16").rate == 8000  # menus play it at 8 kHz
    assert decode(encode(wide, "sln16"), "sln16").frames == 8000
