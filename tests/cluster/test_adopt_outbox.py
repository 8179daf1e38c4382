"""A node dies with a deposit waiting for IMAP and a caller mid-message; the node that adopted
its outbox delivers both, exactly once, and never touched the outbox while its owner lived.

Two real `imapvm serve` processes, the Python SIP phone as callers, a Dovecot of the test's own
(stopped while the deposits are made, so they wait in the outbox)."""

from __future__ import annotations

import asyncio
import email
import signal
from pathlib import Path

import pytest

from tests.cluster.caller import TalkingCaller, journal_bytes
from tests.conftest import make_account
from tests.e2e.serve import ServeProcess, eventually, imap_conf, start_serve
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def _health_until(node: ServeProcess, predicate, within: float = 30):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while True:
            _, body = await node.health()
            if predicate(body):
                return body
            await asyncio.sleep(0.1)  # another process's state: polled


async def test_an_adopted_outbox_is_delivered_once_after_its_node_dies(
        tmp_path: Path, private_dovecot: DovecotServer) -> None:
    acct = make_account(private_dovecot)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(imap_conf(private_dovecot.port, "1234 => 4242,Alice,alice@example.org"
                              f",,imapuser={acct.user}|imappassword={acct.password}"))

    def node_args(name: str) -> tuple[str, ...]:
        return ("--config", str(conf), "--set", f"paths.spool={tmp_path / name / 'spool'}",
                "--set", f"paths.outbox={tmp_path / name / 'outbox'}")

    a_outbox = tmp_path / "a" / "outbox"
    a = await start_serve(tmp_path / "a" / "run", *node_args("a"))
    b = await start_serve(tmp_path / "b" / "run", *node_args("b"),
                          "--adopt-outbox", str(a_outbox))
    await a.wait_healthy()
    await b.wait_healthy()
    callers: list[TalkingCaller] = []
    try:
        private_dovecot.pause()  # IMAP is down: what A accepts waits in A's outbox
        done = TalkingCaller(("127.0.0.1", a.sip_port))
        callers.append(done)
        assert await done.start() == 200
        await eventually(lambda: journal_bytes(a_outbox) >= 2 * 16000, 30)
        await done.hang_up()
        await _health_until(a, lambda h: h["outbox_depth"] == 1)

        cut = TalkingCaller(("127.0.0.1", a.sip_port))
        callers.append(cut)
        assert await cut.start() == 200
        await eventually(lambda: journal_bytes(a_outbox) >= 2 * 16000, 30)
        # while A lives, B leaves A's outbox alone
        _, b_health = await b.health()
        assert b_health["adopted"] == {str(a_outbox): {"state": "waiting",
                                                       "adopted_items": 0}}
        a.signal(signal.SIGKILL)
        assert a.proc is not None
        await a.proc.wait()
    finally:
        for c in callers:
            await c.close()
    private_dovecot.resume()

    # B takes A's outbox over: the finished message and the partial one
    await _health_until(b, lambda h: h["adopted"][str(a_outbox)]["adopted_items"] == 2)
    await _health_until(b, lambda h: h["adopted"][str(a_outbox)]["state"] == "waiting")
    assert not list((a_outbox / "pending").glob("*.json"))
    assert not list((a_outbox / "recording").iterdir())
    mail = await AsyncMailClient.connect(private_dovecot, acct.user, acct.password)
    try:
        await mail.select("INBOX")
        uids = await mail.uids()
        assert len(uids) == 2
        msgs = [email.message_from_bytes(await mail.fetch(u)) for u in uids]
        assert sorted(m["X-Imapvm-Partial"] or "no" for m in msgs) == ["no", "yes"]
        assert sorted(int(m["X-Asterisk-VM-Message-Num"]) for m in msgs) == [1, 2]

        # A's replacement starts on the released outbox: nothing is delivered again
        again = await start_serve(tmp_path / "a" / "run2", *node_args("a"))
        health = await again.wait_healthy()
        assert health["outbox_depth"] == 0
        assert await again.stop() == 0
        await mail.select("INBOX")
        assert len(await mail.uids()) == 2
    finally:
        await mail.close()
        assert await b.stop() == 0


async def test_a_second_node_on_a_busy_outbox_refuses_to_start(tmp_path: Path) -> None:
    args = ("--set", f"paths.spool={tmp_path / 'spool'}",
            "--set", f"paths.outbox={tmp_path / 'outbox'}")
    first = await start_serve(tmp_path / "one", *args)
    await first.wait_healthy()
    try:
        second = await start_serve(tmp_path / "two", *args, "--outbox-wait", "0")
        assert second.proc is not None
        assert await asyncio.wait_for(second.proc.wait(), 30) == 1
        assert f"outbox {tmp_path / 'outbox'} is in use by" in second.log
    finally:
        assert await first.stop() == 0
