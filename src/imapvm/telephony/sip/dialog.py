"""The state of an INVITE dialog we answer, as an explicit state machine (RFC 3261 §12-15).

::

    EARLY --answer--> ANSWERED --ACK--> CONFIRMED --re-INVITE 2xx--> REINVITED --ACK--+
      |                   |                 ^                                           |
      |                   +--hang up-->  HANGING_UP --ACK or give-up--> (BYE) ENDED     |
      |                                     +-------------------------------------------+
      +--reject / redirect / CANCEL / BYE / timeout--> ENDED

While ANSWERED, HANGING_UP or REINVITED the core retransmits its 2xx (``pending_ack``) until
the ACK arrives; a BYE must not overtake that ACK (§15), hence HANGING_UP. Transitions the
driver asks for raise :class:`SipStateError` when the state does not allow them; what a
peer sends never raises (a stray ACK is simply not matched).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import SipStateError
from .kinds import EndReason, SipTransport
from .transaction import Address


class DialogState(Enum):
    EARLY = "early"  # INVITE received, no final response yet
    ANSWERED = "answered"  # our 2xx sent, its ACK awaited
    HANGING_UP = "hanging-up"  # we hung up before that ACK: BYE once it comes (§15)
    CONFIRMED = "confirmed"  # ACK received: media both ways
    REINVITED = "reinvited"  # confirmed; our 2xx to a re-INVITE awaits its ACK
    ENDED = "ended"


AWAITING_ACK = frozenset({DialogState.ANSWERED, DialogState.HANGING_UP, DialogState.REINVITED})


class HangupAction(Enum):
    """What the core must do for a hang-up the driver asked for."""

    REJECT = "reject"  # still ringing: a final non-2xx (480)
    WAIT_FOR_ACK = "wait-for-ack"  # BYE as soon as the ACK for our 2xx arrives
    BYE = "bye"


@dataclass
class PendingAck:
    """A 2xx retransmitted (doubling from T1 up to T2) until its ACK (§13.3.1.4)."""

    data: bytes
    cseq: int
    next: float
    interval: float
    give_up: float

    @property
    def deadline(self) -> float:
        return min(self.next, self.give_up)


@dataclass
class Dialog:
    """Identity, sequence numbers and state of one dialog an INVITE created; we are the UAS.

    ``local`` and ``remote`` are the From/To header values of requests we send in it.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local: str
    remote: str
    remote_target: str
    route_set: list[str]
    source: Address
    transport: SipTransport = "UDP"
    remote_cseq: int = 0
    local_cseq: int = 0
    state: DialogState = DialogState.EARLY
    pending_ack: PendingAck | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def require(self, action: str, *states: DialogState) -> None:
        if self.state not in states:
            raise SipStateError(f"cannot {action} a call that is {self.state.value}")

    # ---- transitions the driver asks for ------------------------------------------------
    def answered(self, pending: PendingAck) -> None:
        self.require("answer", DialogState.EARLY)
        self.state, self.pending_ack = DialogState.ANSWERED, pending

    def hang_up(self) -> HangupAction:
        """Move towards ENDED; the caller sends what the returned action says."""
        if self.state == DialogState.EARLY:
            return HangupAction.REJECT
        if self.state == DialogState.ANSWERED:
            self.state = DialogState.HANGING_UP
            return HangupAction.WAIT_FOR_ACK
        self.require("hang up", DialogState.CONFIRMED, DialogState.REINVITED)
        self.pending_ack = None
        return HangupAction.BYE

    def check_refer(self) -> None:
        self.require("transfer", DialogState.ANSWERED, DialogState.CONFIRMED,
                     DialogState.REINVITED)

    # ---- transitions a peer causes ------------------------------------------------------
    def accepts_reinvite(self) -> bool:
        """A re-INVITE may be answered only in CONFIRMED (otherwise 491 Request Pending)."""
        return self.state == DialogState.CONFIRMED

    def reinvited(self, pending: PendingAck) -> None:
        self.require("answer a re-INVITE in", DialogState.CONFIRMED)
        self.state, self.pending_ack = DialogState.REINVITED, pending

    def acked(self, cseq: int) -> DialogState | None:
        """An ACK with ``cseq`` arrived: the state it ended, or None when it matched nothing
        (a retransmission or a stray)."""
        if self.state not in AWAITING_ACK or self.pending_ack is None:
            return None
        if self.pending_ack.cseq != cseq:
            return None
        before = self.state
        self.pending_ack = None
        if before != DialogState.HANGING_UP:  # HANGING_UP: the core now sends BYE and ends
            self.state = DialogState.CONFIRMED
        return before

    def ack_timed_out(self) -> EndReason:
        """64*T1 without the ACK: the dialog ends with BYE; returns the CallEnded reason."""
        reason: EndReason = ("local-bye" if self.state == DialogState.HANGING_UP
                             else "ack-timeout")
        self.pending_ack = None
        return reason

    def end(self) -> bool:
        """ENDED from any state; False when it already was."""
        if self.state == DialogState.ENDED:
            return False
        self.state, self.pending_ack = DialogState.ENDED, None
        return True
