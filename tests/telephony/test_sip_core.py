"""The UAS core driven with raw datagrams and a fake clock: transactions, dialogs, timers."""

from __future__ import annotations

import pytest

from imapvm.telephony.sip.core import CoreConfig, SipCore, parse_dtmf_info
from imapvm.telephony.sip.errors import SipStateError
from imapvm.telephony.sip.events import (
    CallConfirmed,
    CallEnded,
    DtmfReceived,
    IncomingCall,
    MediaUpdated,
)
from imapvm.telephony.sip.message import SipRequest, SipResponse, parse_message
from imapvm.telephony.sip.transaction import TimerConfig

from .sipmsgs import OFFER, SOURCE, invite, request

RTP = ("127.0.0.1", 20000)


def make_core(**kw: object) -> SipCore:
    return SipCore(CoreConfig("127.0.0.1", 5070, timers=TimerConfig(0.5, 4.0, 5.0), **kw))  # type: ignore[arg-type]


def responses(core: SipCore) -> list[SipResponse]:
    out = []
    for send in core.take_outgoing():
        msg = parse_message(send.data)
        assert isinstance(msg, SipResponse)
        out.append(msg)
    return out


def sent(core: SipCore) -> list[SipRequest | SipResponse]:
    return [m for s in core.take_outgoing() if (m := parse_message(s.data)) is not None]


def start_call(core: SipCore, now: float = 0.0) -> str:
    core.receive(invite(), SOURCE, now)
    assert [r.status for r in responses(core)] == [100]
    events = core.take_events()
    assert len(events) == 1
    assert isinstance(events[0], IncomingCall)
    return events[0].handle


def answered_call(core: SipCore) -> tuple[str, str]:
    handle = start_call(core)
    core.answer(handle, RTP, 0.0)
    (ok,) = responses(core)
    tag = ok.to_addr.tag
    assert tag
    return handle, tag


def test_invite_gets_100_then_event_with_negotiated_media() -> None:
    core = make_core()
    core.receive(invite(), SOURCE, 0.0)
    (trying,) = responses(core)
    assert trying.status == 100
    assert trying.to_addr.tag is None
    (event,) = core.take_events()
    assert isinstance(event, IncomingCall)
    assert event.media is not None
    assert (event.media.encoding, event.media.payload_type) == ("PCMA", 8)  # offerer's order
    assert event.media.dtmf_payload_type == 101
    assert (event.media.remote_host, event.media.remote_port) == ("10.0.0.1", 4000)


def test_responses_carry_received_and_rport_and_go_to_the_source() -> None:
    core = make_core()
    nat_source = ("192.0.2.7", 40000)
    core.receive(invite(), nat_source, 0.0)
    (send,) = core.take_outgoing()
    assert send.address == nat_source
    assert b"rport=40000;received=192.0.2.7" in send.data
    core.receive(request("OPTIONS", branch="z9hG4bK-o", rport=False), nat_source, 0.0)
    (send,) = core.take_outgoing()
    assert send.address == ("192.0.2.7", 5062)  # no rport: the sent-by port (§18.2.2)


def test_answer_sends_200_with_sdp_answer_and_retransmits_until_ack() -> None:
    core = make_core()
    handle = start_call(core)
    core.answer(handle, RTP, 0.0)
    (ok,) = responses(core)
    assert ok.status == 200
    assert b"m=audio 20000 RTP/AVP 8 101" in ok.body
    assert ok.headers.get("Contact") == "<sip:imapvm@127.0.0.1:5070>"
    times = []
    now = 0.0
    while (deadline := core.next_deadline()) is not None and deadline < 3.9:
        now = deadline
        core.handle_timer(now)
        if any(r.status == 200 for r in responses(core)):
            times.append(now)
    assert times[:3] == [0.5, 1.5, 3.5]  # T1, then doubling
    tag = ok.to_addr.tag
    core.receive(request("ACK", branch="z9hG4bK-ack", to_tag=tag), SOURCE, now)
    assert [type(e) for e in core.take_events()] == [CallConfirmed]
    core.handle_timer(now + 8)
    assert not [r for r in responses(core) if r.status == 200]


def test_invite_retransmission_is_absorbed_not_a_new_call() -> None:
    core = make_core()
    handle = start_call(core)
    core.receive(invite(), SOURCE, 0.1)
    assert [r.status for r in responses(core)] == [100]
    assert core.take_events() == []
    core.answer(handle, RTP, 0.2)
    responses(core)
    core.receive(invite(), SOURCE, 0.3)  # after 2xx: Accepted state absorbs silently
    assert responses(core) == []
    assert core.take_events() == []


