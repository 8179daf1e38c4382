"""The INVITE dialog state machine, alone and through the core: every state, every
transition, and a ``SipStateError`` (with nothing changed) for each call-control method used
in a state that does not allow it."""

from __future__ import annotations

import pytest

from imapvm.telephony.sip.core import CoreConfig, SipCore
from imapvm.telephony.sip.dialog import Dialog, DialogState, HangupAction, PendingAck
from imapvm.telephony.sip.errors import SipStateError
from imapvm.telephony.sip.events import CallConfirmed, CallEnded, IncomingCall
from imapvm.telephony.sip.message import SipRequest, SipResponse, parse_message
from imapvm.telephony.sip.transaction import TimerConfig

from .sipmsgs import OFFER, SOURCE, invite, request

RTP = ("127.0.0.1", 20000)


def dialog(state: DialogState = DialogState.EARLY) -> Dialog:
    d = Dialog("c", "lt", "rt", "<sip:l>;tag=lt", "<sip:r>;tag=rt", "sip:r@h", [], SOURCE)
    d.state = state
    if state in (DialogState.ANSWERED, DialogState.HANGING_UP, DialogState.REINVITED):
        d.pending_ack = pending(1)
    return d


def pending(cseq: int) -> PendingAck:
    return PendingAck(b"200", cseq, next=0.5, interval=0.5, give_up=32.0)


# ---- the state machine alone ----------------------------------------------------------
def test_answer_then_ack_confirms() -> None:
    d = dialog()
    d.answered(pending(1))
    assert d.state is DialogState.ANSWERED
    assert d.acked(2) is None  # an ACK for another CSeq matches nothing
    assert d.state is DialogState.ANSWERED
    assert d.acked(1) is DialogState.ANSWERED
    assert (d.state, d.pending_ack) == (DialogState.CONFIRMED, None)
    assert d.acked(1) is None  # its retransmission
    assert d.state is DialogState.CONFIRMED


def test_reinvite_waits_for_its_own_ack() -> None:
    d = dialog(DialogState.CONFIRMED)
    assert d.accepts_reinvite()
    d.reinvited(pending(5))
    assert d.state is DialogState.REINVITED
    assert not d.accepts_reinvite()  # a second one meanwhile gets 491
    assert d.acked(5) is DialogState.REINVITED
    assert d.state is DialogState.CONFIRMED


@pytest.mark.parametrize(
    ("state", "action", "after"),
    [
        (DialogState.EARLY, HangupAction.REJECT, DialogState.EARLY),
        (DialogState.ANSWERED, HangupAction.WAIT_FOR_ACK, DialogState.HANGING_UP),
        (DialogState.CONFIRMED, HangupAction.BYE, DialogState.CONFIRMED),
        (DialogState.REINVITED, HangupAction.BYE, DialogState.REINVITED),
    ],
)
def test_hang_up_in_each_state(state: DialogState, action: HangupAction,
                               after: DialogState) -> None:
    d = dialog(state)
    assert d.hang_up() is action
    assert d.state is after


def test_hanging_up_sends_bye_once_acked_or_given_up() -> None:
    d = dialog(DialogState.ANSWERED)
    d.hang_up()
    assert not d.accepts_reinvite()
    assert d.acked(1) is DialogState.HANGING_UP
    d = dialog(DialogState.ANSWERED)
    d.hang_up()
    assert d.ack_timed_out() == "local-bye"
    assert dialog(DialogState.ANSWERED).ack_timed_out() == "ack-timeout"


@pytest.mark.parametrize(
    ("state", "method"),
    [
        (DialogState.ANSWERED, "answer"), (DialogState.CONFIRMED, "answer"),
        (DialogState.ENDED, "answer"), (DialogState.HANGING_UP, "hang_up"),
        (DialogState.ENDED, "hang_up"), (DialogState.EARLY, "check_refer"),
        (DialogState.HANGING_UP, "check_refer"), (DialogState.ENDED, "check_refer"),
        (DialogState.ANSWERED, "reinvited"), (DialogState.EARLY, "reinvited"),
    ],
)
def test_wrong_state_raises_and_changes_nothing(state: DialogState, method: str) -> None:
    d = dialog(state)
    before = (d.state, d.pending_ack)
    call = {"answer": lambda: d.answered(pending(9)), "reinvited": lambda: d.reinvited(pending(9)),
            "hang_up": d.hang_up, "check_refer": d.check_refer}[method]
    with pytest.raises(SipStateError, match=state.value):
        call()
    assert (d.state, d.pending_ack) == before


