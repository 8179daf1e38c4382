"""Small network helpers shared by the server fixtures."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port the OS says is free right now (there is a race, but a short one on loopback)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_greeting(
    host: str,
    port: int,
    timeout: float,
    expect: bytes = b"* OK",
    alive: Callable[[], int | None] | None = None,
) -> bytes:
    """Connect until the server greets; returns the greeting line. Raises TimeoutError, at once
    if `alive` (a Popen.poll) says the server process has exited."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and (rc := alive()) is not None:
            raise TimeoutError(f"server process exited with status {rc}")
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                line = s.makefile("rb").readline()
                if line.startswith(expect):
                    return line
                last = RuntimeError(f"unexpected greeting {line!r}")
        except OSError as exc:
            last = exc
        time.sleep(0.02)
    raise TimeoutError(f"no IMAP greeting on {host}:{port} within {timeout}s: {last}")


def stop_process_group(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop a server started with start_new_session=True, and every process it left behind
    (Dovecot's imap/log/stats children outlive their master otherwise)."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def free_port_udp_and_tcp(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (SIP listens on both), at the time of asking."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")
