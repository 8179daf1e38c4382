"""The seed's promises through the running server, on Dovecot, with baresip as the caller, a
Python SIP phone subscribed for its lamp, and a plain IMAP client as the mail user."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from imapvm.telephony.message_summary import MessageSummary, parse_message_summary
from imapvm.telephony.sip.message import SipRequest
from tests.conftest import Account, make_account
from tests.e2e.serve import ServeProcess, start_serve
from tests.support.baresip import start_baresip
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient
from tests.support.speech import speech
from tests.telephony.pyphone import PyPhone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SUB = "Event: message-summary\r\nAccept: application/simple-message-summary\r\nExpires: 600\r\n"


class Lamp:
    """A phone subscribed to message-summary: every NOTIFY it gets, answered with 200."""

    def __init__(self, phone: PyPhone) -> None:
        self.phone = phone
        self.notifies: list[tuple[float, MessageSummary | None, bool]] = []
        self._task = asyncio.create_task(self._run())
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        while True:
            try:
                msg = await self.phone.next_sip(within=3600)
            except TimeoutError:
                continue
            if isinstance(msg, SipRequest) and msg.method == "NOTIFY":
                self.phone.respond(msg, 200)
                waiting, _, voice = parse_message_summary(msg.body)
                self.notifies.append((time.monotonic(), voice, waiting))
                self._changed.set()

    async def wait_for(self, predicate, within: float) -> float:  # type: ignore[no-untyped-def]
        """Seconds until a NOTIFY satisfying `predicate(summary, waiting)` arrives."""
        start = time.monotonic()
        async with asyncio.timeout(within):
            while True:
                for at, voice, waiting in self.notifies:
                    if at >= start - 0.001 and predicate(voice, waiting):
                        return at - start
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        self._task.cancel()
        self.phone.close()


async def _serve_for(tmp_path: Path, dovecot: DovecotServer, acct: Account) -> ServeProcess:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"""[general]
format=wav|gsm
imapserver=127.0.0.1
imapport={dovecot.port}
imapflags=notls

[default]
1234 => 4242,Alice Example,alice@example.org,,imapuser={acct.user}|imappassword={acct.password}
""")
    serve = await start_serve(tmp_path / "run", "--config", str(conf),
                              "--set", f"paths.spool={tmp_path / 'spool'}",
                              "--set", f"paths.outbox={tmp_path / 'outbox'}")
    await serve.wait_healthy()
    return serve


async def _leave_message(tmp_path: Path, serve: ServeProcess) -> None:
    caller = tmp_path / "caller.wav"
    soundfile.write(caller, np.concatenate([np.zeros(14 * 8000, np.int16),
                                            speech(3.0).samples]), 8000, subtype="PCM_16")
    phone = await start_baresip(tmp_path / "caller", caller,
                                dial=f"sip:1234@127.0.0.1:{serve.sip_port}")
    try:
        await phone.wait_event("CALL_ESTABLISHED", within=10)
        await phone.wait_event("CALL_CLOSED", within=40)
    finally:
        await phone.stop()


async def test_lamp_follows_deposits_and_the_mail_client(tmp_path: Path,
                                                         dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    serve = await _serve_for(tmp_path, dovecot_slash, acct)
    subscriber = PyPhone("127.0.0.1", ("127.0.0.1", serve.sip_port))
    await subscriber.open()
    lamp = Lamp(subscriber)
    mail = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    try:
        subscriber.send_request("SUBSCRIBE", f"sip:1234@127.0.0.1:{serve.sip_port}",
                                extra=SUB, cseq=1)
        await lamp.wait_for(lambda v, w: v is not None and not w, 10)  # the lamp starts off

        # a caller leaves a message: the lamp turns on exactly once, with no blink
        await _leave_message(tmp_path, serve)
        await lamp.wait_for(lambda v, w: w and v == MessageSummary(1, 0), 20)
        await mail.select("INBOX")
        uids: list[int] = []

        async def delivered() -> bool:  # the outbox appends it right after the lamp went on
            uids[:] = await mail.uids()
            return bool(uids)

        async with asyncio.timeout(10):
            while not await delivered():  # noqa: ASYNC110 - polling another process's mailbox
                await asyncio.sleep(0.1)
        [uid] = uids
        await asyncio.sleep(2.0)  # let any late or duplicate NOTIFY arrive before counting
        states = [(v, w) for _, v, w in lamp.notifies]
        assert states == [(MessageSummary(0, 0), False), (MessageSummary(1, 0), True)]

        # promise 3: the mail client opens it -> the lamp goes off within 2 s
        await mail.read(uid)
        took = await lamp.wait_for(lambda v, w: not w and v == MessageSummary(0, 1), 5)
        assert took < 2.0

        # promise 4 (lamp half): the mail client deletes it -> counts drop to zero
        await mail.delete([uid])
        took = await lamp.wait_for(lambda v, w: not w and v == MessageSummary(0, 0), 5)
        assert took < 2.0
        metrics = await serve.metrics()
        assert 'imapvm_calls_total{purpose="deposit"} 1' in metrics
        assert "imapvm_deposits_total 1" in metrics
    finally:
        lamp.close()
        await mail.close()
        assert await serve.stop() == 0
