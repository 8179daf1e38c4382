"""Kamailio (contrib/kamailio/kamailio.cfg as shipped) in front of two imapvm nodes and Dovecot:
the phone's lamp lives at Kamailio's presence server, fed by the nodes' PUBLISH; calls are
dispatched to the nodes, and a draining node stops getting them."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from imapvm.telephony.message_summary import MessageSummary, parse_message_summary
from imapvm.telephony.sip.errors import SipParseError
from imapvm.telephony.sip.message import SipRequest, SipResponse
from tests.cluster.caller import TalkingCaller, journal_bytes
from tests.cluster.topology import Topology
from tests.conftest import make_account
from tests.e2e.serve import eventually
from tests.support.dovecot import DovecotServer
from tests.support.kamailio import DOMAIN
from tests.support.mailclient import AsyncMailClient
from tests.support.vmmail import voicemail
from tests.telephony.pyphone import PyPhone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SUB = "Event: message-summary\r\nAccept: application/simple-message-summary\r\nExpires: 600\r\n"


class KamailioLamp:
    """A phone subscribed to a mailbox at Kamailio: every NOTIFY, answered 200. A datagram
    that is not SIP is skipped with a word (the phone keeps listening); a SUBSCRIBE refused
    with a 5xx (Kamailio's presence database busy under load) is sent again a second later,
    up to SUBSCRIBE_RETRIES times, as a phone retries."""

    SUBSCRIBE_RETRIES = 5

    def __init__(self, phone: PyPhone, mailbox: str) -> None:
        self.phone = phone
        self.mailbox = mailbox
        self.states: list[tuple[float, MessageSummary | None, bool]] = []
        self.subscribe_status: int | None = None
        self.subscribe_retries = 0
        self.not_sip = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def subscribe(self) -> None:
        self.phone.send_request("SUBSCRIBE", f"sip:{self.mailbox}@{DOMAIN}", extra=SUB,
                                cseq=1 + self.subscribe_retries)

    async def _run(self) -> None:
        while True:
            try:
                msg = await self.phone.next_sip(within=3600)
            except TimeoutError:
                continue
            except SipParseError as exc:
                self.not_sip += 1
                print(f"lamp {self.mailbox}: a datagram that is not SIP, ignored ({exc})",
                      file=sys.stderr)
                continue
            if isinstance(msg, SipRequest) and msg.method == "NOTIFY":
                self.phone.respond(msg, 200)
                if msg.body:
                    waiting, _, voice = parse_message_summary(msg.body)
                    self.states.append((time.monotonic(), voice, waiting))
                    self._changed.set()
            elif (isinstance(msg, SipResponse) and self.subscribe_status is None
                  and msg.status >= 200
                  and msg.cseq == (1 + self.subscribe_retries, "SUBSCRIBE")):
                if msg.status >= 500 and self.subscribe_retries < self.SUBSCRIBE_RETRIES:
                    self.subscribe_retries += 1
                    asyncio.get_running_loop().call_later(1.0, self.subscribe)
                else:
                    self.subscribe_status = msg.status

    async def wait_for(self, predicate, within: float = 20.0) -> float:  # type: ignore[no-untyped-def]
        start = time.monotonic()
        async with asyncio.timeout(within):
            while True:
                for at, voice, waiting in self.states:
                    if at >= start - 0.001 and predicate(voice, waiting):
                        return at - start
                self._changed.clear()
                await self._changed.wait()

    async def wait_state(self, want: MessageSummary, within: float = 20.0) -> float:
        """Until the newest NOTIFY says `want` (it may already)."""
        try:
            async with asyncio.timeout(within):
                while not (self.states and self.states[-1][1] == want):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"the lamp never showed {want}: {self.states}") from None
        return self.states[-1][0]

    async def wait_more(self, than: int, within: float = 20.0) -> None:
        """Until more than `than` NOTIFYs with a body have arrived (counting from the first)."""
        async with asyncio.timeout(within):
            while len(self.states) <= than:
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        self._task.cancel()
        self.phone.close()


async def leave_message(topo: Topology, seconds: float = 2.0) -> str:
    """A caller leaves a `seconds` message through Kamailio; the node's URI that answered."""
    caller = TalkingCaller(topo.kamailio.address)
    before = sum(journal_bytes(n.outbox) for n in topo.nodes)
    try:
        assert await caller.start() == 200
        await eventually(lambda: sum(journal_bytes(n.outbox) for n in topo.nodes) - before
                         >= seconds * 16000, 30)
        assert await caller.hang_up() == 200
        return str(caller.phone.uri)
    finally:
        await caller.close()


async def test_lamp_at_kamailio_calls_dispatched_and_draining(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    topo = await Topology.start(tmp_path, dovecot_slash.port,
                                "1234 => 4242,Alice,alice@example.org,,"
                                f"imapuser={acct.user}|imappassword={acct.password}")
    phone = PyPhone("127.0.0.1", topo.kamailio.address)
    await phone.open()
    lamp = KamailioLamp(phone, "1234")
    mail = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    try:
        # the phone subscribes at Kamailio and hears the state one of the nodes published
        lamp.subscribe()
        await lamp.wait_state(MessageSummary(0, 0))
        assert lamp.subscribe_status == 200

        # a mail client delivers a voicemail: the lamp follows, through PUBLISH
        await mail.append("INBOX", voicemail("1234", caller="5550001"))
        await lamp.wait_state(MessageSummary(1, 0))

        # a call through Kamailio is answered by one of the nodes
        await leave_message(topo)
        await lamp.wait_state(MessageSummary(2, 0))

        # node 1 drains: OPTIONS get 480, Kamailio stops sending it calls
        first = topo.nodes[0]
        first.serve.signal(signal.SIGUSR1)
        async with asyncio.timeout(10):
            while (await first.serve.health())[1]["draining"] is not True:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        answered_by = []
        for _ in range(4):
            answered_by.append(await leave_message(topo))
        port = str(topo.nodes[1].serve.sip_port)
        assert all(f":{port}" in uri for uri in answered_by), answered_by
        await lamp.wait_state(MessageSummary(6, 0))
        states = [v for _, v, _ in lamp.states]
        # the lamp never showed a wrong count: only ever 0, 1, 2, ... 6, in order
        news = [s.new for s in states if s is not None]
        assert news == sorted(news)
        assert set(news) == {0, 1, 2, 3, 4, 5, 6}
    finally:
        lamp.close()
        await mail.close()
        await topo.stop()
