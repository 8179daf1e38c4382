"""Run `imapvm serve` as a user does (a subprocess) and talk to it: health, logs, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from tests.support.net import free_port, free_port_udp_and_tcp


@dataclass
class ServeProcess:
    workdir: Path
    sip_port: int
    http_port: int
    proc: asyncio.subprocess.Process | None = None
    args: list[str] = field(default_factory=list)
    waits_seen: int = 0
    recordings_seen: int = 0

    async def menu_waits(self, within: float = 60.0) -> None:
        """Until a voice menu has said its prompts and waits for the caller, once more than
        when this last returned (the server runs with --log-level debug): press keys then,
        rather than after a sleep matched to prompt lengths."""
        from imapvm.ivr.keys import WAITING

        await eventually(lambda: self.log.count(WAITING) > self.waits_seen, within)
        self.waits_seen = self.log.count(WAITING)

    async def recording_starts(self, within: float = 60.0) -> None:
        """Until one more recording has started (after its beep) than when this last returned."""
        from imapvm.ivr.record import RECORDING

        await eventually(lambda: self.log.count(RECORDING) > self.recordings_seen, within)
        self.recordings_seen = self.log.count(RECORDING)

    @property
    def log(self) -> str:
        return (self.workdir / "serve.log").read_text(errors="replace")

    async def health(self) -> tuple[int, dict[str, object]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read()
        writer.close()
        status = int(data.split(b" ", 2)[1])
        return status, json.loads(data.split(b"\r\n\r\n", 1)[1])

    async def metrics(self) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        data = await reader.read()
        writer.close()
        return data.split(b"\r\n\r\n", 1)[1].decode()

    async def wait_healthy(self, within: float = 20.0) -> dict[str, object]:
        async with asyncio.timeout(within):
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"imapvm serve exited {self.proc.returncode}:\n{self.log}")
                try:
                    status, body = await self.health()
                    if status == 200:
                        return body
                except (OSError, ValueError, IndexError):
                    pass
                await asyncio.sleep(0.1)

    async def wait_log(self, text: str, within: float = 10.0) -> None:
        await eventually(lambda: text in self.log, within)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, within: float = 30.0) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise


async def eventually(predicate: Callable[[], bool], within: float, step: float = 0.05) -> None:
    """Wait until `predicate()` holds: for what another process writes, nothing can be awaited
    directly, so this polls (briefly) with a deadline."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling another process's files
            await asyncio.sleep(step)


async def start_serve(workdir: Path, *args: str, cwd: Path | None = None) -> ServeProcess:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    sp = ServeProcess(workdir, free_port_udp_and_tcp(), free_port())
    sp.args = [sys.executable, "-m", "imapvm", "serve",
               "--set", f'sip.listen=["127.0.0.1:{sp.sip_port}"]',
               "--set", f"http.listen=127.0.0.1:{sp.http_port}", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sp.proc = await asyncio.create_subprocess_exec(
        *sp.args, cwd=cwd or workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=open(workdir / "serve.log", "wb"),  # noqa: SIM115, ASYNC230 - owned by the child
        stderr=asyncio.subprocess.STDOUT,
    )
    return sp


async def serve_config(tmp_path: Path, conf_text: str) -> ServeProcess:
    """`imapvm serve` with this voicemail.conf, spool and outbox under `tmp_path`, healthy."""
    conf = tmp_path / "voicemail.conf"
    await asyncio.to_thread(conf.write_text, conf_text)
    serve = await start_serve(tmp_path / "run", "--config", str(conf), "--log-level", "debug",
                              "--set", f"paths.spool={tmp_path / 'spool'}",
                              "--set", f"paths.outbox={tmp_path / 'outbox'}")
    await serve.wait_healthy()
    return serve


def imap_conf(port: int, mailboxes: str) -> str:
    """A voicemail.conf storing `mailboxes` (mailbox lines) on the test IMAP server at `port`."""
    return (f"[general]\nformat=wav|gsm\nimapserver=127.0.0.1\nimapport={port}\n"
            f"imapflags=notls\n\n[default]\n{mailboxes}\n")


async def leave_message_by_phone(tmp_path: Path, serve: ServeProcess, speech_seconds: float,
                                 mailbox: str = "1234") -> None:
    """baresip calls `mailbox`, stays silent through ~13 s of greeting and instructions, says
    `speech_seconds` of speech and hangs up (at the end of its audio file)."""
    from tests.support.baresip import start_baresip
    from tests.support.speech import speech

    caller = tmp_path / "caller.wav"
    samples = np.concatenate([np.zeros(14 * 8000, np.int16), speech(speech_seconds).samples])
    await asyncio.to_thread(soundfile.write, caller, samples, 8000, subtype="PCM_16")
    phone = await start_baresip(tmp_path / "caller", caller,
                                dial=f"sip:{mailbox}@127.0.0.1:{serve.sip_port}")
    try:
        await phone.wait_event("CALL_ESTABLISHED", within=10)
        await phone.wait_event("CALL_CLOSED", within=40)
    finally:
        await phone.stop()
