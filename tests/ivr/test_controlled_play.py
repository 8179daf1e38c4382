"""Fast-forward and rewind land where the caller was, from the time the message played."""

from __future__ import annotations

import asyncio

import numpy as np

from imapvm.ivr.mailbox import controlled_play
from tests.ivr.conftest import WorldFactory


class TimedChannel:
    """Plays in real time; presses `key` after `after` seconds of the first play."""

    def __init__(self, key: str, after: float) -> None:
        self.key, self.after = key, after
        self.plays: list[int] = []

    async def play(self, audio: np.ndarray, interrupt_digits: str = "") -> str | None:
        self.plays.append(len(audio))
        if len(self.plays) == 1:
            await asyncio.sleep(self.after)
            return self.key
        return None


async def test_forward_and_back_from_where_it_was(make_world: WorldFactory) -> None:
    w = await make_world()
    samples = np.zeros(10 * 8000, dtype=np.int16)
    fwd = TimedChannel("#", 1.0)
    await controlled_play(fwd, w.session, samples, skipms=3000)  # type: ignore[arg-type]
    # 1 s played, 3 s skipped: 6 s left (within a few RTP frames of scheduling noise)
    assert abs(fwd.plays[1] - 6 * 8000) <= 400
    back = TimedChannel("*", 2.0)
    await controlled_play(back, w.session, samples, skipms=3000)  # type: ignore[arg-type]
    assert back.plays[1] == 10 * 8000  # 2 s played, 3 s back: clamped at the start
