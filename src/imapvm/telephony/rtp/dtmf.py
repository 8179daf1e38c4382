"""RFC 4733 telephone-events: decoding received digits and encoding digits to send.

A digit is reported once, when its end packet arrives (so its duration is known). Senders
repeat the end packet (usually three times) and networks lose packets, so an event is also
reported when a new event starts while the previous one never ended, and by ``expire(now)``
when it went quiet for ``stale_after`` seconds without an end packet.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

EVENTS = "0123456789*#ABCD"
_PAYLOAD = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int  # in timestamp units (1/8000 s for 8 kHz audio)


def parse_event(payload: bytes) -> TelephoneEvent | None:
    if len(payload) < 4:
        return None
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def build_event(event: int, end: bool, duration: int, volume: int = 10) -> bytes:
    return _PAYLOAD.pack(event, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


class DtmfReceiver:
    """Turns a stream of telephone-event packets into (digit, duration ms) once per key press."""

    def __init__(self, clock_rate: int = 8000, stale_after: float = 0.25) -> None:
        self._rate = clock_rate
        self._stale_after = stale_after
        self._current: tuple[int, int, int] | None = None  # (ssrc, timestamp, event)
        self._duration = 0
        self._last_seen = 0.0
        self._done: deque[tuple[int, int, int]] = deque(maxlen=16)

    def feed(self, ssrc: int, timestamp: int, payload: bytes, now: float) -> list[tuple[str, int]]:
        event = parse_event(payload)
        if event is None or event.event >= len(EVENTS):
            return []
        key = (ssrc, timestamp, event.event)
        if key in self._done:
            return []  # repeated end packet, or a retransmission of a finished event
        out: list[tuple[str, int]] = []
        if self._current is not None and self._current != key:
            out += self._finish()
        self._current = key
        self._duration = max(self._duration, event.duration)
        self._last_seen = now
        if event.end:
            out += self._finish()
        return out

    def expire(self, now: float) -> list[tuple[str, int]]:
        """Report an event whose end packets were all lost."""
        if self._current is not None and now - self._last_seen >= self._stale_after:
            return self._finish()
        return []

    def _finish(self) -> list[tuple[str, int]]:
        assert self._current is not None
        key, duration = self._current, self._duration
        self._done.append(key)
        self._current, self._duration = None, 0
        return [(EVENTS[key[2]], duration * 1000 // self._rate)]


def event_code(digit: str) -> int:
    """The RFC 4733 event number for a DTMF digit."""
    index = EVENTS.find(digit.upper())
    if len(digit) != 1 or index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index
