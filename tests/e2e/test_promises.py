"""The seed's promises through the running server, on Dovecot, with baresip as the caller, a
Python SIP phone subscribed for its lamp, and a plain IMAP client as the mail user."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from imapvm.telephony.message_summary import MessageSummary, parse_message_summary
from imapvm.telephony.sip.message import SipRequest
from tests.conftest import Account, make_account
from tests.e2e.serve import ServeProcess, imap_conf, leave_message_by_phone, serve_config
from tests.support.baresip import start_baresip
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient
from tests.support.speech import speech
from tests.telephony.pyphone import PyPhone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # real-time prompts on a busy machine

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


def _alice(dovecot: DovecotServer, acct: Account) -> str:
    return imap_conf(dovecot.port, "1234 => 4242,Alice Example,alice@example.org,,"
                                   f"imapuser={acct.user}|imappassword={acct.password}")


async def test_lamp_follows_deposits_and_the_mail_client(tmp_path: Path,
                                                         dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    serve = await serve_config(tmp_path, _alice(dovecot_slash, acct))
    subscriber = PyPhone("127.0.0.1", ("127.0.0.1", serve.sip_port))
    await subscriber.open()
    lamp = Lamp(subscriber)
    mail = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    try:
        subscriber.send_request("SUBSCRIBE", f"sip:1234@127.0.0.1:{serve.sip_port}",
                                extra=SUB, cseq=1)
        await lamp.wait_for(lambda v, w: v is not None and not w, 10)  # the lamp starts off

        # a caller leaves a message: the lamp turns on exactly once, with no blink
        await leave_message_by_phone(tmp_path, serve, 3.0)
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

        # promise 3: the mail client opens it -> the lamp goes off (the 2 s goal is measured
        # by bench/mwi_latency.py: no wall-clock assertion in a pass/fail test)
        await mail.read(uid)
        await lamp.wait_for(lambda v, w: not w and v == MessageSummary(0, 1), 10)

        # promise 4 (lamp half): the mail client deletes it -> counts drop to zero
        await mail.delete([uid])
        await lamp.wait_for(lambda v, w: not w and v == MessageSummary(0, 0), 10)
        metrics = await serve.metrics()
        assert 'imapvm_calls_total{purpose="deposit"} 1' in metrics
        assert "imapvm_deposits_total 1" in metrics
        # the server pushed the read and the delete: both recounts were timed
        pushes = int(next(line.split()[-1] for line in metrics.splitlines()
                          if line.startswith("imapvm_mwi_latency_seconds_count")))
        assert pushes >= 2
    finally:
        lamp.close()
        await mail.close()
        assert await serve.stop() == 0


def _prompt(name: str) -> np.ndarray:
    data, _ = soundfile.read(f"/usr/share/asterisk/sounds/en_US_f_Allison/{name}.wav",
                             dtype="int16")
    return data


async def _keys(phone, keys: str, gap: float = 0.35) -> None:  # type: ignore[no-untyped-def]
    for key in keys:
        await phone.send_digit(key)
        await asyncio.sleep(gap)


async def _check_call(tmp_path: Path, serve: ServeProcess, name: str):  # type: ignore[no-untyped-def]
    """baresip calls *97 with a long silence as its microphone; the test presses keys."""
    quiet = tmp_path / f"{name}.wav"
    soundfile.write(quiet, np.zeros(90 * 8000, np.int16), 8000, subtype="PCM_16")
    phone = await start_baresip(tmp_path / name, quiet,
                                dial=f"sip:*97@127.0.0.1:{serve.sip_port}", kill_after=120)
    await phone.wait_event("CALL_ESTABLISHED", within=10)
    await serve.menu_waits()  # vm-login said
    await _keys(phone, "1234#")
    await serve.menu_waits()  # vm-password said
    await _keys(phone, "4242#")
    return phone


async def test_phone_and_mail_client_see_one_state(tmp_path: Path,
                                                   dovecot_slash: DovecotServer) -> None:
    from tests.telephony.conftest import best_correlation, read_pcm

    acct = make_account(dovecot_slash)
    serve = await serve_config(tmp_path, _alice(dovecot_slash, acct))
    conf = tmp_path / "voicemail.conf"
    note = tmp_path / "note.wav"
    soundfile.write(note, speech(3.0).samples, 8000, subtype="PCM_16")
    for caller in ("Bob <5550001>", "Eve <5550002>"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "imapvm", "deposit", "1234", "--audio", str(note),
            "--caller", caller, "--config", str(conf))
        assert await proc.wait() == 0
    mail = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    try:
        await mail.select("INBOX")
        first, second = await mail.uids()

        # promise 1: hearing it on the phone makes the mail client see it read
        phone = await _check_call(tmp_path, serve, "check1")
        try:
            await serve.menu_waits()  # "you have 2 new messages", then the instructions
            await _keys(phone, "1")  # play the first message
            async with asyncio.timeout(10):
                while "\\Seen" not in await mail.flags(first):  # noqa: ASYNC110 - other process
                    await asyncio.sleep(0.2)
            assert "\\Seen" not in await mail.flags(second)
            # promise 2: deleting it on the phone removes it from the mail client
            await serve.menu_waits()  # envelope, the 3 s message, the instructions
            await _keys(phone, "7")
            await serve.menu_waits()  # "message deleted", the instructions
            await _keys(phone, "#")
            await phone.wait_event("CALL_CLOSED", within=20)
        finally:
            await phone.stop()
        async with asyncio.timeout(10):
            while first in await mail.uids():  # noqa: ASYNC110 - other process
                await asyncio.sleep(0.2)
        assert await mail.uids() == [second]

        # promise 4: the mail client deletes the other one; the phone no longer offers it
        await mail.delete([second])
        phone = await _check_call(tmp_path, serve, "check2")
        try:
            await serve.menu_waits()  # the intro and the instructions
            await _keys(phone, "#")
            await phone.wait_event("CALL_CLOSED", within=20)
        finally:
            await phone.stop()
        heard = np.concatenate([read_pcm(p) for p in phone.recordings])
        assert best_correlation(_prompt("vm-no"), heard) > 0.9  # "you have no messages"
        assert best_correlation(_prompt("vm-INBOX"), heard) < 0.8  # not "... new message"
    finally:
        await mail.close()
        assert await serve.stop() == 0


async def test_forward_with_comment_by_phone(tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    alice, bob = make_account(dovecot_slash), make_account(dovecot_slash)
    serve = await serve_config(tmp_path, imap_conf(dovecot_slash.port, (
        f"1234 => 4242,Alice,,,imapuser={alice.user}|imappassword={alice.password}\n"
        f"1235 => 5353,Bob,,,imapuser={bob.user}|imappassword={bob.password}")))
    conf = tmp_path / "voicemail.conf"
    note = tmp_path / "note.wav"
    soundfile.write(note, speech(3.0).samples, 8000, subtype="PCM_16")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imapvm", "deposit", "1234", "--audio", str(note),
        "--caller", "Carol <5550007>", "--config", str(conf))
    assert await proc.wait() == 0
    # the forwarding user talks all the time; what is recorded is what she says as a comment
    talk = tmp_path / "talk.wav"
    # (long enough to hear every menu out: baresip hangs up when its file ends)
    soundfile.write(talk, speech(200.0).samples, 8000, subtype="PCM_16")
    phone = await start_baresip(tmp_path / "fwd", talk,
                                dial=f"sip:*97@127.0.0.1:{serve.sip_port}", kill_after=280)
    try:
        await phone.wait_event("CALL_ESTABLISHED", within=10)
        # login, play message 1, 8 forward, to 1235, 1 prepend a comment
        for keys in ("1234#", "4242#", "1", "8", "1235#", "1"):
            await serve.menu_waits()
            await _keys(phone, keys)
        await serve.recording_starts()
        await asyncio.sleep(3.0)  # what Alice says as her comment (content, not a wait)
        await _keys(phone, "#")  # ends the comment
        for keys in ("1", "#"):  # review: 1 accept; then # leaves the mailbox
            await serve.menu_waits()
            await _keys(phone, keys)
        await phone.wait_event("CALL_CLOSED", within=20)
    finally:
        await phone.stop()
    mail = await AsyncMailClient.connect(dovecot_slash, bob.user, bob.password)
    try:
        await mail.select("INBOX")
        async with asyncio.timeout(10):
            while not await mail.uids():  # noqa: ASYNC110 - the server's outbox, another process
                await asyncio.sleep(0.2)
        [uid] = await mail.uids()
        raw = await mail.fetch(uid)
    finally:
        await mail.close()
        assert await serve.stop() == 0
    from imapvm.message import parse_message

    forwarded = parse_message(raw)
    assert forwarded.meta.caller_id_num == "5550007"  # the original caller, not Alice
    assert forwarded.meta.caller_id_name == "Carol"
    assert forwarded.intro is not None  # Alice's spoken comment, played first
    assert forwarded.intro.decode().whole_seconds >= 1
    assert forwarded.message.decode().whole_seconds == 3
