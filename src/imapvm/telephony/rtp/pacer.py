"""One send clock for every RTP stream of an event loop: a tick every 2 ms, not a timer per
packet.

With a ``call_at`` chain per stream, 500 calls are 25,000 timer handles a second, each pushed
on and popped off asyncio's heap (whose comparisons alone were a tenth of the RTP path). Here
one timer ticks on an absolute schedule (t0 + k·TICK) and each stream is due on a tick of
its own phase: a 20 ms stream is due every 10th tick, and new streams are spread round-robin
over the 10 phases, so each tick sends for about a tenth of the calls. A stream's schedule
stays absolute (no drift) and the RTP timestamps advance one frame per packet as before.

If the loop stalls for more than five frames a stream restarts its schedule from the next
tick instead of bursting to catch up (as the per-stream timers did).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

TICK = 0.002  # seconds; every ptime in use (10, 20, 30, 40 ms) is a multiple


class Paced(Protocol):
    def on_tick(self, due: float, now: float) -> None:
        """Send one frame that was due at ``due`` (loop time); ``now`` is the tick's time."""

    def after_tick(self, now: float) -> None:
        """Called once every stream of the tick has sent: the work that may wait (reading)."""


class Pacer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._t0 = loop.time()
        self._done = 0  # the last tick number processed
        self._slots: dict[int, list[tuple[Paced, int]]] = {}  # tick -> (stream, period)
        self._streams: dict[Paced, int] = {}  # live streams -> the tick they are due on
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
        first = now_tick + 1 + (self._phase - now_tick - 1) % period
        self._put(stream, first, period)
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
        self._streams.pop(stream, None)  # its slot entry is skipped when its tick comes

    def _put(self, stream: Paced, tick: int, period: int) -> None:
        self._streams[stream] = tick
        slot = self._slots.get(tick)
        if slot is None:
            self._slots[tick] = [(stream, period)]
        else:
            slot.append((stream, period))

    def _arm(self, tick: int) -> None:
        self._armed = tick
        self._timer = self._loop.call_at(self._t0 + tick * TICK, self._run)

    def _run(self) -> None:
        self._timer = None
        loop = self._loop
        now = loop.time()
        current = max(self._done + 1, int((now - self._t0) / TICK + 1e-9))
        streams = self._streams
        for tick in range(self._done + 1, current + 1):
            slot = self._slots.pop(tick, None)
            if slot is None:
                continue
            due = self._t0 + tick * TICK
            sent: list[Paced] = []
            for stream, period in slot:  # every due frame first: sends are what is timed
                if streams.get(stream) != tick:
                    continue  # removed, or moved to another schedule
                stream.on_tick(due, now)
                if stream not in streams:
                    continue  # closed itself while sending
                sent.append(stream)
                following = tick + period
                if following <= current and (current - tick) * TICK > 5 * period * TICK:
                    following = current + 1 + (following - current - 1) % period
                self._put(stream, following, period)
            for stream in sent:
                stream.after_tick(now)
        self._done = current
        if streams and self._slots:
            self._arm(min(self._slots))  # the next tick with work (stale entries included)
        else:
            self._slots.clear()


_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pacer] = (
    weakref.WeakKeyDictionary()
)
