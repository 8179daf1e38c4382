"""The deadline heap and the core's timer pass: the work of a pass is what is due, not what
is alive (counted as heap entries examined, so the test is deterministic)."""

from __future__ import annotations

from imapvm.telephony.sip.core import CoreConfig, SipCore
from imapvm.telephony.sip.events import SubscriptionEnded, SubscriptionStarted
from imapvm.telephony.sip.message import SipRequest, parse_message
from imapvm.telephony.sip.timers import TimerHeap

from .sipmsgs import SOURCE, request

SUB = "Event: message-summary\r\nAccept: application/simple-message-summary"


def test_heap_orders_replaces_and_cancels() -> None:
    heap: TimerHeap[str] = TimerHeap()
    heap.schedule("a", 5.0)
    heap.schedule("b", 3.0)
    heap.schedule("c", 4.0)
    heap.schedule("b", 6.0)  # replaces 3.0: the old entry goes stale
    heap.cancel("c")
    assert heap.next_deadline() == 5.0
    assert heap.pop_due(5.5) == ["a"]
    assert heap.pop_due(5.9) == []
    assert heap.deadline("b") == 6.0
    assert len(heap) == 1
    heap.schedule("b", None)
    assert heap.next_deadline() is None
    assert len(heap) == 0


def test_heap_stays_bounded_under_rescheduling() -> None:
    heap: TimerHeap[int] = TimerHeap()
    for round_ in range(50):
        for key in range(100):
            heap.schedule(key, 1000.0 + round_ + key / 1000)
    assert len(heap) == 100
    assert len(heap._heap) <= 2 * 100 + 64  # stale entries are compacted away
    assert heap.pop_due(2000.0) == list(range(100))


def test_timer_pass_with_many_idle_subscriptions_touches_only_due_entries() -> None:
    core = SipCore(CoreConfig("127.0.0.1", 5070, max_expires=3600))
    n = 1000
    for i in range(n):
        expires = 60 if i == 7 else 3600  # one subscription expires soon, the rest idle
        core.receive(request("SUBSCRIBE", branch=f"z9hG4bK-{i}", call_id=f"c{i}",
                             extra=f"{SUB}\r\nExpires: {expires}"), SOURCE, 0.0)
    started = [e for e in core.take_events() if isinstance(e, SubscriptionStarted)]
    assert len(started) == n
    for event in started:
        core.notify(event.handle, b"Messages-Waiting: no\r\n", 0.0)
    notifies = [m for s in core.take_outgoing()
                if isinstance(m := parse_message(s.data), SipRequest)]
    for i, notify in enumerate(notifies):  # every phone answers its NOTIFY
        ok = (f"SIP/2.0 200 OK\r\nVia: {notify.headers.get('Via')}\r\n"
              f"From: {notify.headers.get('From')}\r\nTo: {notify.headers.get('To')}\r\n"
              f"Call-ID: {notify.call_id}\r\nCSeq: {notify.headers.get('CSeq')}\r\n"
              "Content-Length: 0\r\n\r\n").encode()
        core.receive(ok, SOURCE, 0.01 + i * 1e-6)
    core.handle_timer(40.0)  # Timers J and K end every transaction
    assert not core.transactions.server
    assert not core.transactions.client
    assert len(core.timers) == n  # one expiry per subscription, nothing else armed

    before = core.timers.examined
    assert core.next_deadline() == 60.0
    core.handle_timer(59.0)  # nothing due: nothing examined
    assert core.timers.examined == before
    core.handle_timer(60.0)  # one subscription expires: its entry alone is examined
    assert core.timers.examined - before == 1
    ended = [e for e in core.take_events() if isinstance(e, SubscriptionEnded)]
    assert [e.reason for e in ended] == ["timeout"]
    assert len(core.subscriptions) == n - 1
    assert core.next_deadline() == 60.0 + 0.5  # the final NOTIFY's retransmission (Timer E)
    assert core.timers.examined - before == 1  # found at the top, nothing stale skipped
