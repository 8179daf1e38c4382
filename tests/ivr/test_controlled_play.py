"""Fast-forward and rewind land where the caller was, from the time the message played.

The channel "plays" on a clock of its own (the test's), so positions are exact and the test
takes no time: no wall clock in a pass/fail test."""

from __future__ import annotations

import numpy as np

from imapvm.ivr.mailbox import controlled_play
from tests.ivr.conftest import WorldFactory


class TimedChannel:
    """Plays on a virtual clock; presses `key` after `after` seconds of the first play."""

    def __init__(self, key: str, after: float) -> None:
        self.key, self.after = key, after
        self.plays: list[int] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def play(self, audio: np.ndarray, interrupt_digits: str = "") -> str | None:
        self.plays.append(len(audio))
        if len(self.plays) == 1:
            self.now += self.after
            return self.key
        self.now += len(audio) / 8000
        return None


async def test_forward_and_back_from_where_it_was(make_world: WorldFactory) -> None:
    w = await make_world()
    samples = np.zeros(10 * 8000, dtype=np.int16)
    fwd = TimedChannel("#", 1.0)
    await controlled_play(fwd, w.session, samples, skipms=3000,  # type: ignore[arg-type]
                          clock=fwd.clock)
    assert fwd.plays == [10 * 8000, 6 * 8000]  # 1 s played, 3 s skipped: 6 s left
    back = TimedChannel("*", 2.0)
    await controlled_play(back, w.session, samples, skipms=3000,  # type: ignore[arg-type]
                          clock=back.clock)
    assert back.plays == [10 * 8000, 10 * 8000]  # 2 s played, 3 s back: clamped at the start
    mid = TimedChannel("*", 5.0)
    await controlled_play(mid, w.session, samples, skipms=3000,  # type: ignore[arg-type]
                          clock=mid.clock)
    assert mid.plays == [10 * 8000, 8 * 8000]  # 5 s played, 3 s back: from 2 s
