"""Hostile callers against the running server (in process, spool storage, real UDP): the PIN
is no SIP password, lockouts hold across calls and sources and release after the back-off,
fail2ban matches the lines they log, and no typed digit reaches the log."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from imapvm.config.loader import load
from imapvm.server import VoicemailServer, check_call, deposit_call
from imapvm.storage.base import MailboxRef
from imapvm.telephony.sip.message import SipRequest
from tests.conftest import make_account
from tests.e2e.serve import imap_conf
from tests.support.dovecot import DovecotServer
from tests.support.net import free_port_udp_and_tcp
from tests.support.sipauth import DigestGuesser
from tests.telephony.pyphone import PyPhone

pytestmark = pytest.mark.timeout(120)

PIN = "31415926"
SECRET = "t7Vq-2pXw9LmZ4cR8sYb1KdE"
BOX = MailboxRef("1234", "default")
REPO = Path(__file__).resolve().parents[2]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as `imapvm serve` logs

Factory = Callable[[str], Awaitable[VoicemailServer]]


def write_config(tmp_path: Path, sip_extra: str) -> tuple[Path, Path]:
    # maxlogins=1: one attempt per call, typed ahead before the first prompt (digits pressed
    # during a prompt that takes none are dropped, as in Asterisk)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"[general]\nformat=wav\nmaxlogins=1\n\n[default]\n1234 => {PIN},Alice\n")
    port = free_port_udp_and_tcp()
    toml = tmp_path / "imapvm.toml"
    toml.write_text(
        f'[sip]\nlisten = ["127.0.0.1:{port}"]\ntrusted = ["127.0.0.1/32"]\n'
        f'rtp_ports = "20000-29998"\ntcp = false\n{sip_extra}\n'
        "[sip.lockout]\nfree_failures = 2\nbackoff = 30\nlock_after = 5\nlock_seconds = 600\n"
        f'[paths]\nspool = "{tmp_path / "spool"}"\noutbox = "{tmp_path / "outbox"}"\n'
        '[http]\nlisten = ""\n')
    return conf, toml


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Factory]:
    servers: list[VoicemailServer] = []

    async def make(sip_extra: str) -> VoicemailServer:
        work = tmp_path / f"s{len(servers)}"
        work.mkdir()
        conf, toml = write_config(work, sip_extra)
        loaded = load(conf, toml)
        assert loaded.ok, [str(d) for d in loaded.diagnostics]
        server = VoicemailServer(loaded, deposit_flow=deposit_call, check_flow=check_call)
        servers.append(server)
        await server.start()
        return server

    yield make
    for server in servers:
        await server.stop(grace=1)


def address(server: VoicemailServer) -> tuple[str, int]:
    assert server.sip is not None
    return server.sip.address


async def guess(server: VoicemailServer, source: str, password: str) -> int:
    guesser = await DigestGuesser(source, address(server)).open()
    try:
        return await guesser.attempt(password)
    finally:
        guesser.close()


async def test_pin_is_refused_as_sip_password_even_when_right(make_server: Factory) -> None:
    server = await make_server(f'[sip.credentials]\n"1234" = "{SECRET}"\n')
    assert await guess(server, "127.0.0.2", PIN) == 401  # the right PIN: still no
    assert await guess(server, "127.0.0.2", SECRET) == 200
    compat = await make_server("pin_as_sip_password = true\n")
    assert await guess(compat, "127.0.0.3", PIN) == 200  # only when asked for
    assert await guess(compat, "127.0.0.3", "00000000") == 401


def test_check_warns_about_the_switch_and_weak_secrets(tmp_path: Path) -> None:
    conf, toml = write_config(tmp_path, 'pin_as_sip_password = true\n'
                                        '[sip.credentials]\n"1234" = "4242"\n')
    messages = [str(d) for d in load(conf, toml).diagnostics.warnings]
    assert any("pin_as_sip_password = true" in m for m in messages)
    weak = next(m for m in messages if "sip.credentials.1234" in m)
    suggested = re.search(r'e\.g\. "([^"]+)"', weak)
    assert suggested is not None
    assert len(suggested.group(1)) >= 24  # a long random secret is offered
    assert "4242" not in weak  # and the weak one is not repeated


async def test_lock_holds_across_sources_and_releases_after_the_back_off(
        make_server: Factory, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO)
    server = await make_server(f'[sip.credentials]\n"1234" = "{SECRET}"\n')
    real_clock = server.lockouts.clock
    skipped = [0.0]
    server.lockouts.clock = lambda: real_clock() + skipped[0]
    sources = [f"127.0.0.{n}" for n in range(2, 7)]
    waits = []
    for source in sources:  # five sources, one wrong guess each
        assert await guess(server, source, "wrong-guess") == 401
        waits.append(round(server.lockouts.wait(BOX)))
        if source == "127.0.0.4":  # backing off: refused from anywhere, even with the secret
            assert await guess(server, "127.0.0.9", SECRET) == 403
        skipped[0] += server.lockouts.wait(BOX) + 0.1  # wait out each back-off
        skipped[0] -= 0.1 if source == sources[-1] else 0.0
    assert waits == [0, 0, 30, 60, 600]  # free, free, then doubling, then the lock
    assert server.lockouts.failures(BOX) == 5
    skipped[0] -= 600.0 - 1.0  # only 1 s into the lock
    assert await guess(server, "127.0.0.9", SECRET) == 403  # locked, even with the secret
    await server.lockouts.drain()
    shared = json.loads((tmp_path / "s0/spool/default/1234/lockout.json").read_bytes())
    assert shared["failures"] == 5  # where the other nodes read it
    skipped[0] += 600.0  # the lock's time has passed
    assert await guess(server, "127.0.0.9", SECRET) == 200
    await server.lockouts.drain()
    assert server.lockouts.failures(BOX) == 0
    shared = json.loads((tmp_path / "s0/spool/default/1234/lockout.json").read_bytes())
    assert shared["failures"] == 0  # cleared for every node

    # fail2ban's own tool matches the lines exactly as `imapvm serve` writes them
    formatter = logging.Formatter(LOG_FORMAT)
    log_file = tmp_path / "imapvm.log"
    log_file.write_text("\n".join(formatter.format(r) for r in caplog.records) + "\n")
    result = await asyncio.to_thread(
        subprocess.run, ["fail2ban-regex", "--print-all-matched", str(log_file),
                         str(REPO / "contrib/fail2ban/filter.d/imapvm.conf")],
        capture_output=True, text=True, check=True)
    matched = re.search(r"Failregex: (\d+) total", result.stdout)
    assert matched is not None
    assert int(matched.group(1)) == 7  # five failures, two attempts refused during the lock
    for source in [*sources, "127.0.0.9"]:
        assert f"source={source} " in result.stdout


async def _phone_login(server: VoicemailServer, typed: str,
                       caplog: pytest.LogCaptureFixture, success: bool = False) -> None:
    """Call *97 from the trusted PBX address, type ahead ``typed``, and hang up once the
    login is decided (an auth line logged, or the count cleared by a success)."""
    phone = PyPhone("127.0.0.1", address(server))
    await phone.open()
    seen = len([r for r in caplog.records if r.getMessage().startswith("auth ")])

    def decided() -> bool:
        lines = [r for r in caplog.records if r.getMessage().startswith("auth ")]
        if success:  # a successful login writes the cleared state
            return (server.lockouts.failures(BOX) == 0
                    and server.lockouts._boxes.get(BOX) is not None)
        return len(lines) > seen

    try:
        assert (await phone.call(user="*97")).status == 200
        seq, ts = 1, 160
        for digit in typed:
            seq = await phone.send_dtmf(digit, seq, ts)
            ts += 1600
        async with asyncio.timeout(30):
            while not decided():  # noqa: ASYNC110 - the server's log is what tells
                await asyncio.sleep(0.05)
        assert phone.uri is not None
        phone.send_request("BYE", phone.uri)
        while True:
            msg = await phone.next_sip(within=10)
            if isinstance(msg, SipRequest) and msg.method == "BYE":
                phone.respond(msg, 200)  # the server hung up first
                return
            if getattr(msg, "status", 0) >= 200:
                return
    finally:
        phone.close()


@pytest.mark.slow
async def test_phone_logins_count_across_calls_and_no_digit_is_logged(
        make_server: Factory, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    server = await make_server("")
    wrong = ["57575757", "68686868", "79797979"]
    for attempt in wrong:  # three calls, one wrong PIN each
        await _phone_login(server, f"1234#{attempt}#", caplog)
    assert server.lockouts.failures(BOX) == 3  # free, free, then a 30 s back-off
    await _phone_login(server, f"1234#{PIN}#", caplog)  # the right PIN, in the back-off: no
    assert server.lockouts.failures(BOX) == 3  # not reset: the right PIN was refused
    assert any(r.getMessage().startswith("auth refused (locked): source=127.0.0.1 user=1234")
               for r in caplog.records)
    real_clock = server.lockouts.clock
    server.lockouts.clock = lambda: real_clock() + 31  # the back-off has passed
    await _phone_login(server, f"1234#{PIN}#", caplog, success=True)
    assert server.lockouts.failures(BOX) == 0  # logged in: the count is cleared
    messages = [r.getMessage() for r in caplog.records]
    assert any("DTMF digit received" in m for m in messages)  # the digits did arrive
    for secret in (PIN, *wrong):
        assert not any(secret in m for m in messages), secret
    assert not any(re.search(r"\bdigit[ =:]+[0-9*#A-D]\b", m) for m in messages)


async def test_two_nodes_on_dovecot_share_the_lock(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    """Node A counts the failures; node B, on the same Dovecot mailbox (METADATA), refuses
    the right secret while the lock holds and accepts it after; the success clears A too."""
    account = make_account(dovecot_slash)
    nodes: list[VoicemailServer] = []
    skipped = [0.0]
    real = time.time
    try:
        for name in ("a", "b"):
            work = tmp_path / name
            work.mkdir()
            conf, toml = write_config(work, f'[sip.credentials]\n"1234" = "{SECRET}"\n')
            conf.write_text(imap_conf(dovecot_slash.port, (
                f"1234 => {PIN},Alice,,,imapuser={account.user}|"
                f"imappassword={account.password}")))
            loaded = load(conf, toml)
            assert loaded.ok, [str(d) for d in loaded.diagnostics]
            node = VoicemailServer(loaded, deposit_flow=deposit_call, check_flow=check_call)
            node.lockouts.clock = lambda: real() + skipped[0]
            nodes.append(node)
            await node.start()
        a, b = nodes
        for n in range(2, 7):  # five sources against node A, waiting out each back-off
            assert await guess(a, f"127.0.0.{n}", "wrong-guess") == 401
            skipped[0] += a.lockouts.wait(BOX) + 0.1 if n < 6 else 1.0
        await a.lockouts.drain()
        await b.lockouts.refresh(BOX)  # what B reads before a login (in the background)
        assert b.lockouts.failures(BOX) == 5
        assert await guess(b, "127.0.0.9", SECRET) == 403  # A's lock holds on B
        skipped[0] += 600.0
        assert await guess(b, "127.0.0.9", SECRET) == 200
        await b.lockouts.drain()
        await a.lockouts.refresh(BOX)
        assert a.lockouts.failures(BOX) == 0  # B's success cleared it for A too
    finally:
        for node in nodes:
            await node.stop(grace=1)


async def test_a_call_for_a_mailbox_that_does_not_exist_gets_404_and_a_log_line(
        make_server: Factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = await make_server("")
    phone = PyPhone("127.0.0.1", address(server))
    await phone.open()
    try:
        assert (await phone.call(user="999")).status == 404  # never answered
        phone.call_id = "second-call"
        assert (await phone.call(user="1234")).status == 200  # a real one still is
        assert phone.uri is not None
        phone.send_request("BYE", phone.uri)
        while getattr(await phone.next_sip(), "status", 0) < 200:
            pass
    finally:
        phone.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("no mailbox 999, refused with 404" in line for line in lines)
