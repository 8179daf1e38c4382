"""Push mode through the running server: `imapvm serve` with `[mwi] watch = "push"`, a Dovecot
running contrib/dovecot's Lua script that posts to the server's HTTP port, a phone subscribed
for its lamp, and a plain IMAP client as the mail user."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapvm.telephony.message_summary import MessageSummary
from tests.conftest import make_account
from tests.e2e.serve import imap_conf, start_serve
from tests.e2e.test_promises import SUB, Lamp
from tests.support.dovecot import DovecotServer
from tests.support.dovecot_push import push_config
from tests.support.mailclient import AsyncMailClient
from tests.support.net import free_port
from tests.support.vmmail import voicemail
from tests.telephony.pyphone import PyPhone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TOKEN = "e2e-push-token-0123456789"


@pytest.fixture
def pushing_dovecot() -> Iterator[tuple[DovecotServer, int]]:
    http_port = free_port()
    extra = push_config(f"http://127.0.0.1:{http_port}/mwi/push", TOKEN)
    server = DovecotServer("slash", extra_config=extra).start()
    try:
        yield server, http_port
    finally:
        server.stop()


async def test_the_lamp_follows_a_mail_client_by_push(
        tmp_path: Path, pushing_dovecot: tuple[DovecotServer, int]) -> None:
    dovecot, http_port = pushing_dovecot
    acct = make_account(dovecot)
    client = await AsyncMailClient.connect(dovecot, acct.user, acct.password)
    await client.append("INBOX", voicemail("1234"))  # pushed to nobody yet: refused
    conf = tmp_path / "voicemail.conf"
    conf.write_text(imap_conf(dovecot.port, f"1234 => 4242,Alice,,,imapuser={acct.user}|"
                                            f"imappassword={acct.password}"))
    serve = await start_serve(tmp_path / "run", "--config", str(conf), "--log-level", "debug",
                              "--set", f"paths.spool={tmp_path / 'spool'}",
                              "--set", f"paths.outbox={tmp_path / 'outbox'}",
                              "--set", f"http.listen=127.0.0.1:{http_port}",
                              "--set", "mwi.watch=push", "--set", f"mwi.push_token={TOKEN}")
    serve.http_port = http_port  # the later --set wins: Dovecot posts there
    await serve.wait_healthy()
    subscriber = PyPhone("127.0.0.1", ("127.0.0.1", serve.sip_port))
    await subscriber.open()
    lamp = Lamp(subscriber)
    try:
        subscriber.send_request("SUBSCRIBE", f"sip:1234@127.0.0.1:{serve.sip_port}",
                                extra=SUB, cseq=1)
        await lamp.wait_for(lambda v, w: w and v == MessageSummary(1, 0), 30)
        await serve.wait_log("mwi 1234@default: new 1 old 0", within=30)  # the watcher's count
        await client.select("INBOX")
        (uid,) = await client.uids("ALL")
        await client.read(uid)  # the mail user reads it: the lamp goes off, by push
        await lamp.wait_for(lambda v, w: not w and v == MessageSummary(0, 1), 30)
        _, health = await serve.health()
        push = health["mwi_push"]
        assert isinstance(push, dict)
        assert push["received"] >= 1, dovecot.log_path.read_text()[-3000:]
        assert push["refused"] == 0
        metrics = await serve.metrics()  # the same counts for Prometheus
        assert "# TYPE imapvm_mwi_pushes_total counter" in metrics
        received = re.search(r'^imapvm_mwi_pushes_total\{result="received"\} (\d+)$', metrics,
                             re.MULTILINE)
        assert received is not None
        assert int(received.group(1)) >= int(push["received"])  # counted since, maybe more
        assert 'imapvm_mwi_pushes_total{result="refused"} 0' in metrics
        assert TOKEN not in serve.log
        assert "MWI pushes on /mwi/push" in serve.log
    finally:
        lamp.close()
        await client.close()
        assert await serve.stop() == 0
