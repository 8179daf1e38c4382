"""Signalling against sipp: retransmissions, CANCEL, BYE both ways, 481, malformed input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imapvm.telephony.channel import SipChannel
from imapvm.telephony.server import SipServer, SipSettings
from tests.support.sipp import run_sipp

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SCENARIOS = Path(__file__).parent / "sipp"


class Recorder:
    """A handler whose behaviour is chosen by the dialed user, recording what happened."""

    def __init__(self) -> None:
        self.ended: dict[str, str | None] = {}
        self.done = asyncio.Event()

    async def __call__(self, channel: SipChannel) -> None:
        dialed = channel.target.dialed
        try:
            if dialed == "noanswer":
                await channel.hangup_event.wait()
            elif dialed == "hangup":
                await channel.answer()
                await asyncio.sleep(0.5)
                await channel.hangup()
            else:
                await channel.answer()
                await channel.hangup_event.wait()
        finally:
            self.ended[str(dialed)] = channel.hangup_reason
            self.done.set()


@pytest.fixture
async def server() -> AsyncIterator[tuple[SipServer, Recorder]]:
    recorder = Recorder()
    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(33000, 33998))
    async with SipServer(settings, recorder) as srv:
        yield srv, recorder


async def test_lost_ack_gets_200_again_then_caller_bye(
    server: tuple[SipServer, Recorder], tmp_path: Path
) -> None:
    srv, rec = server
    result = await run_sipp(SCENARIOS / "uac_2xx_retransmit_bye.xml", srv.address, tmp_path,
                            service="answer")
    assert result.ok, result.output + result.errors
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.ended["answer"] == "remote-bye"
    assert srv.core.stats["retransmitted_2xx"] >= 2  # at T1 and 2*T1 before the late ACK


async def test_cancel_before_answer(server: tuple[SipServer, Recorder], tmp_path: Path) -> None:
    srv, rec = server
    result = await run_sipp(SCENARIOS / "uac_cancel.xml", srv.address, tmp_path,
                            service="noanswer")
    assert result.ok, result.output + result.errors
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.ended["noanswer"] == "cancelled"


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_server_hangs_up_with_bye(
    server: tuple[SipServer, Recorder], tmp_path: Path, transport: str
) -> None:
    srv, rec = server
    result = await run_sipp(SCENARIOS / "uac_server_bye.xml", srv.address, tmp_path,
                            service="hangup", transport=transport)
    assert result.ok, result.output + result.errors
    assert rec.ended["hangup"] == "local-bye"
    assert srv.channels == {}


async def test_unknown_dialog_and_malformed_requests(
    server: tuple[SipServer, Recorder], tmp_path: Path
) -> None:
    srv, rec = server
    result = await run_sipp(SCENARIOS / "uac_negative.xml", srv.address, tmp_path,
                            service="answer")
    assert result.ok, result.output + result.errors
    assert rec.ended == {}  # none of it became a call
    assert srv.core.stats["bad_messages"] == 3


async def test_caller_bye_over_tcp(server: tuple[SipServer, Recorder], tmp_path: Path) -> None:
    """(sipp over TCP treats a retransmitted 200 as unexpected, so the ACK is not delayed.)"""
    srv, rec = server
    result = await run_sipp(SCENARIOS / "uac_caller_bye.xml", srv.address, tmp_path,
                            service="answer", transport="TCP")
    assert result.ok, result.output + result.errors
    await asyncio.wait_for(rec.done.wait(), 5)
    assert rec.ended["answer"] == "remote-bye"


async def test_subscribe_with_digest_auth_gets_notify(tmp_path: Path) -> None:
    from imapvm.telephony.message_summary import MessageSummary

    async def lookup(mailbox: str) -> MessageSummary:
        return MessageSummary(2, 5, 1, 0)

    # nobody trusted: all must log in. sipp 3.6 answers the first challenge whatever its
    # algorithm and knows only MD5, so MD5 is offered first here (SHA-256 still second).
    settings = SipSettings(port=0, trusted_networks=(), digest_algorithms=("MD5", "SHA-256"))
    async with SipServer(settings, Recorder(), mwi_lookup=lookup,
                         credentials={"1234": "secret"}.get) as srv:
        result = await run_sipp(SCENARIOS / "uac_subscribe_auth.xml", srv.address, tmp_path,
                                service="1234")
        assert result.ok, result.output + result.errors
        assert len(srv.core.subscriptions) == 1
