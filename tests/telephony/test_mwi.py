"""message-summary subscriptions (RFC 6665) and NOTIFY bodies (RFC 3842)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from imapvm.telephony.message_summary import MessageSummary, parse_message_summary
from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.sip.core import CoreConfig, SipCore
from imapvm.telephony.sip.events import (
    SubscriptionEnded,
    SubscriptionRefreshed,
    SubscriptionStarted,
)
from imapvm.telephony.sip.message import SipRequest, SipResponse, parse_message

from .pyphone import PyPhone
from .sipmsgs import SOURCE, request

SUB = "Event: message-summary\r\nAccept: application/simple-message-summary"


def subscribe(expires: int = 600, **kw: object) -> bytes:
    return request("SUBSCRIBE", extra=f"{SUB}\r\nExpires: {expires}", **kw)  # type: ignore[arg-type]


def split(core: SipCore) -> tuple[list[SipResponse], list[SipRequest]]:
    msgs = [parse_message(s.data) for s in core.take_outgoing()]
    return ([m for m in msgs if isinstance(m, SipResponse)],
            [m for m in msgs if isinstance(m, SipRequest)])


def test_summary_body_round_trip() -> None:
    body = MessageSummary(2, 8, 1, 2).render("sip:1234@vm.example")
    assert body == (b"Messages-Waiting: yes\r\nMessage-Account: sip:1234@vm.example\r\n"
                    b"Voice-Message: 2/8 (1/2)\r\n")
    assert parse_message_summary(body) == (True, "sip:1234@vm.example", MessageSummary(2, 8, 1, 2))
    assert parse_message_summary(MessageSummary(0, 3).render())[0] is False


def test_subscribe_notify_refresh_unsubscribe() -> None:
    core = SipCore(CoreConfig("127.0.0.1", 5070))
    core.receive(subscribe(), SOURCE, 0.0)
    (ok,), _ = split(core)
    assert (ok.status, ok.headers.get("Expires")) == (200, "600")
    tag = ok.to_addr.tag
    (started,) = core.take_events()
    assert isinstance(started, SubscriptionStarted)
    assert (started.mailbox, started.account) == ("1234", "sip:1234@127.0.0.1")
    core.notify(started.handle, MessageSummary(1, 0).render(started.account), 1.0)
    _, (notify,) = split(core)
    assert notify.method == "NOTIFY"
    assert notify.uri == "sip:alice@10.0.0.1:5062"
    assert notify.headers.get("Event") == "message-summary"
    assert notify.headers.get("Subscription-State") == "active;expires=599"
    assert notify.content_type == "application/simple-message-summary"
    assert notify.to_addr.tag == "ftag"
    assert notify.from_addr.tag == tag
    # refresh in the dialog, then unsubscribe with Expires: 0
    core.receive(subscribe(300, to_tag=tag, cseq=2, branch="z9hG4bK-r"), SOURCE, 2.0)
    (ok2,), _ = split(core)
    assert (ok2.status, ok2.headers.get("Expires")) == (200, "300")
    assert core.take_events() == [SubscriptionRefreshed(started.handle)]
    core.receive(subscribe(0, to_tag=tag, cseq=3, branch="z9hG4bK-u"), SOURCE, 3.0)
    split(core)
    core.notify(started.handle, MessageSummary(1, 0).render(), 3.0)
    _, (last,) = split(core)
    assert last.headers.get("Subscription-State") == "terminated"
    assert core.subscriptions == {}
    assert isinstance(core.take_events()[-1], SubscriptionEnded)


def test_subscription_expires_with_final_notify() -> None:
    core = SipCore(CoreConfig("127.0.0.1", 5070))
    core.receive(subscribe(60), SOURCE, 0.0)
    split(core)
    (started,) = core.take_events()
    assert isinstance(started, SubscriptionStarted)
    core.handle_timer(32.0)  # Timer J ends the SUBSCRIBE server transaction
    assert core.next_deadline() == pytest.approx(60.0)
    core.handle_timer(60.0)
    _, (notify,) = split(core)
    assert notify.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert core.take_events() == [SubscriptionEnded(started.handle, "timeout")]


def test_subscriber_gone_481_drops_the_subscription() -> None:
    core = SipCore(CoreConfig("127.0.0.1", 5070))
    core.receive(subscribe(), SOURCE, 0.0)
    split(core)
    (started,) = core.take_events()
    assert isinstance(started, SubscriptionStarted)
    core.notify(started.handle, b"Messages-Waiting: no\r\n", 0.0)
    _, (notify,) = split(core)
    resp = (f"SIP/2.0 481 Gone\r\nVia: {notify.headers.get('Via')}\r\n"
            f"CSeq: {notify.headers.get('CSeq')}\r\n\r\n").encode()
    core.receive(resp, SOURCE, 0.1)
    assert core.subscriptions == {}
    assert core.take_events() == [SubscriptionEnded(started.handle, "notify-481")]


@pytest.mark.parametrize(
    ("extra", "status"),
    [("Event: presence\r\nExpires: 600", 489), (f"{SUB}\r\nExpires: 5", 423)],
)
def test_bad_event_and_too_brief(extra: str, status: int) -> None:
    core = SipCore(CoreConfig("127.0.0.1", 5070))
    core.receive(request("SUBSCRIBE", extra=extra), SOURCE, 0.0)
    (resp,), _ = split(core)
    assert resp.status == status
    assert core.subscriptions == {}


async def test_server_notifies_subscribers_and_configured_phones() -> None:
    async def lookup(mailbox: str) -> MessageSummary:
        return MessageSummary(3, 1) if mailbox == "1234" else MessageSummary(0, 0)

    async def no_calls(channel: object) -> None:
        raise AssertionError("no call expected")

    listener = PyPhone("127.0.0.1", ("127.0.0.1", 9))
    await listener.open()
    _, port = listener.sip.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
    # a host name: resolved once at start
    settings = SipSettings(port=0, mwi_unsolicited={"1234": (f"sip:1234@localhost:{port}",)})
    async with SipServer(settings, no_calls, mwi_lookup=lookup) as server:
        phone = PyPhone("127.0.0.1", server.address)
        await phone.open()
        try:
            uri = f"sip:1234@127.0.0.1:{server.address[1]}"
            phone.send_request("SUBSCRIBE", uri, extra=f"{SUB}\r\nExpires: 600\r\n", cseq=1)
            ok = await phone.final_response()
            assert ok.status == 200
            first = await phone.next_sip()
            assert isinstance(first, SipRequest)
            assert parse_message_summary(first.body)[2] == MessageSummary(3, 1)
            assert server.publish_mwi("1234", MessageSummary(0, 4)) == 2
            second = await phone.next_sip()
            assert isinstance(second, SipRequest)
            assert parse_message_summary(second.body)[:1] == (False,)
            unsolicited = await listener.next_sip()
            assert isinstance(unsolicited, SipRequest)
            assert unsolicited.method == "NOTIFY"
            assert parse_message_summary(unsolicited.body)[2] == MessageSummary(0, 4)
            await asyncio.sleep(0)
        finally:
            phone.close()
            listener.close()


@contextlib.asynccontextmanager
async def presence_and_server() -> AsyncIterator[tuple[PyPhone, SipServer]]:
    """A presence server (a PyPhone that answers PUBLISH by hand) and a SipServer that
    publishes message-summary to it for the domain vm.example."""
    async def no_calls(channel: object) -> None:
        raise AssertionError("no call expected")

    presence = PyPhone("127.0.0.1", ("127.0.0.1", 9))
    await presence.open()
    host, port = presence.sip.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
    settings = SipSettings(port=0, mwi_presence_server=f"sip:{host}:{port}",
                           mwi_publish_domain="vm.example")
    async with SipServer(settings, no_calls) as server:
        presence.server = server.address  # responses go back to the server
        try:
            yield presence, server
        finally:
            presence.close()


async def test_publish_to_presence_server_refresh_and_412() -> None:
    async with presence_and_server() as (presence, server):
        assert server.publish_mwi("1234", MessageSummary(2, 1)) == 1
        first = await presence.next_sip()
        assert isinstance(first, SipRequest)
        assert (first.method, first.uri) == ("PUBLISH", "sip:1234@vm.example")
        assert first.headers.get("Event") == "message-summary"
        assert "SIP-If-Match" not in first.headers
        assert parse_message_summary(first.body)[2] == MessageSummary(2, 1)
        presence.respond(first, 200, extra=("SIP-ETag: e1", "Expires: 1"))
        refresh = await presence.next_sip(within=3)  # refreshed before it expires
        assert isinstance(refresh, SipRequest)
        assert refresh.headers.get("SIP-If-Match") == "e1"
        assert refresh.body == b""
        presence.respond(refresh, 412, "Conditional Request Failed")
        again = await presence.next_sip()
        assert isinstance(again, SipRequest)
        assert "SIP-If-Match" not in again.headers
        assert parse_message_summary(again.body)[2] == MessageSummary(2, 1)
        presence.respond(again, 200, extra=("SIP-ETag: e2", "Expires: 3600"))
        # published at once: whether or not the 200 has arrived yet, the change goes with the
        # tag it brings (one PUBLISH at a time, see the next test)
        server.publish_mwi("1234", MessageSummary(0, 3))
        modify = await presence.next_sip()
        assert isinstance(modify, SipRequest)
        assert modify.headers.get("SIP-If-Match") == "e2"
        assert parse_message_summary(modify.body)[2] == MessageSummary(0, 3)


async def test_one_publish_at_a_time_and_the_newest_state_follows_with_the_new_etag(
) -> None:
    """A state published while the previous PUBLISH waits for its answer goes once that answer
    has come, with the entity tag it brought. Sent at once, with the tag before it, the newer
    state raced the older one at the presence server: Kamailio (several workers) answered the
    newer one 500 and the older one 200 afterwards, that 200 cancelled the retry, and the
    phones kept the older state until the next change (bench/failover.py --drains)."""
    async with presence_and_server() as (presence, server):
        server.publish_mwi("1234", MessageSummary(1, 0))
        first = await presence.next_sip()
        assert isinstance(first, SipRequest)
        server.publish_mwi("1234", MessageSummary(2, 0))  # while the first is unanswered
        server.publish_mwi("1234", MessageSummary(3, 0))
        presence.respond(first, 200, extra=("SIP-ETag: e1", "Expires: 3600"))
        second = await presence.next_sip()
        assert isinstance(second, SipRequest)
        assert second.headers.get("SIP-If-Match") == "e1"
        assert parse_message_summary(second.body)[2] == MessageSummary(3, 0)
        presence.respond(second, 200, extra=("SIP-ETag: e2", "Expires: 3600"))


async def test_publish_retried_until_the_presence_server_takes_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A presence server that fails PUBLISH many times in a row (SQLite answering 500 while
    another worker writes) still gets the latest state: there is no giving up while this
    node publishes the mailbox (it used to stop after 5 failures, lamp wrong until the next
    change)."""
    from imapvm.telephony import mwi_sink

    monkeypatch.setattr(mwi_sink, "PUBLISH_RETRY_MAX", 0.05, raising=False)

    async with presence_and_server() as (presence, server):
        server.publish_mwi("1234", MessageSummary(1, 0))
        for attempt in range(2 * mwi_sink.PUBLISH_RETRIES):
            request = await presence.next_sip(within=5)
            assert isinstance(request, SipRequest)
            assert parse_message_summary(request.body)[2] == MessageSummary(1, 0), attempt
            presence.respond(request, 500, "Server Internal Error")
        last = await presence.next_sip(within=5)
        assert isinstance(last, SipRequest)
        assert parse_message_summary(last.body)[2] == MessageSummary(1, 0)
        presence.respond(last, 200, extra=("SIP-ETag: e1", "Expires: 3600"))


async def test_shutdown_ends_subscriptions_with_deactivated() -> None:
    async def no_calls(channel: object) -> None:
        raise AssertionError("no call expected")

    server = SipServer(SipSettings(port=0), no_calls)
    await server.start()
    phone = PyPhone("127.0.0.1", server.address)
    await phone.open()
    try:
        uri = f"sip:1234@127.0.0.1:{server.address[1]}"
        phone.send_request("SUBSCRIBE", uri, extra=f"{SUB}\r\nExpires: 600\r\n", cseq=1)
        assert (await phone.final_response()).status == 200
        await phone.next_sip()  # the first NOTIFY
        await server.close()
        last = await phone.next_sip()
        assert isinstance(last, SipRequest)
        assert last.headers.get("Subscription-State") == "terminated;reason=deactivated"
    finally:
        phone.close()
