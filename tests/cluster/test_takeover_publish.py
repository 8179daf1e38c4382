"""What a node PUBLISHes when it takes over a mailbox whose publisher died or left, and that
its state is the last one the presence server receives.

Kamailio's presence_mwi NOTIFYs the phone the body of the PUBLISH it has just processed, so the
lamp shows whatever PUBLISH came last, from whichever node, until the mailbox changes again.

Real parts, driven in order: an imapvm node in this process (so a test can hold the takeover's
count, or move its timer), Kamailio from the shipped configuration as the presence server,
Dovecot, a phone subscribed at Kamailio, a mail client. The other node of the cluster is
declared dead through the node's health probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imapvm.config.loader import load
from imapvm.mwi.cluster import owner
from imapvm.server import VoicemailServer
from imapvm.storage.base import Counts, MailboxRef
from imapvm.telephony.message_summary import MessageSummary
from tests.cluster.test_kamailio_edge import KamailioLamp
from tests.conftest import make_account
from tests.e2e.serve import imap_conf
from tests.support.dovecot import DovecotServer
from tests.support.kamailio import DOMAIN, Kamailio
from tests.support.mailclient import AsyncMailClient
from tests.support.net import free_port, free_port_udp_and_tcp
from tests.support.vmmail import voicemail
from tests.telephony.pyphone import PyPhone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@dataclass
class Cluster:
    server: VoicemailServer
    number: str
    box: MailboxRef
    lamp: KamailioLamp
    mail: AsyncMailClient
    alive: dict[str, bool]
    peer: str
    old_owner: PyPhone  # PUBLISHes as the peer would (Kamailio accepts it as a node)

    async def peer_dies(self) -> None:
        """Two missed health checks: this node takes the mailbox over."""
        membership = self.server.membership
        assert membership is not None
        self.alive[self.peer] = False
        assert not await membership.check()
        assert await membership.check()


@asynccontextmanager
async def cluster(tmp_path: Path, dovecot: DovecotServer) -> AsyncIterator[Cluster]:
    acct = make_account(dovecot)
    sip_port = free_port_udp_and_tcp()
    me, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    # a mailbox the peer publishes while both nodes live: ours once the peer is dead
    number = next(str(n) for n in range(1000, 2000)
                  if owner(f"{n}@default", [me, peer]) == peer)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(imap_conf(dovecot.port, f"{number} => 4242,Alice,,,imapuser="
                              f"{acct.user}|imappassword={acct.password}"))
    old_owner = PyPhone("127.0.0.1", ("127.0.0.1", 9))
    await old_owner.open()
    kam = Kamailio([("127.0.0.1", sip_port), old_owner._addr(old_owner.sip)])
    old_owner.server = kam.address
    await asyncio.to_thread(kam.start)
    loaded = load(conf, None, {
        "sip.listen": [f"127.0.0.1:{sip_port}"], "http.listen": "",
        "paths.spool": str(tmp_path / "spool"), "paths.outbox": str(tmp_path / "outbox"),
        "mwi.presence_server": f"sip:127.0.0.1:{kam.port}", "mwi.publish_domain": DOMAIN,
        "cluster.nodes": [me, peer], "cluster.self": me, "cluster.check_interval": 60,
    })
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    server = VoicemailServer(loaded)
    alive = {peer: True}

    async def probe(url: str) -> bool:  # the peer's /healthz, as the test decides it
        return alive[url]

    # (the node's own health checks run once at start, then every 60 s: the checks a test
    # makes are the ones that count)
    assert server.membership is not None
    server.membership.probe = probe
    mail = await AsyncMailClient.connect(dovecot, acct.user, acct.password)
    phone = PyPhone("127.0.0.1", kam.address)
    lamp: KamailioLamp | None = None
    try:
        await mail.append("INBOX", voicemail(number, caller="5550001"))
        await kam.wait_ready()
        await server.start()
        await phone.open()
        lamp = KamailioLamp(phone, number)
        lamp.subscribe()
        yield Cluster(server, number, MailboxRef(number, "default"), lamp, mail, alive, peer,
                      old_owner)
    finally:
        if lamp is not None:
            lamp.close()
        else:
            phone.close()
        old_owner.close()
        await mail.close()
        await server.stop(grace=5)
        await asyncio.to_thread(kam.stop)


async def test_takeover_never_publishes_a_count_older_than_the_watchers(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    """The takeover counts the mailbox on a connection of its own while the watcher it has just
    started counts it too. When a change lands between the two counts, the takeover's is the
    older one; it used to be PUBLISHed as it was, after the watcher had published the change,
    and the lamp stayed one message behind (bench/failover.py --drains: 1 run in 19)."""
    async with cluster(tmp_path, dovecot_slash) as c:
        # Hold the takeover's own count (the watcher counts on its connection, `conn=`) once
        # it has read the mailbox, until the change below has reached the lamp.
        imap = c.server.store.backend(c.box)
        real_counts: Callable[..., Awaitable[Counts]] = imap.counts
        read, release = asyncio.Event(), asyncio.Event()

        async def held_counts(b: MailboxRef, **kw: Any) -> Counts:
            counts = await real_counts(b, **kw)
            if b == c.box and kw.get("conn") is None and not read.is_set():
                read.set()
                await release.wait()
            return counts

        imap.counts = held_counts  # type: ignore[method-assign]
        takeover = asyncio.create_task(c.peer_dies())
        await asyncio.wait_for(read.wait(), 30)  # it has counted 1 new message...
        await c.mail.append("INBOX", voicemail(c.number, caller="5550002"))
        # ...and the new watcher sees the second one and publishes it
        await c.lamp.wait_state(MessageSummary(2, 0), within=30)
        heard = len(c.lamp.states)
        release.set()
        await asyncio.wait_for(takeover, 30)
        # the takeover publishes once more, and what it publishes is the newest state
        await c.lamp.wait_more(heard)
        assert c.lamp.states[-1][1] == MessageSummary(2, 0), c.lamp.states
        update = c.server.mwi.current(str(c.box))
        assert update is not None
        assert (update.mwi_new, update.old) == (2, 0)


async def test_the_new_owner_has_the_last_word_after_a_takeover(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    """The previous owner may still PUBLISH for a moment after the new one took over: it has
    not seen the new view yet (a node that returns takes its mailboxes back at once, the
    others learn of it at their next health check), or a PUBLISH of its is answered late.
    When that PUBLISH comes last, the lamp shows its state, which the previous owner never
    corrects (it no longer publishes that mailbox). The new owner publishes its state once
    more when the previous one must have stopped."""
    async with cluster(tmp_path, dovecot_slash) as c:
        c.server.reassert_after = 3600  # the test says when the time has come (below)
        await c.peer_dies()
        await c.lamp.wait_state(MessageSummary(1, 0), within=30)
        # the previous owner's PUBLISH of a state from before the message, processed last
        aor = f"sip:{c.number}@{DOMAIN}"
        c.old_owner.send_request(
            "PUBLISH", aor, body=MessageSummary(0, 0).render(aor),
            content_type="application/simple-message-summary",
            extra="Event: message-summary\r\nExpires: 600\r\n")
        assert (await c.old_owner.final_response()).status == 200
        await c.lamp.wait_state(MessageSummary(0, 0), within=30)
        # the time has come: the new owner's last word, without any change in the mailbox
        timer = c.server._reasserts.pop(c.number)
        timer.cancel()
        c.server._reassert(c.box)
        await c.lamp.wait_state(MessageSummary(1, 0), within=30)
        assert [v for _, v, _ in c.lamp.states][-3:] == [
            MessageSummary(1, 0), MessageSummary(0, 0), MessageSummary(1, 0)]
