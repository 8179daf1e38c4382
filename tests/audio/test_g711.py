"""G.711 must be bit-exact with the ITU-T G.191 reference algorithm (the plain oracles here and
in test_formats.py); stdlib audioop agrees on the decoders and A-law, not on µ-law encoding."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from imapvm.audio import g711
from tests.audio.test_formats import _g191_alaw, _g191_ulaw

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_encoders_match_itu_g191_for_every_sample() -> None:
    assert g711.ulaw_encode(ALL_SAMPLES) == bytes(_g191_ulaw(int(x)) for x in ALL_SAMPLES)
    assert g711.alaw_encode(ALL_SAMPLES) == bytes(_g191_alaw(int(x)) for x in ALL_SAMPLES)


def test_audioop_differs_only_where_expected() -> None:
    """audioop's A-law encoder agrees; its µ-law encoder rounds 508 negative inputs otherwise."""
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)
    ours = np.frombuffer(g711.ulaw_encode(ALL_SAMPLES), dtype=np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2), dtype=np.uint8)
    differ = ALL_SAMPLES[ours != theirs]
    assert len(differ) == 508
    assert (differ < 0).all()


def _g191_ulaw_expand(code: int) -> int:
    """G.191 ``ulaw_expand`` for one code: complemented, segment and mantissa, bias removed."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def _g191_alaw_expand(code: int) -> int:
    """G.191 ``alaw_expand`` for one code: even bits inverted, segment, half-step added."""
    a = code ^ 0x55
    seg = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + (8 if seg == 0 else 0x108)
    if seg > 1:
        t <<= seg - 1
    return t if a & 0x80 else -t


@pytest.mark.parametrize(("decode", "expand", "theirs"), [
    (g711.ulaw_decode, _g191_ulaw_expand, audioop.ulaw2lin),
    (g711.alaw_decode, _g191_alaw_expand, audioop.alaw2lin),
])
def test_decoders_match_itu_g191_and_audioop_for_every_code(
    decode: Callable[[bytes], npt.NDArray[np.int16]], expand: Callable[[int], int],
    theirs: Callable[[bytes, int], bytes],
) -> None:
    data = bytes(range(256)) * 3  # a frame-sized run, each code three times
    ours = decode(data)
    np.testing.assert_array_equal(ours, [expand(c) for c in data])
    np.testing.assert_array_equal(ours, np.frombuffer(theirs(data, 2), dtype=np.int16))
    assert ours.dtype == np.int16
    assert not ours.flags.writeable  # a view of audioop's bytes: a write raises, never corrupts
    with pytest.raises(ValueError, match="read-only"):
        ours[0] = 1
    assert len(decode(b"")) == 0


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
def test_round_trip_is_stable_and_silence_decodes_to_zero(encoding: str) -> None:
    once = g711.decode(encoding, g711.encode(encoding, ALL_SAMPLES))
    twice = g711.decode(encoding, g711.encode(encoding, once))
    np.testing.assert_array_equal(once, twice)
    assert abs(int(g711.decode(encoding, bytes([g711.silence_byte(encoding)]))[0])) <= 8


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match=r"G\.711"):
        g711.encode("G722", ALL_SAMPLES[:10])
