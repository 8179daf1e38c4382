"""A deadline heap: the SIP core's timers at a cost independent of how many are armed.

Every transaction, unacknowledged 2xx, subscription and held REGISTER that needs waking up
has one entry under a key of its owner's choosing. ``schedule`` replaces the key's deadline
(the old heap entry stays behind, marked stale by its sequence number, and is discarded when
it reaches the top); ``pop_due`` returns the keys whose deadline has come, examining only
those entries and the stale ones in front of them. ``next_deadline`` looks at the top.

``examined`` counts the heap entries looked at, so tests can show that a timer pass with
thousands of idle subscriptions touches only what is due.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerHeap(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}  # key -> (deadline, sequence number)
        self._seq = 0
        self.examined = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def schedule(self, key: K, when: float | None) -> None:
        """Arm ``key`` for ``when`` (replacing any earlier deadline); None disarms it."""
        if when is None:
            self._live.pop(key, None)
            return
        current = self._live.get(key)
        if current is not None and current[0] == when:
            return
        self._seq += 1
        self._live[key] = (when, self._seq)
        heapq.heappush(self._heap, (when, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def cancel(self, key: K) -> None:
        self._live.pop(key, None)

    def deadline(self, key: K) -> float | None:
        entry = self._live.get(key)
        return entry[0] if entry else None

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """Disarm and return the keys due at ``now``, earliest first."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, seq, key = heapq.heappop(heap)
            self.examined += 1
            if self._live.get(key) == (when, seq):
                del self._live[key]
                due.append(key)
        return due

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            when, seq, key = heap[0]
            if self._live.get(key) == (when, seq):
                return
            self.examined += 1
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [(when, seq, key) for key, (when, seq) in self._live.items()]
        heapq.heapify(self._heap)
