"""One send clock for every RTP stream of an event loop: a tick every 2 ms, not a timer per
packet.

With a ``call_at`` chain per stream, 500 calls are 25,000 timer handles a second, each pushed
on and popped off asyncio's heap (whose comparisons alone were a tenth of the RTP path). Here
one timer ticks on an absolute schedule (t0 + k·TICK) and each stream is due on the ticks of
its own phase: a 20 ms stream is due every 10th tick, and new streams are spread round-robin
over the 10 phases, so each tick sends for about a tenth of the calls. The streams are kept in
a wheel, one list per (period, phase), so a tick walks the lists that are due and nothing is
rescheduled per frame. A stream's schedule stays absolute (no drift) and the RTP timestamps
advance one frame per packet as before.

A tick first lets every due stream send (``on_tick``), then gives the streams that asked for
it their slower work (``after_tick``: reading), so sends never wait behind reads.

If the loop stalls, the frames owed are sent on its return when they are at most five frames
late (a short burst keeps the caller's jitter buffer fed); after a longer stall they are
dropped and every stream continues on its schedule from the present, without a burst.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

TICK = 0.002  # seconds; every ptime in use (10, 20, 30, 40 ms) is a multiple
CATCH_UP = 5  # frames a stream may owe after a stall and still send


class Paced(Protocol):
    def on_tick(self, due: float, now: float) -> bool:
        """Send one frame that was due at ``due`` (loop time); ``now`` is the tick's time.
        True asks for ``after_tick`` once the tick's frames are all sent."""

    def after_tick(self, now: float) -> None:
        """The work that may wait (reading), after every stream of the tick has sent."""


class Pacer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._t0 = loop.time()
        self._done = 0  # the last tick number processed
        self._wheel: dict[int, list[list[Paced]]] = {}  # period -> streams by phase
        self._streams: dict[Paced, tuple[int, int]] = {}  # live streams -> (period, phase)
        self._phase = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> Pacer:
        pacer = _PACERS.get(loop)
        if pacer is None:
            pacer = _PACERS[loop] = cls(loop)
        return pacer

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: Paced, ptime: float) -> None:
        """Start sending for ``stream`` every ``ptime`` seconds, from the next tick of a
        phase chosen round-robin."""
        period = max(1, round(ptime / TICK))
        now_tick = max(self._done, int((self._loop.time() - self._t0) / TICK))
        self._phase = (self._phase + 1) % period
        phases = self._wheel.get(period)
        if phases is None:
            phases = self._wheel[period] = [[] for _ in range(period)]
        phases[self._phase].append(stream)
        self._streams[stream] = (period, self._phase)
        first = now_tick + 1 + (self._phase - now_tick - 1) % period
        if self._timer is None:
            self._arm(first)
        elif first < self._armed:
            self._timer.cancel()
            self._arm(first)

    def change(self, stream: Paced, ptime: float) -> None:
        """A new ptime (re-INVITE): the stream continues on the new period."""
        if stream in self._streams:
            self.remove(stream)
            self.add(stream, ptime)

    def remove(self, stream: Paced) -> None:
        place = self._streams.pop(stream, None)
        if place is None:
            return
        period, phase = place
        phases = self._wheel[period]
        phases[phase].remove(stream)
        if not any(phases):
            del self._wheel[period]
        if not self._streams and self._timer is not None:
            self._timer.cancel()  # nothing left to send: no idle ticking
            self._timer = None

    def _arm(self, tick: int) -> None:
        self._armed = tick
        self._timer = self._loop.call_at(self._t0 + tick * TICK, self._run)

    def _run(self) -> None:
        self._timer = None
        now = self._loop.time()
        done = self._done
        current = max(done + 1, int((now - self._t0) / TICK + 1e-9))
        self._done = current
        streams = self._streams
        t0 = self._t0
        stall = current - done  # ticks since the last run: 1 when on time
        # after a stall of more than CATCH_UP frames, only each stream's latest frame is sent
        oldest = {p: p if stall > CATCH_UP * p else stall for p in self._wheel}
        for tick in range(done + 1, current + 1):
            late = current - tick  # ticks
            due = t0 + tick * TICK
            readers: list[Paced] = []
            for period, phases in list(self._wheel.items()):
                if late >= oldest.get(period, 1):
                    continue  # owed from a long stall: dropped, not burst
                group = phases[tick % period]
                if not group:
                    continue
                for stream in tuple(group):  # a stream may close itself (or another)
                    if stream in streams and stream.on_tick(due, now):
                        readers.append(stream)
            for stream in readers:
                if stream in streams:
                    stream.after_tick(now)
        if streams:
            self._arm(self._next_tick(current))

    def _next_tick(self, after: int) -> int:
        """The first tick after ``after`` on which some stream is due."""
        best = after + 1 + max(self._wheel, default=1)
        for period, phases in self._wheel.items():
            for k in range(1, period + 1):
                if phases[(after + k) % period]:
                    best = min(best, after + k)
                    break
        return best


_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = (
    weakref.WeakKeyDictionary()
)
