"""The Dovecot sizing the README gives for many watched mailboxes (`sizing_config`) does what
it claims: one imap process serves the IDLE sessions of many users, and Dovecot starts without
a warning about its limits."""

from __future__ import annotations

import re

from imapvm.storage.imap.connection import ImapConnection
from tests.support.dovecot import DovecotServer, pool_password, sizing_config


async def test_one_imap_process_serves_many_users_in_idle() -> None:
    server = DovecotServer("slash", extra_config=sizing_config(300, client_limit=100)).start()
    conns: list[ImapConnection] = []
    try:
        for i in range(12):
            conn = await ImapConnection.open(server.host, server.port)
            conns.append(conn)
            await conn.login(f"size{i}", pool_password(f"size{i}"))
            await conn.execute("SELECT", "INBOX")
        async with conns[0].idle():
            pass
        log = server.log_path.read_text(errors="replace")
    finally:
        for conn in conns:
            await conn.close()
        server.stop()
    pids = set(re.findall(r"Login: user=<size\d+>.*?mpid=(\d+)", log))
    assert len(pids) == 1, pids  # all twelve users in one process
    assert not [line for line in log.splitlines() if "Warning" in line or "Error" in line]
