"""RFC 3261 §17 transactions over an unreliable transport, as clock-free state machines.

Each transaction keeps absolute deadlines (seconds on the caller's clock) and exposes
``deadline()`` and ``on_timer(now)``; the core asks for the earliest deadline of all of them and
the asyncio layer sleeps until then. Sending goes through the returned ``Send`` actions, so a
transaction never touches a socket.

INVITE server transactions follow RFC 6026: a 2xx moves them to *Accepted*, where they absorb
retransmitted INVITEs for 64*T1 while the UA core (not the transaction) retransmits the 2xx
until the ACK arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .kinds import SipTransport

Address = tuple[str, int]


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 Table 4 values (seconds); tests shrink them to run fast."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


@dataclass(frozen=True)
class Send:
    data: bytes
    address: Address
    transport: SipTransport = "UDP"  # "TCP": send on the connection to ``address``


class State(Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass
class _Transaction:
    key: tuple[str, ...]
    timers: TimerConfig
    state: State
    address: Address  # where responses (server) or requests (client) go
    deadlines: dict[str, float] = field(default_factory=dict)
    transport: SipTransport = "UDP"

    @property
    def reliable(self) -> bool:
        """Over TCP the transport retransmits: Timers E and G are off, I, J and K are 0."""
        return self.transport != "UDP"

    def _send(self, data: bytes) -> Send:
        return Send(data, self.address, self.transport)

    def deadline(self) -> float | None:
        return min(self.deadlines.values()) if self.deadlines else None

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self.deadlines.clear()


@dataclass
class InviteServerTransaction(_Transaction):
    """Proceeding → (2xx) Accepted | (≥300) Completed → (ACK) Confirmed → Terminated."""

    last_response: bytes | None = None
    timed_out: bool = False  # Timer H fired: the non-2xx final was never acknowledged
    _g_interval: float = 0.0

    def respond(self, data: bytes, status: int, now: float) -> list[Send]:
        if self.state not in (State.PROCEEDING, State.TRYING):
            return []
        self.last_response = data
        if status < 200:
            self.state = State.PROCEEDING
        elif status < 300:
            self.state = State.ACCEPTED
            self.deadlines = {"L": now + 64 * self.timers.t1}
        else:
            self.state = State.COMPLETED
            self._g_interval = self.timers.t1
            self.deadlines = {"H": now + 64 * self.timers.t1}
            if not self.reliable:
                self.deadlines["G"] = now + self.timers.t1
        return [self._send(data)]

    def on_request_retransmission(self) -> list[Send]:
        """A retransmitted INVITE: resend the last provisional or non-2xx final response."""
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response:
            return [self._send(self.last_response)]
        return []

    def on_ack(self, now: float) -> bool:
        """ACK for a non-2xx final; True when it belonged here."""
        if self.state == State.COMPLETED:
            self.state = State.CONFIRMED
            self.deadlines = {"I": now + (0 if self.reliable else self.timers.t4)}
            return True
        return self.state == State.CONFIRMED

    def on_timer(self, now: float) -> list[Send]:
        out: list[Send] = []
        d = self.deadlines
        if "H" in d and now >= d["H"]:
            self.timed_out = True
            self._terminate()
            return out
        if "G" in d and now >= d["G"] and self.last_response:
            out.append(self._send(self.last_response))
            self._g_interval = min(2 * self._g_interval, self.timers.t2)
            d["G"] = now + self._g_interval
        for name in ("I", "L"):
            if name in d and now >= d[name]:
                self._terminate()
        return out


@dataclass
class NonInviteServerTransaction(_Transaction):
    """Trying → Proceeding → Completed (absorbs retransmissions for Timer J) → Terminated."""

    last_response: bytes | None = None

    def respond(self, data: bytes, status: int, now: float) -> list[Send]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        self.last_response = data
        if status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self.deadlines = {"J": now + (0 if self.reliable else 64 * self.timers.t1)}
        return [self._send(data)]

    def on_request_retransmission(self) -> list[Send]:
        if self.last_response is not None:
            return [self._send(self.last_response)]
        return []

    def on_timer(self, now: float) -> list[Send]:
        if "J" in self.deadlines and now >= self.deadlines["J"]:
            self._terminate()
        return []


@dataclass
class NonInviteClientTransaction(_Transaction):
    """Our BYE or NOTIFY: Timer E retransmits, F gives up, K absorbs late retransmissions."""

    request: bytes = b""
    final_status: int | None = None
    timed_out: bool = False
    _e_interval: float = 0.0

    def start(self, now: float) -> list[Send]:
        self._e_interval = self.timers.t1
        self.deadlines = {"F": now + 64 * self.timers.t1}
        if not self.reliable:
            self.deadlines["E"] = now + self.timers.t1
        return [self._send(self.request)]

    def on_response(self, status: int, now: float) -> bool:
        """True when this response is the final one (first time only)."""
        if self.state in (State.COMPLETED, State.TERMINATED):
            return False
        if status < 200:
            self.state = State.PROCEEDING
            return False
        self.final_status = status
        self.state = State.COMPLETED
        self.deadlines = {"K": now + (0 if self.reliable else self.timers.t4)}
        return True

    def on_timer(self, now: float) -> list[Send]:
        d = self.deadlines
        if "F" in d and now >= d["F"]:
            self.timed_out = True
            self._terminate()
            return []
        if "K" in d and now >= d["K"]:
            self._terminate()
            return []
        if "E" in d and now >= d["E"]:
            if self.state == State.PROCEEDING:
                self._e_interval = self.timers.t2
            else:
                self._e_interval = min(2 * self._e_interval, self.timers.t2)
            d["E"] = now + self._e_interval
            return [self._send(self.request)]
        return []


ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
