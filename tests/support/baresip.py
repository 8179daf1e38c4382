"""baresip as a scripted SIP phone (reference/test-infra.md §5).

It dials a URI, streams a WAV file as its microphone, sends RFC 4733 digits when told, records
what it hears (sndfile module: ``dump-*-dec.wav``) and reports call events as JSON over
ctrl_tcp. baresip 1.0.0 can eat memory in some MWI paths, so it always runs under an address
space limit and a hard kill timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .net import free_port, free_port_udp_and_tcp

BARESIP = "baresip"
MODULES = "/usr/lib/baresip/modules"


def require_baresip() -> str:
    """Path of baresip; tests fail (not skip) without it."""
    path = shutil.which(BARESIP)
    if path is None:
        raise RuntimeError("baresip is not installed (apt-get install baresip)")
    return path


@dataclass
class Baresip:
    workdir: Path
    sip_port: int
    cons_port: int
    ctrl_port: int
    process: asyncio.subprocess.Process | None = None
    events: list[dict[str, object]] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _events_task: asyncio.Task[None] | None = None
    _event_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def recordings(self) -> list[Path]:
        return sorted(self.workdir.glob("rec/dump-*-dec.wav"))

    async def send_digit(self, digit: str, hold: float = 0.16) -> None:
        """Press and release a key on the cons UDP port (the release is KEYCODE_REL, 0x04)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(digit.encode(), ("127.0.0.1", self.cons_port))
            await asyncio.sleep(hold)
            s.sendto(b"\x04", ("127.0.0.1", self.cons_port))

    async def command(self, command: str, params: str | None = None) -> None:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.ctrl_port)
            self._events_task = asyncio.get_running_loop().create_task(self._read_events())
        payload: dict[str, str] = {"command": command}
        if params:
            payload["params"] = params
        body = json.dumps(payload).encode()
        self._writer.write(str(len(body)).encode() + b":" + body + b",")
        await self._writer.drain()

    async def _read_events(self) -> None:
        assert self._reader is not None
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = await self._reader.readuntil(b":")
                body = await self._reader.readexactly(int(length[:-1]))
                await self._reader.readexactly(1)
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(body))
                    self._event_arrived.set()

    async def wait_event(self, kind: str, within: float = 10.0) -> dict[str, object]:
        """Wait for a ctrl_tcp event such as CALL_ESTABLISHED or CALL_CLOSED."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if event.get("type") == kind:
                        return event
                self._event_arrived.clear()
                await self._event_arrived.wait()

    async def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            await self.command("quit")
        try:
            await asyncio.wait_for(self.process.wait(), 3)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._writer is not None:
            self._writer.close()
        if self._events_task is not None:
            self._events_task.cancel()


def _sip_port() -> int:
    """A port free for UDP and TCP whose successor is free for TCP too: baresip listens for
    SIP over TLS on the SIP port plus one."""
    for _ in range(50):
        port = free_port_udp_and_tcp()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no SIP port with a free successor for baresip's TLS listener")


async def start_baresip(workdir: Path, audio: Path, dial: str | None = None,
                        codec: str = "PCMU", kill_after: float = 60.0,
                        account: str | None = None, extra_config: str = "") -> Baresip:
    """Start baresip with ``audio`` as microphone; dial ``dial`` once it runs.

    baresip ends the call when the audio file ends, so pad ``audio`` with silence to keep
    the call up as long as the test needs it.
    """
    exe = require_baresip()
    phone = Baresip(workdir, _sip_port(), free_port(kind=socket.SOCK_DGRAM), free_port())
    _write_config(phone, audio, codec, account, extra_config)
    args = [exe, "-n", "127.0.0.1", "-f", str(workdir)]
    shell = f"ulimit -v 2000000; exec timeout -s KILL {kill_after} " + " ".join(
        f"'{a}'" for a in args
    )
    phone.process = await asyncio.create_subprocess_shell(
        shell, stdin=asyncio.subprocess.DEVNULL,
        stdout=open(workdir / "stdout.log", "wb"),  # noqa: SIM115, ASYNC230 - owned by child
        stderr=asyncio.subprocess.STDOUT, cwd=workdir,
    )
    # ctrl_tcp is up once baresip has started; connect to collect events from the start.
    async with asyncio.timeout(10):
        while True:
            try:
                await phone.command("reginfo")  # any command: proves ctrl_tcp is up
                break
            except OSError:
                if phone.process.returncode is not None:
                    raise RuntimeError(
                        f"baresip exited: {(workdir / 'stdout.log').read_text()[-2000:]}"
                    ) from None
                await asyncio.sleep(0.05)
    if dial:
        # Dial over ctrl_tcp (not ``-e``) so that no call event precedes our connection.
        await phone.command("dial", dial)
    return phone


def _write_config(phone: Baresip, audio: Path, codec: str, account: str | None = None,
                  extra_config: str = "") -> None:
    workdir = phone.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rate = 16000 if "G722" in codec.upper() else 8000  # the audio file's and the dumps' rate
    (workdir / "rec").mkdir(exist_ok=True)
    rtp_base = 40000 + (os.getpid() * 7 + phone.sip_port) % 20000 // 2 * 2
    (workdir / "config").write_text(
        "poll_method epoll\n"
        f"sip_listen 127.0.0.1:{phone.sip_port}\n"
        f"audio_player aubridge,nil\naudio_source aufile,{audio}\naudio_alert aubridge,nil\n"
        f"ausrc_srate {rate}\nauplay_srate {rate}\nausrc_channels 1\nauplay_channels 1\n"
        f"rtp_ports {rtp_base}-{rtp_base + 40}\n"
        f"module_path {MODULES}\n"
        "module cons.so\nmodule g711.so\nmodule g722.so\nmodule aufile.so\n"
        "module aubridge.so\n"
        "module sndfile.so\nmodule_app account.so\nmodule_app menu.so\n"
        "module_app ctrl_tcp.so\nmodule_app mwi.so\n"
        f"cons_listen 127.0.0.1:{phone.cons_port}\n"
        f"ctrl_tcp_listen 127.0.0.1:{phone.ctrl_port}\n"
        f"snd_path {workdir / 'rec'}\n" + extra_config
    )
    (workdir / "accounts").write_text(
        (account or f"<sip:caller@127.0.0.1>;regint=0;audio_codecs={codec};mwi=no") + "\n"
    )
