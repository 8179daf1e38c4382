"""Kamailio started from contrib/kamailio/kamailio.cfg exactly as shipped: only its defines
for ports and paths are given on the command line (-A), as an operator would."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import free_port_udp_and_tcp

CONFIG = Path(__file__).resolve().parents[2] / "contrib" / "kamailio" / "kamailio.cfg"
SCHEMA = Path("/usr/share/kamailio/db_sqlite")
DOMAIN = "voicemail.invalid"


@dataclass
class Kamailio:
    nodes: list[tuple[str, int]]
    port: int = field(default_factory=free_port_udp_and_tcp)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kam")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def log(self) -> str:
        return (self.directory / "kamailio.log").read_text(errors="replace")

    def start(self) -> Kamailio:
        if shutil.which("kamailio") is None:
            raise RuntimeError("kamailio is not installed (scripts/bootstrap.sh test)")
        db = self.directory / "presence.sqlite"
        for schema in ("standard-create.sql", "presence-create.sql"):
            subprocess.run(["sqlite3", str(db)], input=(SCHEMA / schema).read_bytes(),
                           check=True, capture_output=True)
        (self.directory / "dispatcher.list").write_text(
            "".join(f"1 sip:{host}:{port}\n" for host, port in self.nodes))
        run = self.directory / "run"
        run.mkdir()
        cmd = ["kamailio", "-f", str(CONFIG), "-DD", "-E", "-m", "64", "-M", "8",
               "-Y", str(run), "-P", str(run / "kamailio.pid"),
               "-A", f"LISTEN=udp:127.0.0.1:{self.port}",
               "-A", f'DBURL="sqlite://{db}"',
               "-A", f'DISPATCHER_LIST="{self.directory / "dispatcher.list"}"',
               "-A", f'VM_DOMAIN="{DOMAIN}"']
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "kamailio.log", "ab"),  # noqa: SIM115 - child's
            start_new_session=True)
        return self

    async def wait_ready(self, within: float = 20.0) -> None:
        """Until Kamailio answers an OPTIONS addressed to itself."""
        from tests.telephony.pyphone import PyPhone

        phone = PyPhone("127.0.0.1", self.address)
        await phone.open()
        try:
            async with asyncio.timeout(within):
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        raise RuntimeError(f"kamailio exited:\n{self.log[-3000:]}")
                    phone.send_request("OPTIONS", f"sip:127.0.0.1:{self.port}")
                    try:
                        if (await asyncio.wait_for(phone.final_response(), 0.5)).status == 200:
                            return
                    except TimeoutError:
                        continue
        finally:
            phone.close()

    def nodes_down(self) -> list[str]:
        """Nodes whose last dispatcher event in the log is "down" (none yet counts as up)."""
        state: dict[str, str] = {}
        for line in self.log.splitlines():
            for word in ("down", "up"):
                marker = f"imapvm node {word}: "
                if marker in line:
                    uri = line.split(marker, 1)[1].strip()
                    state[uri.removeprefix("sip:").split("@")[-1]] = word  # host:port
        return [uri for uri, word in state.items() if word == "down"]

    async def wait_nodes_up(self, within: float = 20.0) -> None:
        """Until the dispatcher counts every node active again (the nodes start after
        Kamailio, whose first probes find them missing)."""
        async with asyncio.timeout(within):
            while self.nodes_down():  # noqa: ASYNC110 - Kamailio's log: another process
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        proc, self.process = self.process, None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if not os.environ.get("IMAPVM_KEEP_KAMAILIO"):
            shutil.rmtree(self.directory, ignore_errors=True)