def test_no_ack_ends_the_call_with_bye() -> None:
    core = make_core()
    handle = start_call(core)
    core.answer(handle, RTP, 0.0)
    core.take_outgoing()
    now = 0.0
    while now < 40:
        now = core.next_deadline() or 100.0
        core.handle_timer(now)
        events = core.take_events()
        if events:
            assert events == [CallEnded(handle, "ack-timeout")]
            break
    assert now == pytest.approx(32.0)
    byes = [m for m in sent(core) if isinstance(m, SipRequest)]
    assert byes[-1].method == "BYE"


def test_cancel_before_answer_gives_200_and_487() -> None:
    core = make_core()
    handle = start_call(core)
    core.receive(request("CANCEL", cseq_method="CANCEL"), SOURCE, 0.5)
    statuses = [(r.status, r.cseq[1]) for r in responses(core)]
    assert statuses == [(200, "CANCEL"), (487, "INVITE")]
    assert core.take_events() == [CallEnded(handle, "cancelled")]
    with pytest.raises(SipStateError):
        core.answer(handle, RTP, 0.6)  # too late: the caller cancelled
    # 487 is retransmitted (Timer G) until the ACK for it arrives on the INVITE's branch
    core.handle_timer(1.0)
    assert [r.status for r in responses(core)] == [487]
    core.receive(request("ACK", to_tag="x"), SOURCE, 1.1)
    core.handle_timer(2.0)
    assert responses(core) == []


def test_cancel_for_unknown_transaction_is_481() -> None:
    core = make_core()
    core.receive(request("CANCEL", branch="z9hG4bK-nothing"), SOURCE, 0.0)
    assert [r.status for r in responses(core)] == [481]


def test_bye_from_caller_ends_call_and_retransmission_is_absorbed() -> None:
    core = make_core()
    handle, tag = answered_call(core)
    core.receive(request("ACK", branch="z9hG4bK-a", to_tag=tag), SOURCE, 0.1)
    core.take_events()
    bye = request("BYE", branch="z9hG4bK-b", to_tag=tag, cseq=2)
    core.receive(bye, SOURCE, 1.0)
    assert [r.status for r in responses(core)] == [200]
    assert core.take_events() == [CallEnded(handle, "remote-bye")]
    core.receive(bye, SOURCE, 1.5)
    assert [r.status for r in responses(core)] == [200]  # same transaction, no 481


