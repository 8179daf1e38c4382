"""Per-source token buckets: a flood from one address must not starve everyone else.

Only requests that would create state (no To tag: INVITE, SUBSCRIBE, OPTIONS, ...) are
counted; traffic inside existing dialogs is never limited. Buckets are pruned when full, so
memory stays proportional to the sources active in the last few seconds.
"""

from __future__ import annotations


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, last time)
        self._last_prune = 0.0

    def allow(self, source: str, now: float) -> bool:
        tokens, last = self._buckets.get(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        if now - self._last_prune > 10.0:
            self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        self._last_prune = now
        refill = self.burst / self.rate if self.rate > 0 else float("inf")
        self._buckets = {
            ip: (t, last) for ip, (t, last) in self._buckets.items() if now - last < refill
        }
