"""Time to open a mailbox on Dovecot: counts plus the first folder listing, for folders of 100,
1,000 and 10,000 messages (half voicemail of the box, half ordinary mail).

Asterisk's own documentation says 100 emails can take up to 60 s. The goal here is under 50 ms
and flat in folder size. Three figures, each the median of several opens:
- first open in a new process: a fresh store (login, discovery, and the exact-match header scan
  of the whole folder, which a running server does once per folder);
- open with a new connection: the running server's store, but a new IMAP login (the headline);
- open on a pooled connection: what a phone session usually gets.

Run: .venv/bin/python bench/mailbox_open.py [--sizes 100,1000,10000] [--runs 7]
Last line: open_ms_100= open_ms_1000= open_ms_10000= (open with a new connection, median)
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _common  # noqa: F401  (sets sys.path)
from _common import percentile
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import simple_message
from tests.support.vmmail import voicemail

from imapvm.storage.base import Folder, MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import ImapConnection
from imapvm.storage.imap.protocol import Literal, Raw
from imapvm.storage.imap.store import ImapStore

BOX = MailboxRef("1234", "default")


async def fill(server: DovecotServer, user: str, n: int) -> None:
    conn = await ImapConnection.open(server.host, server.port)
    await conn.login(user, f"{user}-pw")
    batch: list[bytes | str] = []
    for i in range(n):
        msg = voicemail("1234", size=600) if i % 2 == 0 else simple_message(f"mail {i}", "x" * 400)
        batch += [Raw(b"()"), Literal(msg)]
        if len(batch) >= 200 or i == n - 1:
            await conn.execute("APPEND", "INBOX", *batch)
            batch = []
    await conn.close()


async def measure(server: DovecotServer, user: str, runs: int) -> tuple[list[float], list[float]]:
    def settings(box: MailboxRef) -> ImapSettings:
        return ImapSettings(host=server.host, port=server.port, user=user,
                            password=f"{user}-pw", vm_tag=box.mailbox, context=box.context)

    cold: list[float] = []
    for _ in range(runs):
        store = ImapStore(settings)
        t = time.perf_counter()
        counts = await store.counts(BOX)
        first = await store.list(BOX, Folder.INBOX if counts.new else Folder.OLD, limit=20)
        cold.append((time.perf_counter() - t) * 1000)
        assert first, "the listing must return messages"
        await store.aclose()
    session: list[float] = []
    warm: list[float] = []
    store = ImapStore(settings)
    await store.counts(BOX)
    for _ in range(runs):
        await store.drop_idle_connections()
        t = time.perf_counter()
        await store.counts(BOX)
        await store.list(BOX, Folder.INBOX, limit=20)
        session.append((time.perf_counter() - t) * 1000)
    for _ in range(runs):
        t = time.perf_counter()
        await store.counts(BOX)
        await store.list(BOX, Folder.INBOX, limit=20)
        warm.append((time.perf_counter() - t) * 1000)
    await store.aclose()
    return cold, session, warm


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    server = DovecotServer("slash", quota_kb=10_000_000).start()
    results: dict[int, float] = {}
    try:
        for size in (int(x) for x in args.sizes.split(",")):
            user = f"bench{size}"
            t = time.perf_counter()
            await fill(server, user, size)
            fill_s = time.perf_counter() - t
            cold, session, warm = await measure(server, user, args.runs)
            results[size] = percentile(session, 50)
            print(f"folder={size} messages ({size // 2} voicemail), filled in {fill_s:.1f}s:")
            for label, values in (("first open in a new process", cold),
                                  ("open with a new connection", session),
                                  ("open on a pooled connection", warm)):
                print(f"  {label:30} p50={percentile(values, 50):6.1f} ms  "
                      f"max={max(values):6.1f} ms")
    finally:
        server.stop()
    print(" ".join(f"open_ms_{k}={v:.1f}" for k, v in results.items()))


if __name__ == "__main__":
    asyncio.run(main())
