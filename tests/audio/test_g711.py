"""G.711 tables must be bit-exact with the ITU-T G.191 reference algorithm (the plain oracles in
test_formats.py); stdlib audioop agrees on the decoders and A-law, not on µ-law encoding."""

from __future__ import annotations

import warnings

import numpy as np
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


def test_ulaw_decode_matches_audioop_for_every_byte() -> None:
    data = bytes(range(256))
    expected = np.frombuffer(audioop.ulaw2lin(data, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.ulaw_decode(data), expected)


def test_alaw_decode_matches_audioop_for_every_byte() -> None:
    data = bytes(range(256))
    expected = np.frombuffer(audioop.alaw2lin(data, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.alaw_decode(data), expected)


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
def test_round_trip_is_stable_and_silence_decodes_to_zero(encoding: str) -> None:
    once = g711.decode(encoding, g711.encode(encoding, ALL_SAMPLES))
    twice = g711.decode(encoding, g711.encode(encoding, once))
    np.testing.assert_array_equal(once, twice)
    assert abs(int(g711.decode(encoding, bytes([g711.silence_byte(encoding)]))[0])) <= 8


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match=r"G\.711"):
        g711.encode("G722", ALL_SAMPLES[:10])
