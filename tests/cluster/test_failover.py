"""The several-nodes promise, end to end: Kamailio (the shipped configuration) in front of two
imapvm nodes and Dovecot; a phone subscribed at Kamailio; one node killed (-9) while a caller
speaks through it. The partial message arrives exactly once (the survivor adopts the dead
node's outbox), new calls succeed on the survivor, the lamp keeps following (never a wrong
count), and nothing is lost or duplicated."""

from __future__ import annotations

import asyncio
import email
import signal
from pathlib import Path

import pytest

from imapvm.telephony.message_summary import MessageSummary
from tests.cluster.caller import TalkingCaller, journal_bytes
from tests.cluster.test_kamailio_edge import KamailioLamp, leave_message
from tests.cluster.topology import Topology
from tests.conftest import make_account
from tests.e2e.serve import eventually
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient
from tests.telephony.pyphone import PyPhone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_kill_9_of_a_node_mid_recording_behind_kamailio(
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
        lamp.subscribe()
        await lamp.wait_state(MessageSummary(0, 0))

        # a caller speaks through Kamailio to one node; that node dies mid-message
        caller = TalkingCaller(topo.kamailio.address)
        try:
            assert await caller.start() == 200
            victim = next(n for n in topo.nodes
                          if f":{n.serve.sip_port}" in str(caller.phone.uri))
            await eventually(lambda: journal_bytes(victim.outbox) >= 2 * 16000, 30)
            victim.serve.signal(signal.SIGKILL)
            assert victim.serve.proc is not None
            await victim.serve.proc.wait()
        finally:
            await caller.close()
        kept_seconds = journal_bytes(victim.outbox) // 16000
        survivor = next(n for n in topo.nodes if n is not victim)

        # the survivor adopts the dead node's outbox: the partial message, then the lamp
        await lamp.wait_state(MessageSummary(1, 0), within=30)
        assert not list((victim.outbox / "recording").iterdir())

        # new calls through Kamailio succeed, on the survivor
        for _ in range(2):
            uri = await leave_message(topo)
            assert f":{survivor.serve.sip_port}" in uri
        await lamp.wait_state(MessageSummary(3, 0), within=30)

        # a mail client reads one: the lamp follows (published by the survivor)
        await mail.select("INBOX")
        async with asyncio.timeout(20):  # the lamp lights before the outbox has delivered
            while len(uids := await mail.uids()) < 3:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.1)
        async with asyncio.timeout(20):  # every outbox empty: nothing more can arrive
            while True:
                _, h = await survivor.serve.health()
                adopted = h["adopted"]
                assert isinstance(adopted, dict)
                if h["outbox_depth"] == 0 and all(a["state"] == "waiting"
                                                  for a in adopted.values()):
                    break
                await asyncio.sleep(0.1)
        assert len(await mail.uids()) == 3  # nothing lost, nothing twice
        msgs = {u: email.message_from_bytes(await mail.fetch(u)) for u in uids}
        partial = [u for u, m in msgs.items() if m["X-Imapvm-Partial"] == "yes"]
        assert len(partial) == 1
        assert int(msgs[partial[0]]["X-Asterisk-VM-Duration"]) in (kept_seconds - 1,
                                                                    kept_seconds)
        assert sorted(int(m["X-Asterisk-VM-Message-Num"]) for m in msgs.values()) == [1, 2, 3]
        assert len({m["Message-ID"] for m in msgs.values()}) == 3
        await mail.read(uids[0])
        await lamp.wait_state(MessageSummary(2, 1), within=20)

        # the lamp never showed a wrong state: counts only ever moved as the mailbox did
        states = [v for _, v, _ in lamp.states if v is not None]
        changes = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
        assert changes == [MessageSummary(0, 0), MessageSummary(1, 0), MessageSummary(2, 0),
                           MessageSummary(3, 0), MessageSummary(2, 1)]
        _, health = await survivor.serve.health()
        adopted = health["adopted"]
        assert isinstance(adopted, dict)
        assert adopted[str(victim.outbox)]["adopted_items"] == 1
    finally:
        lamp.close()
        await mail.close()
        await topo.stop()
