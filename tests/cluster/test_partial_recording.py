"""A node killed (-9) while a caller speaks: the recording survives as one partial message.

A real `imapvm serve` process, the Python SIP phone as the caller, Dovecot as the store."""

from __future__ import annotations

import asyncio
import email
import signal
from pathlib import Path

import pytest

from tests.cluster.caller import TalkingCaller, journal_bytes
from tests.conftest import make_account
from tests.e2e.serve import eventually, imap_conf, start_serve
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_kill_9_mid_recording_delivers_the_kept_audio_exactly_once(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(imap_conf(dovecot_slash.port, "1234 => 4242,Alice Example,alice@example.org"
                              f",,imapuser={acct.user}|imappassword={acct.password}"))
    outbox = tmp_path / "outbox"
    args = ("--config", str(conf), "--set", f"paths.spool={tmp_path / 'spool'}",
            "--set", f"paths.outbox={outbox}")
    serve = await start_serve(tmp_path / "run1", *args)
    await serve.wait_healthy()
    caller = TalkingCaller(("127.0.0.1", serve.sip_port))
    try:
        assert await caller.start() == 200
        # the caller has been recorded for a while: at least 3 s of audio are on disk
        await eventually(lambda: journal_bytes(outbox) >= 3 * 16000, 30)
        serve.signal(signal.SIGKILL)
        assert serve.proc is not None
        await serve.proc.wait()
    finally:
        await caller.close()
    kept = journal_bytes(outbox) // 2
    assert kept >= 3 * 8000

    # a replacement starts on the same outbox and delivers what was kept
    again = await start_serve(tmp_path / "run2", *args)
    mail = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    try:
        health = await again.wait_healthy()
        assert not list((outbox / "recording").iterdir())  # recovered before serving
        async with asyncio.timeout(20):
            while (await again.health())[1]["outbox_depth"] != 0:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await mail.select("INBOX")
        uids = await mail.uids()
        assert len(uids) == 1, f"expected exactly one message, got {uids}"
        msg = email.message_from_bytes(await mail.fetch(uids[0]))
        assert msg["X-Imapvm-Partial"] == "yes"
        seconds = int(msg["X-Asterisk-VM-Duration"])
        assert seconds == kept // 8000  # the duration of the audio actually kept
        text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
        assert "incomplete" in text.get_payload(decode=True).decode()
        wav = next(p for p in msg.walk() if (p.get_filename() or "").endswith(".wav"))
        assert len(wav.get_payload(decode=True)) >= 2 * kept  # all kept samples, 16-bit PCM
        assert health["ok"] is True

        # a second restart delivers nothing more
        assert await again.stop() == 0
        third = await start_serve(tmp_path / "run3", *args)
        await third.wait_healthy()
        assert (await third.health())[1]["outbox_depth"] == 0
        await mail.select("INBOX")
        assert len(await mail.uids()) == 1
        assert await third.stop() == 0
    finally:
        await mail.close()
        await again.stop()
