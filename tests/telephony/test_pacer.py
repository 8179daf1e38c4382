"""The shared RTP send clock, on a hand-driven clock: phases spread the streams, each stream
keeps an exact schedule, removed streams stop, and a stalled loop neither bursts nor drifts."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from itertools import pairwise
from typing import cast

import pytest

from imapvm.telephony.rtp.pacer import TICK, Pacer


class ManualLoop:
    """Just the two loop methods the pacer uses, with time moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0
        self._timers: list[tuple[float, int, Handle]] = []
        self._n = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(callback)
        self._n += 1
        heapq.heappush(self._timers, (when, self._n, handle))
        return handle

    def run_until(self, t: float, late: float = 0.0) -> None:
        """Fire every timer due by ``t``, each ``late`` seconds after its time."""
        while self._timers and self._timers[0][0] <= t:
            when, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self.now = max(self.now, when + late)
                handle.callback()
        self.now = max(self.now, t)


class Handle:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Stream:
    def __init__(self, loop: ManualLoop) -> None:
        self.loop = loop
        self.sent: list[tuple[float, float]] = []  # (due, now)
        self.reads = 0

    def on_tick(self, due: float, now: float) -> bool:
        self.sent.append((due, now))
        return True

    def after_tick(self, now: float) -> None:
        self.reads += 1


def make() -> tuple[ManualLoop, Pacer]:
    loop = ManualLoop()
    return loop, Pacer(cast(asyncio.AbstractEventLoop, loop))


def test_streams_are_spread_over_the_phases_and_keep_their_period() -> None:
    loop, pacer = make()
    streams = [Stream(loop) for _ in range(20)]
    for s in streams:
        pacer.add(s, 0.020)
    loop.run_until(100.5)
    per_tick: dict[float, int] = {}
    for s in streams:
        dues = [due for due, _ in s.sent]
        assert len(dues) >= 24
        gaps = {round(b - a, 9) for a, b in pairwise(dues)}
        assert gaps == {0.02}  # an exact 20 ms schedule, no drift
        assert s.reads == len(s.sent)  # each send followed by its read phase
        for due in dues:
            per_tick[round(due, 6)] = per_tick.get(round(due, 6), 0) + 1
    assert set(per_tick.values()) == {2}  # 20 streams over 10 phases: two per tick


def test_removed_stream_stops_and_the_clock_stops_with_the_last() -> None:
    loop, pacer = make()
    a, b = Stream(loop), Stream(loop)
    pacer.add(a, 0.020)
    pacer.add(b, 0.020)
    loop.run_until(100.1)
    pacer.remove(a)
    sent = len(a.sent)
    loop.run_until(100.2)
    assert len(a.sent) == sent
    assert len(b.sent) > sent
    pacer.remove(b)
    loop.run_until(100.3)
    assert len(pacer) == 0
    assert [h for _, _, h in loop._timers if not h.cancelled] == []  # no idle ticking


def test_short_stall_catches_up_long_stall_restarts_without_burst() -> None:
    loop, pacer = make()
    s = Stream(loop)
    pacer.add(s, 0.020)
    loop.run_until(100.1)
    before = len(s.sent)
    loop.run_until(100.1 + 0.07, late=0.07)  # the loop was 70 ms late: 3-4 frames owed
    assert len(s.sent) - before >= 3
    loop.run_until(101.0)
    before = len(s.sent)
    loop.run_until(101.0 + 0.5, late=0.5)  # half a second: no burst of 25 frames
    burst = [due for due, now in s.sent[before:] if now == s.sent[-1][1]]
    assert len(burst) <= 2
    loop.run_until(102.0)
    dues = [due for due, _ in s.sent[-10:]]
    assert {round(b - a, 9) for a, b in pairwise(dues)} == {0.02}


@pytest.mark.parametrize("ptime", [0.010, 0.020, 0.030, 0.040])
def test_period_follows_ptime(ptime: float) -> None:
    loop, pacer = make()
    s = Stream(loop)
    pacer.add(s, ptime)
    loop.run_until(101.0)
    dues = [due for due, _ in s.sent]
    assert {round(b - a, 9) for a, b in pairwise(dues)} == {ptime}
    assert round(ptime / TICK) * TICK == pytest.approx(ptime)


def test_a_tick_sends_for_every_stream_before_any_reads() -> None:
    loop, pacer = make()
    order: list[str] = []

    class Logged(Stream):
        def __init__(self, name: str) -> None:
            super().__init__(loop)
            self.name = name

        def on_tick(self, due: float, now: float) -> bool:
            order.append(f"send {self.name}")
            return True

        def after_tick(self, now: float) -> None:
            order.append(f"read {self.name}")

    streams = [Logged(str(i)) for i in range(20)]  # two per phase
    for s in streams:
        pacer.add(s, 0.020)
    loop.run_until(100.03)
    pairs = [order[i : i + 4] for i in range(0, len(order), 4)]
    assert pairs
    for group in pairs:
        assert [g.split()[0] for g in group] == ["send", "send", "read", "read"]


def test_after_tick_only_on_the_ticks_a_stream_asks_for() -> None:
    loop, pacer = make()

    class EveryFourth(Stream):
        def on_tick(self, due: float, now: float) -> bool:
            self.sent.append((due, now))
            return len(self.sent) % 4 == 0

    class Quiet(Stream):
        def on_tick(self, due: float, now: float) -> bool:
            self.sent.append((due, now))
            return False

    quiet, reader = Quiet(loop), EveryFourth(loop)
    pacer.add(quiet, 0.020)
    pacer.add(reader, 0.020)
    loop.run_until(101.0)
    assert len(quiet.sent) >= 49
    assert quiet.reads == 0
    assert reader.reads == len(reader.sent) // 4


def test_a_stream_removed_during_a_tick_sends_no_more() -> None:
    loop, pacer = make()
    victims: list[Stream] = []

    class Closer(Stream):
        def on_tick(self, due: float, now: float) -> bool:
            self.sent.append((due, now))
            for victim in victims:  # e.g. a call ending another stream of the same tick
                pacer.remove(victim)
            return True

    streams = [Stream(loop) for _ in range(9)]
    closer = Closer(loop)
    pacer.add(closer, 0.020)  # phase 1
    for s in streams:
        pacer.add(s, 0.020)  # phases 2..9, 0
    pacer.add(victim := Stream(loop), 0.020)  # phase 1 again: after the closer in its tick
    victims.append(victim)
    loop.run_until(100.5)
    assert victim.sent == []
    assert victim.reads == 0
    assert len(pacer) == 10
    assert all(len(s.sent) >= 24 for s in [closer, *streams])


def test_after_a_long_stall_streams_keep_their_phase() -> None:
    loop, pacer = make()
    streams = [Stream(loop) for _ in range(10)]
    for s in streams:
        pacer.add(s, 0.020)
    loop.run_until(100.2)
    phases = {id(s): round((s.sent[-1][0] - 100.0) / TICK) % 10 for s in streams}
    loop.run_until(100.2 + 0.5, late=0.5)  # a half-second stall
    loop.run_until(101.0)
    for s in streams:
        after = [due for due, _ in s.sent if due > 100.7]
        assert after
        assert {round((due - 100.0) / TICK) % 10 for due in after} == {phases[id(s)]}
        burst = [due for due, now in s.sent if now == s.sent[-1][1]]
        assert len(burst) <= 1
