"""Watcher logins are paced per IMAP server (a start-up with 10,000 watched mailboxes must not
storm the server), and serve raises its open-files limit for the connections it may hold.

The pacing checks are lower bounds (starts at least 1/rate apart): a busy machine can only make
them later, never earlier, so they are not timing assertions that flake under load."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Iterator

import pytest

from imapvm.mwi.engine import MwiEngine
from imapvm.server import FD_HEADROOM, open_files_needed, raise_open_files_limit
from imapvm.storage.base import ConnectionLimiter, MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import Timeouts
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.watching import WatchOptions
from tests.mwi.helpers import Recorder
from tests.support.dovecot import DovecotServer, pool_password
from tests.support.vmmail import voicemail


async def test_logins_start_no_faster_than_the_rate_and_in_order() -> None:
    limiter = ConnectionLimiter(100, logins_per_server=50, login_rate=40.0)
    loop = asyncio.get_running_loop()
    starts: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        async with limiter.login("imap.example", 143):
            starts.append((i, loop.time()))

    await asyncio.gather(*(one(i) for i in range(12)))
    assert [i for i, _ in starts] == list(range(12))  # first come, first served
    first = starts[0][1]
    early = [(k, t - first) for k, (_, t) in enumerate(starts) if t - first < k / 40 - 0.002]
    assert not early, early  # start k never before start 0 + k/rate
    assert limiter.logins_started == 12


async def test_other_servers_have_their_own_pace() -> None:
    limiter = ConnectionLimiter(100, login_rate=1.0)  # one a second per server
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for host in ("a.example", "b.example", "c.example"):
        async with limiter.login(host, 143):
            pass
    assert loop.time() - t0 < 1.0  # none of them waited for another server's turn


async def test_unpaced_when_the_rate_is_zero() -> None:
    limiter = ConnectionLimiter(100, login_rate=0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(50):
        async with limiter.login("imap.example", 143):
            pass
    assert loop.time() - t0 < 1.0


async def test_many_watchers_log_in_paced_against_dovecot(dovecot_slash: DovecotServer) -> None:
    """20 watched accounts at 25 logins/s: every lamp is right, every watcher logged in once,
    and the whole start took at least the 19 intervals the pace imposes."""
    users = [f"pace{i}" for i in range(20)]
    for u in users:
        dovecot_slash.write_maildir(u, [voicemail("100")])
    store = ImapStore(lambda box: ImapSettings(
        host=dovecot_slash.host, port=dovecot_slash.port, user=box.mailbox,
        password=pool_password(box.mailbox), vm_tag="100", context=box.context,
        timeouts=Timeouts(open=10, read=10, close=2)))
    sink = Recorder()
    engine = MwiEngine(lambda _box: store, [sink], WatchOptions(login_rate=25.0))
    loop = asyncio.get_running_loop()
    await engine.start()
    try:
        t0 = loop.time()
        for u in users:
            await engine.watch(MailboxRef(u, "default"))
        seen: dict[str, tuple[int, int]] = {}
        while len(seen) < len(users):
            u = await sink.next(within=30)
            seen[u.name] = (u.new, u.old)
        took = loop.time() - t0
    finally:
        await engine.stop()
        await store.aclose()
    assert seen == {f"{u}@default": (1, 0) for u in users}
    assert engine.limiter.logins_started == len(users)
    assert engine.limiter.failures_total == 0
    assert took >= 19 / 25 - 0.01


@pytest.fixture
def low_soft_limit() -> Iterator[tuple[int, int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        yield soft, hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_serve_raises_the_soft_limit_toward_what_it_needs(
        low_soft_limit: tuple[int, int], caplog: pytest.LogCaptureFixture) -> None:
    _, hard = low_soft_limit
    needed = open_files_needed(min(2000, hard - FD_HEADROOM))
    with caplog.at_level(logging.INFO, logger="imapvm"):
        soft, _ = raise_open_files_limit(needed)
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed
    assert any("open files limit raised from 256" in r.getMessage() for r in caplog.records)
    assert not any("hard limit" in r.getMessage() for r in caplog.records)


def test_one_clear_line_when_the_hard_limit_is_too_low(
        low_soft_limit: tuple[int, int], caplog: pytest.LogCaptureFixture) -> None:
    _, hard = low_soft_limit
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    needed = open_files_needed(hard)  # one watcher per descriptor the system allows, and more
    with caplog.at_level(logging.INFO, logger="imapvm"):
        soft, _ = raise_open_files_limit(needed)
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1, lines
    assert f"hard limit (RLIMIT_NOFILE) is {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}" \
        in lines[0]
    assert f"may need {needed}" in lines[0]
