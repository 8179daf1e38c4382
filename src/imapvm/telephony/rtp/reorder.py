"""A small reorder buffer that turns RTP arrival order into a gap-free sample stream.

Voicemail records what the caller said, so timing matters more than latency: packets are held
until ``depth`` later packets have arrived, then released in sequence order; a gap left by a
lost packet, or a timestamp jump (silence suppression), becomes silence of the right length.
Duplicates and packets that arrive after their slot was filled are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

Chunk = bytes | int  # payload bytes, or a count of silent samples to insert


@dataclass
class ReorderStats:
    received: int = 0
    lost: int = 0
    late: int = 0
    duplicates: int = 0


class ReorderBuffer:
    def __init__(self, depth: int = 3, max_gap_samples: int = 8000 * 5) -> None:
        self.depth = depth
        self.max_gap_samples = max_gap_samples
        self.stats = ReorderStats()
        self._next_seq: int | None = None
        self._next_ts = 0
        self._pending: dict[int, tuple[int, bytes]] = {}  # offset from _next_seq -> (ts, data)
        self._strays = 0

    def push(self, seq: int, timestamp: int, payload: bytes) -> list[Chunk]:
        if self._next_seq is None:
            self._next_seq, self._next_ts = seq, timestamp
        offset = (seq - self._next_seq) & 0xFFFF
        if 3000 < offset < 0x10000 - 100:
            # Far ahead or far behind: a stray, or the sender restarted its sequence. Three in
            # a row mean a restart (a stream switch at an SBC, a re-INVITE): start over there.
            self._strays += 1
            if self._strays < 3:
                self.stats.late += 1
                return []
            out = self.flush()
            self._next_seq, self._next_ts, self._strays = seq, timestamp, 0
            return out + self.push(seq, timestamp, payload)
        self._strays = 0
        if offset == 0 and not self._pending:  # in order, nothing held: the usual case
            self.stats.received += 1
            gap = (timestamp - self._next_ts) & 0xFFFFFFFF
            self._next_ts = (timestamp + len(payload)) & 0xFFFFFFFF
            self._next_seq = (self._next_seq + 1) & 0xFFFF
            return [gap, payload] if 0 < gap <= self.max_gap_samples else [payload]
        if offset >= 0x8000:
            self.stats.late += 1
            return []
        if offset in self._pending:
            self.stats.duplicates += 1
            return []
        self.stats.received += 1
        self._pending[offset] = (timestamp, payload)
        return self._release(force=False)

    @property
    def next_in_order(self) -> tuple[int, int] | None:
        """(sequence, timestamp) of the packet that ``push`` would release at once with no gap
        before it; None while packets are held or before the first one."""
        if self._pending or self._next_seq is None:
            return None
        return self._next_seq, self._next_ts

    def advance(self, count: int, next_seq: int, next_ts: int) -> None:
        """``count`` packets, each the ``next_in_order`` one, were taken without ``push`` (the
        RTP session's C read path): the state ``push`` would have left."""
        self.stats.received += count
        self._strays = 0
        self._next_seq, self._next_ts = next_seq, next_ts

    def flush(self) -> list[Chunk]:
        return self._release(force=True)

    def _release(self, force: bool) -> list[Chunk]:
        out: list[Chunk] = []
        while self._pending:
            if 0 not in self._pending:
                if not force and len(self._pending) <= self.depth:
                    break
                skip = min(self._pending)
                self.stats.lost += skip
                self._shift(skip)
            ts, payload = self._pending.pop(0)
            gap = (ts - self._next_ts) & 0xFFFFFFFF
            if 0 < gap <= self.max_gap_samples:
                out.append(gap)
            out.append(payload)
            self._next_ts = (ts + len(payload)) & 0xFFFFFFFF
            self._shift(1)
        return out

    def _shift(self, n: int) -> None:
        assert self._next_seq is not None
        self._next_seq = (self._next_seq + n) & 0xFFFF
        self._pending = {k - n: v for k, v in self._pending.items()}
