"""A node that takes over a mailbox from a dead publisher counts it at once on a connection of
its own, while the watcher it has just started counts it too. When a change lands between the
two counts, the takeover's is the older one; it used to be PUBLISHed as it was, after the
watcher had already published the change, and the phone's lamp at Kamailio stayed one message
behind until the mailbox changed again (1 in 6 runs of bench/failover.py with 3 nodes).

Real parts, driven in that order: an imapvm node in this process (so the test can hold the
takeover's count until the change has been published), Kamailio from the shipped configuration
as the presence server, Dovecot, a phone subscribed at Kamailio, a mail client. The other node
of the cluster is declared dead through the node's health probe."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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


async def test_takeover_never_publishes_a_count_older_than_the_watchers(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    sip_port = free_port_udp_and_tcp()
    me, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    # a mailbox the peer publishes while both nodes live: ours once the peer is dead
    number = next(str(n) for n in range(1000, 2000)
                  if owner(f"{n}@default", [me, peer]) == peer)
    box = MailboxRef(number, "default")
    conf = tmp_path / "voicemail.conf"
    conf.write_text(imap_conf(dovecot_slash.port, f"{number} => 4242,Alice,,,imapuser="
                              f"{acct.user}|imappassword={acct.password}"))
    kam = Kamailio([("127.0.0.1", sip_port)])
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

    async def probe(url: str) -> bool:  # the peer's /healthz, as this test decides it
        return alive[url]

    # (the node's own health checks run once at start, then every 60 s: the two checks
    # below are the ones that count)

    assert server.membership is not None
    server.membership.probe = probe
    mail = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    phone = PyPhone("127.0.0.1", kam.address)
    lamp: KamailioLamp | None = None
    try:
        await mail.append("INBOX", voicemail(number, caller="5550001"))
        await kam.wait_ready()
        await server.start()
        await kam.wait_nodes_up()
        await phone.open()
        lamp = KamailioLamp(phone, number)
        lamp.subscribe()

        # Hold the takeover's own count (the watcher counts on its connection, `conn=`) once
        # it has read the mailbox, until the change below has reached the lamp.
        imap = server.store.backend(box)
        real_counts: Callable[..., Awaitable[Counts]] = imap.counts
        read, release = asyncio.Event(), asyncio.Event()

        async def held_counts(b: MailboxRef, **kw: Any) -> Counts:
            counts = await real_counts(b, **kw)
            if b == box and kw.get("conn") is None and not read.is_set():
                read.set()
                await release.wait()
            return counts

        imap.counts = held_counts  # type: ignore[method-assign]

        # the peer dies: two missed health checks, and this node takes the mailbox over
        alive[peer] = False

        async def two_checks() -> None:
            assert server.membership is not None
            assert not await server.membership.check()
            assert await server.membership.check()

        takeover = asyncio.create_task(two_checks())
        await asyncio.wait_for(read.wait(), 30)  # it has counted 1 new message...
        await mail.append("INBOX", voicemail(number, caller="5550002"))
        # ...and the new watcher sees the second one and publishes it
        await lamp.wait_state(MessageSummary(2, 0), within=30)
        heard = len(lamp.states)
        release.set()
        await asyncio.wait_for(takeover, 30)
        # the takeover publishes once more, and what it publishes is the newest state
        await lamp.wait_more(heard)
        assert lamp.states[-1][1] == MessageSummary(2, 0), lamp.states
        update = server.mwi.current(str(box))
        assert update is not None
        assert (update.mwi_new, update.old) == (2, 0)
    finally:
        if lamp is not None:
            lamp.close()
        else:
            phone.close()
        await mail.close()
        await server.stop(grace=5)
        await asyncio.to_thread(kam.stop)
