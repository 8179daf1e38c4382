"""Login lockouts that hold across calls, sources and nodes.

Every failed login to a mailbox (a wrong PIN on the phone, a wrong SIP digest) is counted per
mailbox, whatever the call or source address it came from, and per source address. The first
``free_failures`` cost nothing; each later one makes the next attempt wait ``backoff`` seconds,
doubled every time (capped at ``lock_seconds``); after ``lock_after`` failures the mailbox is
locked for ``lock_seconds``. While a mailbox waits or is locked, every login to it is refused,
even with the right PIN: the lock is what keeps guessing under ``lock_after`` tries per
``lock_seconds``, whatever the number of sources. A success clears the mailbox's count;
a quiet ``forget_after`` clears it too.

The per-mailbox state is kept where every node reads it: the store's ``LockoutState``
capability (an IMAP METADATA entry of the voicemail folder, a file in the spool directory), read
again before every phone login and written after every failure. A node keeps a copy for SIP
digest checks, which cannot wait for IMAP, and refreshes it in the background. Two nodes failing
in the same instant may count one failure instead of two (last writer wins); the lock engages a
guess or two later, never not at all. Where the store cannot keep it (an IMAP server without
METADATA), the state is this node's alone and a warning says so once.

Per-source counts stay in memory: a source guessing across many mailboxes is slowed down on the
node it talks to. Log lines are written for fail2ban (``contrib/fail2ban``):
``auth failure: source=<ip> user=<mailbox> via=<phone|sip-digest>`` and
``auth locked: user=<mailbox> ...``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from imapvm.storage.base import MailboxRef, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockoutPolicy:
    free_failures: int = 3
    backoff: float = 30.0  # seconds after the first failure beyond the free ones, then doubled
    lock_after: int = 10
    lock_seconds: float = 3600.0
    forget_after: float = 86400.0  # a mailbox's count is forgotten after this long without one

    def wait_after(self, failures: int) -> float:
        """Seconds before the next attempt is allowed after ``failures`` failures."""
        if failures >= self.lock_after:
            return self.lock_seconds
        if failures <= self.free_failures:
            return 0.0
        delay: float = self.backoff * 2.0 ** (failures - self.free_failures - 1)
        return min(self.lock_seconds, delay)


@dataclass(frozen=True)
class Failure:
    """One failed login as counted here: the state before it, and when it happened."""

    before: FailureState
    at: float


@dataclass(frozen=True)
class FailureState:
    failures: int = 0
    last: float = 0.0  # wall-clock time of the last failure (shared between nodes)

    def to_bytes(self) -> bytes:
        # full precision: the time of a failure is also its identity (see _persist_failure)
        return json.dumps({"failures": self.failures, "last": self.last}).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> FailureState:
        if not data:
            return cls()
        try:
            raw = json.loads(data)
            return cls(int(raw["failures"]), float(raw["last"]))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable lockout state ignored")
            return cls()


@runtime_checkable
class SharedLockoutState(Protocol):
    """Where a store keeps a mailbox's failure state. ``None`` from ``read_lockout`` means no
    state; ``LockoutUnsupported`` means the store cannot keep any for this mailbox."""

    async def read_lockout(self, box: MailboxRef) -> bytes | None: ...

    async def write_lockout(self, box: MailboxRef, data: bytes | None) -> None: ...


class LockoutUnsupported(StoreError):
    """The store cannot share lockout state for this mailbox (e.g. IMAP without METADATA)."""


class Lockouts:
    def __init__(self, policy: LockoutPolicy | None = None,
                 shared: SharedLockoutState | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = policy or LockoutPolicy()
        self.shared = shared
        self.clock = clock
        self._boxes: dict[MailboxRef, FailureState] = {}
        self._sources: dict[str, FailureState] = {}
        self._refreshed: dict[MailboxRef, float] = {}
        self._unshared_warned: set[MailboxRef] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[MailboxRef, asyncio.Lock] = {}  # one read-modify-write at a time
        self._written: dict[MailboxRef, float] = {}  # the last failure this node shared

    def _lock(self, box: MailboxRef) -> asyncio.Lock:
        return self._locks.setdefault(box, asyncio.Lock())

    # -- checks (synchronous, on this node's copy) ----------------------------------------
    def wait(self, box: MailboxRef | None, source: str | None = None) -> float:
        """Seconds before ``box`` (and ``source``) may try a login again; 0 when allowed."""
        now = self.clock()
        waits = [0.0]
        if box is not None:
            waits.append(self._wait(self._boxes.get(box), now))
        if source:
            waits.append(self._wait(self._sources.get(source), now))
        return max(waits)

    def _wait(self, state: FailureState | None, now: float) -> float:
        if state is None or not state.failures or now - state.last > self.policy.forget_after:
            return 0.0
        return max(0.0, state.last + self.policy.wait_after(state.failures) - now)

    def failures(self, box: MailboxRef) -> int:
        state = self._boxes.get(box)
        return state.failures if state else 0

    # -- shared state -----------------------------------------------------------------------
    async def refresh(self, box: MailboxRef) -> None:
        """Take the shared state of ``box`` (what other nodes counted) into this node's copy."""
        async with self._lock(box):
            shared = await self._read(box)
        if shared is not None:
            local = self._boxes.get(box, FailureState())
            # The newer state wins (a success is a state too: no failures, at its time), so
            # an older count never overrides a newer one, in either direction; at the same
            # instant, the higher count (two nodes failing together).
            if (shared.last, shared.failures) > (local.last, local.failures):
                self._boxes[box] = shared
        self._refreshed[box] = self.clock()

    def refresh_soon(self, box: MailboxRef, max_age: float = 5.0) -> None:
        """Background refresh when this node's copy is older than ``max_age`` seconds."""
        if self.shared is None or self.clock() - self._refreshed.get(box, 0.0) < max_age:
            return
        self._refreshed[box] = self.clock()
        self._spawn(self.refresh(box))

    async def _read(self, box: MailboxRef) -> FailureState | None:
        if self.shared is None or box in self._unshared_warned:
            return None  # no store, or one known not to keep it: no round trip for nothing
        try:
            return FailureState.from_bytes(await self.shared.read_lockout(box))
        except LockoutUnsupported as exc:
            self._warn_unshared(box, str(exc))
        except StoreError as exc:
            log.warning("lockout state of %s unreadable, using this node's: %s", box, exc)
        return None

    def _warn_unshared(self, box: MailboxRef, why: str) -> None:
        if box not in self._unshared_warned:
            self._unshared_warned.add(box)
            log.warning("lockout state of %s is kept on this node only: %s", box, why)

    # -- outcomes -------------------------------------------------------------------------
    async def failure(self, box: MailboxRef | None, source: str, via: str,
                      user: str = "", counted_as: str | None = None) -> None:
        """Count one failed login (``box`` None: a mailbox that does not exist).

        ``source`` is the network address logged; ``counted_as`` the key of the per-source
        count when that address says nothing of the caller (phone logins all come from the
        PBX: counting them by its address would lock everyone out by phone)."""
        event = self.note_failure(box, source, via, user, counted_as)
        if box is not None and event is not None:
            await self._persist_failure(box, event)

    def note_failure(self, box: MailboxRef | None, source: str, via: str,
                     user: str = "", counted_as: str | None = None) -> Failure | None:
        """Count a failure on this node's copy at once (SIP digest: synchronous); the result
        goes to ``failure_soon`` to be shared."""
        now = self.clock()
        if via != "sip-digest":  # the digest module logs its own failures
            log.warning("auth failure: source=%s user=%s via=%s", source or "-",
                        box or user or "-", via)
        key = source if counted_as is None else counted_as
        if key:
            self._sources[key] = self._bump(self._sources.get(key), now)
            src = self._sources[key]
            if src.failures == self.policy.lock_after:
                log.warning("auth locked: source=%s for %d s after %d failures",
                            key, int(self.policy.lock_seconds), src.failures)
        if box is None:
            return None
        before = self._boxes.get(box, FailureState())
        now = max(now, before.last + 1e-6)  # each failure its own instant: it names the event
        self._boxes[box] = self._bump(before, now)
        self._log_lock(box, self._boxes[box], source)
        return Failure(before, now)

    def _log_lock(self, box: MailboxRef, state: FailureState, source: str) -> None:
        if state.failures == self.policy.lock_after:
            log.warning("auth locked: user=%s for %d s after %d failures (last source=%s)",
                        box, int(self.policy.lock_seconds), state.failures, source or "-")

    def _bump(self, state: FailureState | None, now: float) -> FailureState:
        if state is None or now - state.last > self.policy.forget_after:
            return FailureState(1, now)
        return FailureState(state.failures + 1, now)

    def success_soon(self, box: MailboxRef) -> None:
        self._spawn(self.success(box))

    def failure_soon(self, box: MailboxRef, event: Failure) -> None:
        """Write a failure ``note_failure`` counted to the shared state, in the background."""
        self._spawn(self._persist_failure(box, event))

    async def _persist_failure(self, box: MailboxRef, event: Failure) -> None:
        """Read-modify-write, one at a time per mailbox (in the order they happened): the
        newest of the shared state and this node's state before the failure, plus one."""
        if self.shared is None:
            return
        async with self._lock(box):
            if event.at <= self._written.get(box, float("-inf")):
                return  # an earlier write of this node already carried this failure
            shared = await self._read(box)
            base = shared if shared is not None and shared.last >= event.before.last \
                else event.before
            merged = self._bump(base, event.at)
            await self._write(box, merged)
            self._written[box] = event.at
            local = self._boxes.get(box, FailureState())
            if local.last <= event.at:  # no later failure here since: take what is shared
                if merged.failures != local.failures:
                    self._log_lock(box, merged, "")
                self._boxes[box] = merged

    async def success(self, box: MailboxRef) -> None:
        """Clear the count, here and for every node: a state with no failures, stamped now,
        so it wins over the older counts other nodes hold."""
        had = self._boxes.get(box)
        cleared = FailureState(0, max(self.clock(), (had.last if had else 0.0) + 1e-6))
        self._boxes[box] = cleared
        if self.shared is None:
            return
        async with self._lock(box):
            if had is None or not had.failures:
                shared = await self._read(box)
                if shared is None or not shared.failures:
                    return  # nothing to clear anywhere: no write for an ordinary login
            await self._write(box, cleared)

    async def _write(self, box: MailboxRef, state: FailureState | None) -> None:
        if self.shared is None or box in self._unshared_warned:
            return
        try:
            await self.shared.write_lockout(box, state.to_bytes() if state else None)
        except LockoutUnsupported as exc:
            self._warn_unshared(box, str(exc))
        except StoreError as exc:
            log.warning("lockout state of %s not saved, kept on this node: %s", box, exc)

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for background writes (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
