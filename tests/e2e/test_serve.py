"""`imapvm serve` as a process: the embedded default, reload on SIGHUP, graceful SIGTERM, and a
real phone (baresip) leaving a message that lands in the store."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.e2e.serve import eventually, start_serve
from tests.support.baresip import start_baresip
from tests.support.speech import speech

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
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\nformat=wav|gsm\n\n[default]\n1234 => 4242,Alice Example\n")
    spool = tmp_path / "spool"
    serve = await start_serve(tmp_path / "run", "--config", str(conf),
                              "--set", f"paths.spool={spool}",
                              "--set", f"paths.outbox={tmp_path / 'outbox'}")
    # about 13 s of greeting and instructions, then 4 s of speech; baresip hangs up at the end
    caller = tmp_path / "caller.wav"
    soundfile.write(caller, np.concatenate([np.zeros(14 * 8000, np.int16),
                                            speech(4.0).samples]), 8000, subtype="PCM_16")
    try:
        await serve.wait_healthy()
        phone = await start_baresip(tmp_path / "phone", caller,
                                    dial=f"sip:1234@127.0.0.1:{serve.sip_port}")
        try:
            await phone.wait_event("CALL_ESTABLISHED", within=10)
            await phone.wait_event("CALL_CLOSED", within=40)
        finally:
            await phone.stop()
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
