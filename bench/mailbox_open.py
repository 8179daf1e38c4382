"""Time to open a mailbox on Dovecot: counts plus the first folder listing, for folders of 100,
1,000 and 10,000 messages (half voicemail of the box, half ordinary mail).

Asterisk's own documentation says 100 emails can take up to 60 s. The goal here is under 50 ms
and flat in folder size (10,000 within 1.5x of 100), cold included. Figures (medians):
- first scan: a store that has never seen the folder (login, discovery, and the exact-match
  header scan of the whole folder; a deployment pays this once per folder, ever);
- cold open: a new process (python -c, fresh imports and connection) whose store finds the
  folder index an earlier process saved under [paths] cache (after `prewarm`, which `serve`
  runs at start-up: the TLS context's CA store, ~20 ms once per process);
- open with a new connection: the running server's store, a new IMAP login (the headline);
- open after a change: the same, but another client changed a flag just before (the folder
  must be rescanned: flag searches plus headers of new messages only);
- open on a pooled connection: what a phone session usually gets.

Run: .venv/bin/python bench/mailbox_open.py [--sizes 100,1000,10000] [--runs 7]
Last line: open_ms_100= open_ms_1000= open_ms_10000= cold_open_ms_10000= (and the others)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

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
DOVECOT_LARGE_FOLDERS = "maildir_very_dirty_syncs = yes\n"


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


COLD = """
import asyncio, sys, time
sys.path[:0] = {paths!r}
from imapvm.storage.base import Folder, MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore

async def main():
    box = MailboxRef("1234", "default")
    store = ImapStore(lambda b: ImapSettings(host={host!r}, port={port}, user={user!r},
                      password={password!r}, vm_tag=b.mailbox, context=b.context),
                      index_dir=__import__("pathlib").Path({index!r}))
    await store.prewarm()  # as `imapvm serve` does at start-up, before it takes calls
    t = time.perf_counter()
    counts = await store.counts(box)
    first = await store.list(box, Folder.INBOX if counts.new else Folder.OLD, limit=20)
    print((time.perf_counter() - t) * 1000)
    assert first
    await store.aclose()

asyncio.run(main())
"""


async def cold_open(server: DovecotServer, user: str, index: Path) -> float:
    code = COLD.format(paths=sys.path[:3], host=server.host, port=server.port, user=user,
                       password=f"{user}-pw", index=str(index))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code,
                                                stdout=asyncio.subprocess.PIPE,
                                                env=dict(os.environ))
    out, _ = await proc.communicate()
    assert proc.returncode == 0, "the cold-open process failed"
    return float(out.decode().strip().splitlines()[-1])


async def measure(server: DovecotServer, user: str, runs: int) -> dict[str, list[float]]:
    def settings(box: MailboxRef) -> ImapSettings:
        return ImapSettings(host=server.host, port=server.port, user=user,
                            password=f"{user}-pw", vm_tag=box.mailbox, context=box.context)

    out: dict[str, list[float]] = {k: [] for k in ("first scan", "cold open",
                                                   "open with a new connection",
                                                   "open after a change",
                                                   "open on a pooled connection")}
    index = Path(tempfile.mkdtemp(prefix="imapvm-index-"))
    for _ in range(runs):
        store = ImapStore(settings)  # no index: the folder is scanned as if never seen
        t = time.perf_counter()
        counts = await store.counts(BOX)
        first = await store.list(BOX, Folder.INBOX if counts.new else Folder.OLD, limit=20)
        out["first scan"].append((time.perf_counter() - t) * 1000)
        assert first, "the listing must return messages"
        await store.aclose()
    store = ImapStore(settings, index_dir=index)
    await store.counts(BOX)
    await store.list(BOX, Folder.INBOX, limit=20)
    await store.aclose()  # the index is saved
    for _ in range(runs):
        out["cold open"].append(await cold_open(server, user, index))
    store = ImapStore(settings, index_dir=index)
    await store.counts(BOX)
    other = await ImapConnection.open(server.host, server.port)
    await other.login(user, f"{user}-pw")
    await other.execute("SELECT", "INBOX")
    for i in range(runs):
        await store.drop_idle_connections()
        t = time.perf_counter()
        await store.counts(BOX)
        await store.list(BOX, Folder.INBOX, limit=20)
        out["open with a new connection"].append((time.perf_counter() - t) * 1000)
        # another client changes a flag: the next open must rescan
        await other.execute("UID", "STORE", "1", "+FLAGS" if i % 2 == 0 else "-FLAGS",
                            Raw(b"(\\Answered)"))
        await store.drop_idle_connections()
        t = time.perf_counter()
        await store.counts(BOX)
        await store.list(BOX, Folder.INBOX, limit=20)
        out["open after a change"].append((time.perf_counter() - t) * 1000)
    for _ in range(runs):
        t = time.perf_counter()
        await store.counts(BOX)
        await store.list(BOX, Folder.INBOX, limit=20)
        out["open on a pooled connection"].append((time.perf_counter() - t) * 1000)
    await other.close()
    await store.aclose()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    # Dovecot as the README tells operators to run it for large folders: with maildir, a SELECT
    # otherwise re-reads the whole directory (25-45 ms for 10,000 files on this machine).
    server = DovecotServer("slash", quota_kb=10_000_000,
                           extra_config=DOVECOT_LARGE_FOLDERS).start()
    results: dict[str, float] = {}
    try:
        for size in (int(x) for x in args.sizes.split(",")):
            user = f"bench{size}"
            t = time.perf_counter()
            await fill(server, user, size)
            fill_s = time.perf_counter() - t
            figures = await measure(server, user, args.runs)
            print(f"folder={size} messages ({size // 2} voicemail), filled in {fill_s:.1f}s:")
            for label, values in figures.items():
                print(f"  {label:30} p50={percentile(values, 50):6.1f} ms  "
                      f"max={max(values):6.1f} ms")
            results[f"open_ms_{size}"] = percentile(figures["open with a new connection"], 50)
            results[f"cold_open_ms_{size}"] = percentile(figures["cold open"], 50)
            results[f"changed_open_ms_{size}"] = percentile(figures["open after a change"], 50)
            results[f"first_scan_ms_{size}"] = percentile(figures["first scan"], 50)
    finally:
        server.stop()
    order = sorted(results, key=lambda k: (not k.startswith("open_ms"),
                                           not k.startswith("cold"), k))
    print(" ".join(f"{k}={results[k]:.1f}" for k in order))



if __name__ == "__main__":
    asyncio.run(main())