def test_hangup_sends_bye_in_dialog_and_retransmits_until_answered() -> None:
    core = make_core()
    handle, tag = answered_call(core)
    core.receive(request("ACK", branch="z9hG4bK-a", to_tag=tag), SOURCE, 0.1)
    core.take_events()
    core.hangup(handle, 1.0)
    (send,) = core.take_outgoing()
    bye = parse_message(send.data)
    assert isinstance(bye, SipRequest)
    assert send.address == ("10.0.0.1", 5062)  # the Contact
    assert bye.method == "BYE"
    assert bye.uri == "sip:alice@10.0.0.1:5062"
    assert bye.from_addr.tag == tag
    assert bye.to_addr.tag == "ftag"
    assert bye.cseq[1] == "BYE"
    assert core.take_events() == [CallEnded(handle, "local-bye")]
    core.handle_timer(1.5)
    assert [m.method for m in sent(core) if isinstance(m, SipRequest)] == ["BYE"]
    ok = (
        f"SIP/2.0 200 OK\r\nVia: {bye.headers.get('Via')}\r\nCSeq: {bye.headers.get('CSeq')}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    core.receive(ok, SOURCE, 1.6)
    core.handle_timer(3.0)
    assert sent(core) == []


def test_record_route_becomes_route_set() -> None:
    core = make_core()
    rr = "Record-Route: <sip:proxy1.example;lr>, <sip:10.9.9.9;lr>"
    core.receive(invite(extra=rr), SOURCE, 0.0)
    core.take_outgoing()
    (event,) = core.take_events()
    assert isinstance(event, IncomingCall)
    core.answer(event.handle, RTP, 0.0)
    (ok,) = responses(core)
    assert ok.headers.get_all("Record-Route") == ["<sip:proxy1.example;lr>", "<sip:10.9.9.9;lr>"]
    core.receive(request("ACK", branch="z9hG4bK-a", to_tag=ok.to_addr.tag), SOURCE, 0.05)
    core.hangup(event.handle, 0.1)
    (bye,) = [m for m in sent(core) if isinstance(m, SipRequest)]
    assert bye.uri == "sip:alice@10.0.0.1:5062"
    assert bye.headers.get_all("Route") == ["<sip:proxy1.example;lr>", "<sip:10.9.9.9;lr>"]


@pytest.mark.parametrize("method", ["BYE", "INFO", "UPDATE", "INVITE"])
def test_unknown_dialog_is_481(method: str) -> None:
    core = make_core()
    core.receive(request(method, to_tag="nope", branch=f"z9hG4bK-{method}"), SOURCE, 0.0)
    assert [r.status for r in responses(core)] == [481]


def test_options_register_and_unknown_method() -> None:
    core = make_core()
    core.receive(request("OPTIONS", branch="z9hG4bK-1"), SOURCE, 0.0)
    core.receive(request("FOO", branch="z9hG4bK-3"), SOURCE, 0.0)
    statuses = responses(core)
    assert [r.status for r in statuses] == [200, 501]
    assert "INVITE" in (statuses[0].headers.get("Allow") or "")
    assert "REGISTER" in statuses[0].headers.get_all("Allow")


def test_register_is_answered_after_the_delay_with_the_contact() -> None:
    core = make_core()
    contact = "<sip:alice@10.0.0.1:5062>"  # what request() puts in Contact
    core.receive(request("REGISTER", branch="z9hG4bK-2", extra="Expires: 7200\r\n"),
                 SOURCE, 0.0)
    assert responses(core) == []  # held back (baresip 1.0.0 workaround)
    deadline = core.next_deadline()
    assert deadline is not None
    assert deadline == pytest.approx(0.2)
    core.handle_timer(0.2)
    (ok,) = responses(core)
    assert ok.status == 200
    assert ok.headers.get("Contact") == f"{contact};expires=3600"  # bounded by max_expires
    assert ok.headers.get("Expires") == "3600"


def test_require_unknown_extension_is_420() -> None:
    core = make_core()
    core.receive(invite(extra="Require: 100rel, foo"), SOURCE, 0.0)
    (resp,) = responses(core)
    assert resp.status == 420
    assert resp.headers.get_all("Unsupported") == ["100rel", "foo"]


def test_no_common_codec_is_488_and_no_sdp_means_we_offer() -> None:
    core = make_core()
    g729 = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 18")
    core.receive(invite(body=g729), SOURCE, 0.0)
    assert [r.status for r in responses(core)] == [100, 488]
    core.receive(invite(body="", branch="z9hG4bK-2", call_id="c2"), SOURCE, 0.0)
    core.take_outgoing()
    (event,) = core.take_events()
    assert isinstance(event, IncomingCall)
    assert event.media is None
    core.answer(event.handle, RTP, 0.0)
    (ok,) = responses(core)
    assert b"RTP/AVP 9 0 8 101" in ok.body
    answer = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 0 101")
    tag = ok.to_addr.tag
    core.receive(request("ACK", branch="z9hG4bK-3", call_id="c2", to_tag=tag, body=answer),
                 SOURCE, 0.1)
    kinds = core.take_events()
    assert isinstance(kinds[0], MediaUpdated)
    assert kinds[0].media.encoding == "PCMU"
    assert isinstance(kinds[1], CallConfirmed)


def test_reinvite_hold_is_answered_recvonly() -> None:
    core = make_core()
    _, tag = answered_call(core)
    core.receive(request("ACK", branch="z9hG4bK-a", to_tag=tag), SOURCE, 0.1)
    core.take_events()
    hold = OFFER.replace("a=sendrecv", "a=sendonly")
    core.receive(invite(branch="z9hG4bK-re", to_tag=tag, cseq=2, body=hold), SOURCE, 1.0)
    statuses = responses(core)
    assert statuses[-1].status == 200
    assert b"a=recvonly" in statuses[-1].body
    assert b"o=imapvm" in statuses[-1].body
    (event,) = core.take_events()
    assert isinstance(event, MediaUpdated)
    assert event.media.on_hold
    core.receive(request("ACK", branch="z9hG4bK-a2", to_tag=tag, cseq=2), SOURCE, 1.1)
    core.handle_timer(5.0)
    assert responses(core) == []


def test_info_dtmf_and_out_of_order_cseq() -> None:
    core = make_core()
    handle, tag = answered_call(core)
    info = request("INFO", branch="z9hG4bK-i", to_tag=tag, cseq=5,
                   body="Signal=5\r\nDuration=160\r\n", content_type="application/dtmf-relay")
    core.receive(info, SOURCE, 0.2)
    assert [r.status for r in responses(core)] == [200]
    assert core.take_events() == [DtmfReceived(handle, "5", 160)]
    old = request("INFO", branch="z9hG4bK-j", to_tag=tag, cseq=3, body="7",
                  content_type="application/dtmf")
    core.receive(old, SOURCE, 0.3)
    assert [r.status for r in responses(core)] == [500]


def test_session_timer_is_tolerated() -> None:
    core = make_core()
    core.receive(invite(extra="Session-Expires: 1800\r\nSupported: timer"), SOURCE, 0.0)
    core.take_outgoing()
    (event,) = core.take_events()
    assert isinstance(event, IncomingCall)
    core.answer(event.handle, RTP, 0.0)
    (ok,) = responses(core)
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert ok.headers.get("Require") == "timer"


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/dtmf-relay", "Signal=#\r\nDuration=100", ("#", 100)),
        ("application/dtmf-relay", "Signal=11\r\n", ("#", 250)),
        ("application/dtmf", "*", ("*", 250)),
        ("application/dtmf", "x", None),
        ("text/plain", "1", None),
    ],
)
def test_parse_dtmf_info(ctype: str, body: str, expected: tuple[str, int] | None) -> None:
    assert parse_dtmf_info(ctype, body.encode()) == expected