def test_end_is_idempotent() -> None:
    d = dialog(DialogState.CONFIRMED)
    assert d.end()
    assert not d.end()
    assert d.state is DialogState.ENDED


# ---- through the core -----------------------------------------------------------------
def make_core() -> SipCore:
    return SipCore(CoreConfig("127.0.0.1", 5070, timers=TimerConfig(0.5, 4.0, 5.0)))


def sent(core: SipCore) -> list[SipRequest | SipResponse]:
    return [m for s in core.take_outgoing() if (m := parse_message(s.data)) is not None]


def incoming(core: SipCore) -> str:
    core.receive(invite(), SOURCE, 0.0)
    sent(core)
    (event,) = core.take_events()
    assert isinstance(event, IncomingCall)
    return event.handle


def test_core_walks_the_dialog_states() -> None:
    core = make_core()
    handle = incoming(core)
    assert core.call_state(handle) is DialogState.EARLY
    core.ring(handle, 0.0)
    core.answer(handle, RTP, 0.0)
    (_ringing, ok) = sent(core)
    assert isinstance(ok, SipResponse)
    assert ok.status == 200
    tag = ok.to_addr.tag
    assert core.call_state(handle) is DialogState.ANSWERED
    core.receive(request("ACK", to_tag=tag), SOURCE, 0.1)
    assert core.take_events() == [CallConfirmed(handle)]
    assert core.call_state(handle) is DialogState.CONFIRMED
    core.receive(invite(to_tag=tag, cseq=2, branch="z9hG4bK-re", body=OFFER), SOURCE, 1.0)
    assert [m.status for m in sent(core) if isinstance(m, SipResponse)] == [200]
    assert core.call_state(handle) is DialogState.REINVITED
    core.receive(invite(to_tag=tag, cseq=3, branch="z9hG4bK-re2"), SOURCE, 1.1)
    assert [m.status for m in sent(core) if isinstance(m, SipResponse)] == [491]
    core.receive(request("ACK", to_tag=tag, cseq=2), SOURCE, 1.2)
    assert core.call_state(handle) is DialogState.CONFIRMED
    core.hangup(handle, 2.0)
    (bye,) = sent(core)
    assert isinstance(bye, SipRequest)
    assert bye.method == "BYE"
    assert core.call_state(handle) is None
    assert core.take_events()[-1] == CallEnded(handle, "local-bye")


def test_hangup_before_ack_waits_for_it() -> None:
    core = make_core()
    handle = incoming(core)
    core.answer(handle, RTP, 0.0)
    (ok,) = sent(core)
    core.hangup(handle, 0.1)
    assert sent(core) == []  # no BYE overtaking the ACK
    assert core.call_state(handle) is DialogState.HANGING_UP
    with pytest.raises(SipStateError, match="hanging-up"):
        core.hangup(handle, 0.2)
    core.receive(request("ACK", to_tag=ok.to_addr.tag), SOURCE, 0.3)
    (bye,) = sent(core)
    assert isinstance(bye, SipRequest)
    assert bye.method == "BYE"
    assert core.take_events() == [CallEnded(handle, "local-bye")]


def test_call_control_on_an_ended_or_unknown_call_raises() -> None:
    core = make_core()
    handle = incoming(core)
    core.reject(handle, 486, 0.0)
    sent(core)
    core.take_events()
    for name, args in [("ring", ()), ("answer", (RTP,)), ("reject", (486,)),
                       ("redirect", ("sip:x@h",)), ("refer", ("sip:x@h",)), ("hangup", ())]:
        with pytest.raises(SipStateError, match="no call"):
            getattr(core, name)(handle, *args, 1.0)
    with pytest.raises(SipStateError, match="ended"):
        core.notify("no-such-subscription", b"", 1.0)
    assert sent(core) == []
    assert core.take_events() == []


def test_call_control_in_the_wrong_state_raises_and_sends_nothing() -> None:
    core = make_core()
    handle = incoming(core)
    with pytest.raises(SipStateError, match="early"):
        core.refer(handle, "sip:x@h", 0.0)
    core.answer(handle, RTP, 0.0)
    sent(core)
    for name, args in [("ring", ()), ("answer", (RTP,)), ("reject", (486,)),
                       ("redirect", ("sip:x@h",))]:
        with pytest.raises(SipStateError, match="answered"):
            getattr(core, name)(handle, *args, 0.1)
    assert sent(core) == []
    assert core.take_events() == []
    assert core.call_state(handle) is DialogState.ANSWERED
