"""Resampling and concatenation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapvm.audio import Audio, SampleRateError, concat, resample, to_telephony
from tests.support.speech import tone


@pytest.mark.parametrize("rate", [11025, 16000, 22050, 44100, 48000])
def test_resample_keeps_length_and_pitch(rate: int) -> None:
    t = np.arange(rate * 2) / rate
    src = Audio(np.rint(np.sin(2 * np.pi * 700 * t) * 12000).astype(np.int16), rate)
    out = resample(src)
    assert out.rate == 8000
    assert out.frames == 16000
    spectrum = np.abs(np.fft.rfft(out.samples.astype(np.float64)))
    assert abs(np.argmax(spectrum) / 2 - 700) <= 1  # 0.5 Hz bins over 2 s
    rms = np.sqrt(np.mean(out.samples[2000:-2000].astype(np.float64) ** 2))
    assert 12000 / np.sqrt(2) * 0.95 < rms < 12000 / np.sqrt(2) * 1.05


def test_resample_is_identity_at_target_rate() -> None:
    a = tone(seconds=0.2)
    assert resample(a) is a


def test_to_telephony_accepts_float_and_int32() -> None:
    f = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 300) * 0.5
    assert to_telephony(f, 16000).frames == 8000
    i32 = (f * 2**31).astype(np.int32)
    out = to_telephony(i32, 8000)
    assert out.frames == 16000
    assert abs(int(np.max(out.samples)) - 16384) < 50  # 0.5 full scale survives the scaling


@given(st.lists(st.integers(0, 4000), min_size=1, max_size=5))
@settings(max_examples=30, deadline=None)
def test_concat_joins_in_order(lengths: list[int]) -> None:
    parts = [Audio(np.full(n, i, dtype=np.int16)) for i, n in enumerate(lengths)]
    joined = concat(*parts)
    assert joined.frames == sum(lengths)
    assert joined.exact_duration == sum((p.exact_duration for p in parts), start=0)
    pos = 0
    for i, n in enumerate(lengths):
        assert np.all(joined.samples[pos : pos + n] == i)
        pos += n


def test_concat_refuses_mixed_rates() -> None:
    with pytest.raises(SampleRateError, match="resample first"):
        concat(Audio.silence(0.1), Audio.silence(0.1, 16000))
    with pytest.raises(ValueError, match="at least one"):
        concat()
