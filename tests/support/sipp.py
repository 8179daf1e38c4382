"""sipp as a scripted SIP peer for signalling tests (reference/test-infra.md §5).

One call per run (``-m 1``); the return code says whether the scenario passed. Every run gets
its own signalling and media ports so tests can run beside others on the same host.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from .net import free_port, free_udp_block


def require_sipp() -> str:
    """Path of sipp; tests fail (not skip) without it."""
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp is not installed (apt-get install sip-tester)")
    return path


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run_sipp(
    scenario: Path,
    target: tuple[str, int],
    workdir: Path,
    service: str = "1234",
    kill_after: float = 30.0,
    transport: str = "UDP",
) -> SippResult:
    """Run ``scenario`` once against ``target`` over UDP or TCP; waits for sipp to finish."""
    exe = require_sipp()
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    port = free_port(kind=socket.SOCK_DGRAM)
    media = free_udp_block(4)  # sipp binds audio and video RTP/RTCP: media .. media+3
    args = [
        exe, "-sf", str(scenario), "-s", service, "-i", "127.0.0.1", "-mi", "127.0.0.1",
        "-p", str(port), "-mp", str(media), "-m", "1", "-nostdin", "-trace_err",
        "-timeout", str(int(kill_after)), "-timeout_error", f"{target[0]}:{target[1]}",
        "-t", "t1" if transport == "TCP" else "u1",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), kill_after + 5)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
    errors = await asyncio.to_thread(_read_errors, workdir)
    return SippResult(proc.returncode or 0, out.decode(errors="replace")[-3000:], errors)


def _read_errors(workdir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in workdir.glob("*_errors.log"))
