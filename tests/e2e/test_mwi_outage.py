"""Issue 17 item 16: a phone that subscribes to a mailbox nobody watches yet, while the IMAP server
is down, must not be told `Messages-Waiting: no 0/0` (its lamp would go off although a message
waits): unknown is not zero. Its first NOTIFY carries the first real count, once IMAP is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from imapvm.telephony.message_summary import MessageSummary
from tests.conftest import make_account
from tests.e2e.serve import imap_conf, serve_config
from tests.e2e.test_promises import SUB, Lamp
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient
from tests.support.vmmail import voicemail
from tests.telephony.pyphone import PyPhone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_first_subscriber_during_an_outage_gets_no_zero(
        tmp_path: Path, private_dovecot: DovecotServer) -> None:
    acct = make_account(private_dovecot)
    with MailClient(private_dovecot, acct.user, acct.password) as c:
        c.append("INBOX", voicemail("1234"))  # a message waits: the lamp must be on
    serve = await serve_config(tmp_path, imap_conf(
        private_dovecot.port, f"1234 => 4242,Alice,,,imapuser={acct.user}|"
                              f"imappassword={acct.password}"))
    subscriber = PyPhone("127.0.0.1", ("127.0.0.1", serve.sip_port))
    await subscriber.open()
    lamp = Lamp(subscriber)
    try:
        await asyncio.to_thread(private_dovecot.pause)
        subscriber.send_request("SUBSCRIBE", f"sip:1234@127.0.0.1:{serve.sip_port}",
                                extra=SUB, cseq=1)
        await serve.wait_log("MWI lookup for 1234 failed", within=30)
        await asyncio.to_thread(private_dovecot.resume)
        await lamp.wait_for(lambda v, w: w and v == MessageSummary(1, 0), 60)
        first = lamp.notifies[0]  # nothing was said while nothing was known
        assert (first[1], first[2]) == (MessageSummary(1, 0), True)
        assert "MWI for 1234 not known yet" in serve.log
    finally:
        lamp.close()
        assert await serve.stop() == 0
