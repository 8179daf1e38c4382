"""The first NOTIFY of a subscription is sent once (issue 17, item 6).

With no pollmailboxes, a phone's SUBSCRIBE starts watching its mailbox: the lookup for the first
NOTIFY and the watch's first count race, and both used to NOTIFY the same 0/0 (CSeq 1 and 2,
1 ms apart). Here the race is made to happen every time: the lookup publishes the count (as
the engine does when the new watch counts) before it returns."""

from __future__ import annotations

import pytest

from imapvm.telephony.message_summary import MessageSummary, parse_message_summary
from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.sip.message import SipRequest

from .pyphone import PyPhone

pytestmark = pytest.mark.timeout(30)

SUB = "Event: message-summary\r\nAccept: application/simple-message-summary"


async def no_calls(channel: object) -> None:
    raise AssertionError("no call expected")


async def test_a_count_published_during_the_lookup_is_the_only_first_notify() -> None:
    holder: dict[str, SipServer] = {}

    async def lookup(mailbox: str) -> MessageSummary:
        # the watch this subscription started counted and published meanwhile
        assert holder["server"].publish_mwi(mailbox, MessageSummary(0, 0)) == 1
        return MessageSummary(0, 0)

    async with SipServer(SipSettings(port=0), no_calls, mwi_lookup=lookup) as server:
        holder["server"] = server
        phone = PyPhone("127.0.0.1", server.address)
        await phone.open()
        try:
            uri = f"sip:1234@127.0.0.1:{server.address[1]}"
            phone.send_request("SUBSCRIBE", uri, extra=f"{SUB}\r\nExpires: 600\r\n", cseq=1)
            assert (await phone.final_response()).status == 200
            first = await phone.next_sip()
            assert isinstance(first, SipRequest)
            phone.respond(first, 200)
            assert parse_message_summary(first.body)[2] == MessageSummary(0, 0)
            # a later change is the next NOTIFY: nothing came in between
            assert server.publish_mwi("1234", MessageSummary(1, 0)) == 1
            second = await phone.next_sip()
            assert isinstance(second, SipRequest)
            assert parse_message_summary(second.body)[2] == MessageSummary(1, 0)
            assert [int(r.headers.get("CSeq").split()[0]) for r in (first, second)] == [1, 2]
        finally:
            phone.close()


async def test_a_refresh_is_notified_again() -> None:
    """RFC 6665: every accepted refresh gets its NOTIFY, even with nothing new."""
    async def lookup(mailbox: str) -> MessageSummary:
        return MessageSummary(2, 0)

    async with SipServer(SipSettings(port=0), no_calls, mwi_lookup=lookup) as server:
        phone = PyPhone("127.0.0.1", server.address)
        await phone.open()
        try:
            uri = f"sip:1234@127.0.0.1:{server.address[1]}"
            phone.send_request("SUBSCRIBE", uri, extra=f"{SUB}\r\nExpires: 600\r\n", cseq=1)
            ok = await phone.final_response()
            assert ok.status == 200
            first = await phone.next_sip()
            assert isinstance(first, SipRequest)
            phone.respond(first, 200)
            phone.to_header = ok.headers.get("To")  # in the dialog now
            phone.send_request("SUBSCRIBE", uri, extra=f"{SUB}\r\nExpires: 600\r\n", cseq=2)
            assert (await phone.final_response()).status == 200
            again = await phone.next_sip()
            assert isinstance(again, SipRequest)
            assert parse_message_summary(again.body)[2] == MessageSummary(2, 0)
        finally:
            phone.close()