def test_malformed_requests_get_400_or_are_dropped() -> None:
    core = make_core()
    missing_cseq = invite().replace(b"CSeq: 1 INVITE\r\n", b"")
    core.receive(missing_cseq, SOURCE, 0.0)  # nothing to build a response from: dropped
    core.receive(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: x"), SOURCE, 0.0)
    core.receive(b"\x00\x01garbage", SOURCE, 0.0)
    core.receive(invite().replace(b"sip:1234@127.0.0.1 SIP", b"http://x SIP", 1), SOURCE, 0.0)
    assert [r.status for r in responses(core)] == [400, 416]
    assert core.take_events() == []
    core.receive(request("ACK", to_tag="x").replace(b"Call-ID", b"Xall-ID"), SOURCE, 0.0)
    assert core.take_outgoing() == []  # never answer an ACK


def test_untrusted_source_is_403() -> None:
    import ipaddress

    core = make_core(trusted=(ipaddress.ip_network("127.0.0.0/8"),))
    core.receive(invite(), SOURCE, 0.0)
    assert [r.status for r in responses(core)] == [403]
    core.receive(invite(), ("127.0.0.1", 5062), 0.0)
    assert [r.status for r in responses(core)] == [100]


def test_reject_busy() -> None:
    core = make_core()
    handle = start_call(core)
    core.reject(handle, 486, 0.1)
    (busy,) = responses(core)
    assert busy.status == 486
    assert busy.to_addr.tag
    assert core.take_events() == [CallEnded(handle, "rejected")]


def test_rate_limit_drops_floods_per_source_but_not_dialogs() -> None:
    core = make_core(rate_limit=(1.0, 3))
    for i in range(6):
        core.receive(request("OPTIONS", branch=f"z9hG4bK-f{i}"), SOURCE, 0.0)
    assert [r.status for r in responses(core)] == [200, 200, 200]
    assert core.stats["rate_limited"] == 3
    core.receive(request("OPTIONS", branch="z9hG4bK-other"), ("10.0.0.2", 5060), 0.0)
    assert [r.status for r in responses(core)] == [200]  # another source is unaffected
    core.receive(request("OPTIONS", branch="z9hG4bK-f0"), SOURCE, 0.1)
    assert [r.status for r in responses(core)] == [200]  # a retransmission is still answered
    core.receive(request("OPTIONS", branch="z9hG4bK-later"), SOURCE, 1.5)
    assert [r.status for r in responses(core)] == [200]  # the bucket refilled


def test_rate_limit_spares_trusted_sources_and_limits_403s() -> None:
    import ipaddress

    core = make_core(rate_limit=(1.0, 2), trusted=(ipaddress.ip_network("10.0.0.0/24"),))
    for i in range(5):
        core.receive(request("OPTIONS", branch=f"z9hG4bK-t{i}"), SOURCE, 0.0)
        core.receive(request("OPTIONS", branch=f"z9hG4bK-u{i}"), ("192.0.2.1", 5060), 0.0)
    assert [r.status for r in responses(core)] == [200, 403, 200, 403, 200, 200, 200]


def test_hangup_before_ack_waits_for_the_ack() -> None:
    core = make_core()
    handle, tag = answered_call(core)
    core.hangup(handle, 0.1)
    assert core.take_outgoing() == []
    assert core.take_events() == []
    core.receive(request("ACK", branch="z9hG4bK-a", to_tag=tag), SOURCE, 0.2)
    (bye,) = [m for m in sent(core) if isinstance(m, SipRequest)]
    assert bye.method == "BYE"
    assert core.take_events() == [CallEnded(handle, "local-bye")]
