"""RFC 4028 session timers against the Python phone: 422 below Min-SE, the interval and
refresher in our 200, a call whose caller stops refreshing is hung up (BYE), a refresh keeps it,
and when we are the refresher we send UPDATE."""

from __future__ import annotations

import asyncio

import pytest

from imapvm.telephony.channel import SipChannel
from imapvm.telephony.server import SipServer, SipSettings
from imapvm.telephony.sip.message import SipRequest, SipResponse

from .pyphone import PyPhone

pytestmark = [pytest.mark.timeout(60)]


class Calls:
    def __init__(self) -> None:
        self.ended: asyncio.Queue[str] = asyncio.Queue()
        self.channels: list[SipChannel] = []

    async def __call__(self, channel: SipChannel) -> None:
        self.channels.append(channel)
        await channel.answer()
        await channel.hangup_event.wait()
        await self.ended.put(channel.hangup_reason or "")


async def _server(calls: Calls) -> SipServer:
    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(38000, 38998), min_se=2,
                           session_expires=30)
    server = SipServer(settings, calls)
    await server.start()
    return server


async def _next_request(phone: PyPhone, method: str, within: float = 10) -> SipRequest:
    async with asyncio.timeout(within):
        while True:
            msg = await phone.next_sip(within)
            if isinstance(msg, SipRequest) and msg.method == method:
                return msg


async def test_too_small_an_interval_gets_422_with_min_se() -> None:
    calls = Calls()
    server = await _server(calls)
    phone = PyPhone("127.0.0.1", server.address)
    await phone.open()
    try:
        resp = await phone.call(extra="Supported: timer\r\nSession-Expires: 1\r\n")
        assert resp.status == 422
        assert resp.headers.get("Min-SE") == "2"
        assert calls.channels == []
    finally:
        phone.close()
        await server.close()


async def test_a_caller_that_vanished_is_hung_up_at_expiry() -> None:
    calls = Calls()
    server = await _server(calls)
    phone = PyPhone("127.0.0.1", server.address)
    await phone.open()
    try:
        resp = await phone.call(extra="Supported: timer\r\nSession-Expires: 3;refresher=uac\r\n")
        assert resp.status == 200
        assert resp.headers.get("Session-Expires") == "3;refresher=uac"
        assert resp.headers.get("Require") == "timer"
        # the phone sends no RTP and no refresh: gone. The session timer, not the 60 s RTP
        # timeout, ends the call with a BYE.
        bye = await _next_request(phone, "BYE")
        phone.respond(bye, 200)
        assert await asyncio.wait_for(calls.ended.get(), 5) == "session-expired"
    finally:
        phone.close()
        await server.close()


async def test_a_refresh_moves_the_expiry() -> None:
    calls = Calls()
    server = await _server(calls)
    phone = PyPhone("127.0.0.1", server.address)
    await phone.open()
    try:
        resp = await phone.call(extra="Supported: timer\r\nSession-Expires: 20;refresher=uac\r\n")
        assert resp.status == 200
        handle = calls.channels[0].handle
        before = server.core.timers.deadline(("session", (handle,)))
        assert before is not None
        phone.send_request("UPDATE", phone.uri,
                           extra="Supported: timer\r\nSession-Expires: 40;refresher=uac\r\n")
        ok = await phone.final_response()
        assert isinstance(ok, SipResponse)
        assert ok.status == 200
        assert ok.headers.get("Session-Expires") == "40;refresher=uac"
        after = server.core.timers.deadline(("session", (handle,)))
        assert after is not None
        assert after > before + 10  # 40 s less a third-or-32 s, from later than before
    finally:
        phone.close()
        await server.close()


async def test_we_refresh_with_update_for_a_caller_without_timer_support() -> None:
    calls = Calls()
    server = await _server(calls)
    phone = PyPhone("127.0.0.1", server.address)
    await phone.open()
    try:
        resp = await phone.call(extra="Session-Expires: 2\r\n")
        assert resp.status == 200
        assert resp.headers.get("Session-Expires") == "2;refresher=uas"
        assert resp.headers.get("Require") is None
        update = await _next_request(phone, "UPDATE")  # at half the interval
        assert update.headers.get("Session-Expires") == "2;refresher=uas"
        phone.respond(update, 200)
        update = await _next_request(phone, "UPDATE")  # and again: the call lives on
        phone.respond(update, 481, "Call/Transaction Does Not Exist")  # the phone forgot it
        bye = await _next_request(phone, "BYE")
        phone.respond(bye, 200)
        assert await asyncio.wait_for(calls.ended.get(), 5) == "session-expired"
    finally:
        phone.close()
        await server.close()
