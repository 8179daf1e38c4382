"""`imapvm serve` as a process: the embedded default, reload on SIGHUP, graceful SIGTERM, and a
real phone (baresip) leaving a message that lands in the store."""

from __future__ import annotations

import email
import email.policy
import signal
from pathlib import Path

import pytest

from tests.e2e.serve import eventually, leave_message_by_phone, serve_config, start_serve

pytestmark = [pytest.mark.timeout(120)]


async def test_embedded_default_runs_and_says_so(tmp_path: Path) -> None:
    serve = await start_serve(tmp_path / "run", cwd=tmp_path)
    try:
        health = await serve.wait_healthy()
        assert health["embedded_default"] is True
        assert health["ok"] is True
        await serve.wait_log("embedded default")
        assert "demo mailbox 1234" in serve.log
        assert (tmp_path / "var" / "outbox" / "pending").is_dir()
        assert "imapvm_calls_total" in await serve.metrics()
    finally:
        rc = await serve.stop()
    assert rc == 0
    assert "stopped" in serve.log


async def test_sighup_applies_good_configuration_and_refuses_bad(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[default]\n100 => 1,Carol\n")
    serve = await start_serve(tmp_path / "run", "--config", str(conf),
                              "--set", f"paths.spool={tmp_path / 'spool'}",
                              "--set", f"paths.outbox={tmp_path / 'outbox'}")
    try:
        await serve.wait_healthy()
        conf.write_text("[general]\nmaxmsg=notanumber\n[default]\n100 => 1,Carol\n")
        serve.signal(signal.SIGHUP)
        await serve.wait_log("reload refused")
        assert (await serve.health())[0] == 200  # still serving the old configuration
        conf.write_text("[default]\n100 => 1,Carol\n101 => 2,Dave\n")
        serve.signal(signal.SIGHUP)
        await serve.wait_log("reloaded")
        assert '"added": ["101@default"]' in serve.log
    finally:
        assert await serve.stop() == 0


@pytest.mark.slow
async def test_a_caller_leaves_a_message_that_lands_in_the_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    conf = "[general]\nformat=wav|gsm\n\n[default]\n1234 => 4242,Alice Example\n"
    serve = await serve_config(tmp_path, conf)
    try:
        await leave_message_by_phone(tmp_path, serve, 4.0)
        inbox = spool / "default" / "1234" / "INBOX"
        await eventually((inbox / "msg0000.txt").exists, 15)
        txt = (inbox / "msg0000.txt").read_text()
        assert "<caller>" in txt
        duration = int(next(line.split("=")[1] for line in txt.splitlines()
                            if line.startswith("duration=")))
        assert 3 <= duration <= 6
        assert (inbox / "msg0000.wav").exists()
        assert (inbox / "msg0000.gsm").exists()
        assert 'imapvm_calls_total{purpose="deposit"} 1' in await serve.metrics()
    finally:
        assert await serve.stop() == 0


@pytest.mark.slow
async def test_a_phone_message_is_emailed_and_written_in_every_format(tmp_path: Path) -> None:
    """The server's path end to end: baresip leaves a message in a spool mailbox with e-mail
    and pager addresses; the spool gets every configured format, `mailcmd` (a capturing
    script) gets the e-mail with the recording and the pager notice, and /metrics counts them."""
    out = tmp_path / "captured"
    out.mkdir()
    script = tmp_path / "capture-mail"
    script.write_text(f'#!/bin/sh\nn=$(ls "{out}" | wc -l)\ncat > "{out}/$n.part"\n'
                      f'mv "{out}/$n.part" "{out}/$n.eml"\n')  # whole files only
    script.chmod(0o755)
    conf = (f"[general]\nformat=ulaw|wav49|wav\nmailcmd={script} -t\n\n[default]\n"
            "1234 => 4242,Alice Example,alice@example.com,alice-pager@example.com,attachfmt=wav\n")
    serve = await serve_config(tmp_path, conf)
    try:
        await leave_message_by_phone(tmp_path, serve, 3.0)
        inbox = tmp_path / "spool" / "default" / "1234" / "INBOX"
        await eventually((inbox / "msg0000.txt").exists, 15)
        assert {p.suffix for p in inbox.glob("msg0000.*")} >= {".txt", ".ulaw", ".WAV", ".wav"}
        await eventually(lambda: len(list(out.glob("*.eml"))) == 2, 15)
        mails = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                 for p in sorted(out.glob("*.eml"))]
        [mail] = [m for m in mails if "<alice@example.com>" in str(m["To"])]
        [pager] = [m for m in mails if "<alice-pager@example.com>" in str(m["To"])]
        assert "msg0000.wav" in [p.get_filename() for p in mail.walk()]
        assert not [k for k in mail if k.lower().startswith("x-asterisk")]
        assert pager["Subject"] == "New VM"
        metrics = await serve.metrics()
        assert 'imapvm_mail_sent_total{kind="email"} 1' in metrics
        assert 'imapvm_mail_sent_total{kind="pager"} 1' in metrics
    finally:
        assert await serve.stop() == 0
