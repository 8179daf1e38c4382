"""Small network helpers shared by the server fixtures."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


#: Where test servers' ports are picked: below the kernel's ephemeral range (so no outgoing
#: connection or unbound UDP socket of any process can take the port between the pick and the
#: server's bind, as happened with thousands of connections open on the machine) and above
#: imapvm's default RTP range (10000-20000).
_PICK_FROM = 20001


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP right now, outside the kernel's ephemeral range: only
    another explicit bind can take it before the caller binds it."""
    low, _ = _ephemeral_range()
    top = low - 1
    if top - _PICK_FROM < 1000:  # an unusual range: fall back to the kernel's choice
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    for _ in range(200):
        port = _random.randint(_PICK_FROM, top)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind((host, port))
                u.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port between {_PICK_FROM} and {top} on {host}")


_random = random.Random()  # seeded from the OS: parallel test sessions pick apart


def free_udp_block(count: int, host: str = "127.0.0.1") -> int:
    """An even port free as `free_port` picks it, whose ``count - 1`` successors are free UDP
    ports too right now (sipp's media base: audio and video RTP/RTCP on it and the next ports)."""
    for _ in range(200):
        base = free_port(host, socket.SOCK_DGRAM) & ~1
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {count} free UDP ports on {host}")


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
