"""What push mode costs Dovecot: a mail client's STORE round trip with the imapvm push script
(contrib/dovecot/) posting to an imapvm that is up, not running (nothing listens: connection
refused), or hung (it accepts the connection and never answers), against a Dovecot without the
push plugins.

The Lua call runs in the IMAP process before the client gets its OK, so this is the delay a
mail user sees. `--pause` is imapvm_push_pause_secs: after a failed push the session stops
trying for that long (0: every change pays the failure, the worst case).

Run: .venv/bin/python bench/mwi_push_cost.py [--stores 200] [--pause 30] [--timeout-ms 300]
Last line: store_p50_ms_nopush= store_p50_ms_up= store_p99_ms_up= store_p50_ms_refused=
store_p99_ms_refused= store_max_ms_refused= store_p50_ms_hung= store_p99_ms_hung=
store_max_ms_hung= dovecot_rss_kib_nopush= dovecot_rss_kib_up= (all Dovecot processes, one
client session open)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import time
from pathlib import Path

import _common  # noqa: F401  (sets sys.path)
from _common import percentile, summary
from tests.support.dovecot import DovecotServer
from tests.support.dovecot_push import push_config
from tests.support.net import free_port
from tests.support.vmmail import voicemail

from imapvm.httpd import HealthServer, PushEndpoint
from imapvm.storage.imap.connection import ImapConnection
from imapvm.storage.imap.protocol import Literal, Raw

TOKEN = "bench-push-token-0123456789"


def session_rss_kib(server: DovecotServer) -> int:
    """Resident memory of every process of the Dovecot instance (its own session)."""
    assert server.process is not None
    sid, total = server.process.pid, 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of stat, the session id
                total += int(fields[21]) * resource.getpagesize() // 1024  # rss (pages)
        except (OSError, IndexError, ValueError):
            continue
    return total


async def stores(server: DovecotServer, n: int) -> tuple[list[float], int]:
    """`n` UID STORE round trips (\\Seen set, then cleared) by one client, in ms."""
    user = "costuser"
    filler = await ImapConnection.open(server.host, server.port)
    await filler.login(user, f"{user}-pw")
    await filler.execute("APPEND", "INBOX", Raw(b"()"), Literal(voicemail("100")))
    await filler.close()
    # a session of its own, so its first STORE is the first push it tries (and pays for)
    conn = await ImapConnection.open(server.host, server.port)
    await conn.login(user, f"{user}-pw")
    await conn.execute("SELECT", "INBOX")
    out = []
    for i in range(n):
        op = "+FLAGS" if i % 2 == 0 else "-FLAGS"
        t0 = time.perf_counter()
        await conn.execute("UID", "STORE", "1", op, Raw(b"(\\Seen)"))
        out.append((time.perf_counter() - t0) * 1000)
    rss = session_rss_kib(server)
    await conn.close()
    return out, rss


async def run_case(case: str, n: int, pause: int, timeout_ms: int) -> tuple[list[float], int]:
    port = free_port("127.0.0.1")
    extra = "" if case == "nopush" else push_config(
        f"http://127.0.0.1:{port}/mwi/push", TOKEN, timeout_msecs=timeout_ms, pause_secs=pause)
    received = [0]

    def handle(_body: bytes) -> None:
        received[0] += 1

    listener: asyncio.Server | None = None
    http: HealthServer | None = None
    hung: list[asyncio.StreamWriter] = []
    if case == "up":
        http = HealthServer(lambda: "", lambda: {"ok": True}, PushEndpoint(TOKEN, handle))
        await http.start("127.0.0.1", port)
    elif case == "hung":
        async def never_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            hung.append(w)  # keep it open, say nothing

        listener = await asyncio.start_server(never_answer, "127.0.0.1", port)
    server = DovecotServer("slash", extra_config=extra).start()
    try:
        times, rss = await stores(server, n)
    finally:
        server.stop()
        if http is not None:
            await http.close()
        if listener is not None:
            for w in hung:
                w.close()
            listener.close()
            with contextlib.suppress(Exception):
                await listener.wait_closed()
    note = f" (pushes received: {received[0]})" if case == "up" else ""
    print(f"{case:8s} STORE round trip ms: {summary(times)}{note}; Dovecot's processes "
          f"{rss} KiB resident", flush=True)
    return times, rss


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=200)
    ap.add_argument("--pause", type=int, default=30, help="imapvm_push_pause_secs")
    ap.add_argument("--timeout-ms", type=int, default=300, help="imapvm_push_timeout_msecs")
    args = ap.parse_args()
    both = {c: await run_case(c, args.stores, args.pause, args.timeout_ms)
            for c in ("nopush", "up", "refused", "hung")}
    res = {c: t for c, (t, _) in both.items()}
    print(" ".join([
        f"store_p50_ms_nopush={percentile(res['nopush'], 50):.2f}",
        f"store_p50_ms_up={percentile(res['up'], 50):.2f}",
        f"store_p99_ms_up={percentile(res['up'], 99):.2f}",
        f"store_p50_ms_refused={percentile(res['refused'], 50):.2f}",
        f"store_p99_ms_refused={percentile(res['refused'], 99):.2f}",
        f"store_p50_ms_hung={percentile(res['hung'], 50):.2f}",
        f"store_p99_ms_hung={percentile(res['hung'], 99):.2f}",
        f"store_max_ms_refused={max(res['refused']):.1f}",
        f"store_max_ms_hung={max(res['hung']):.1f}",
        f"dovecot_rss_kib_nopush={both['nopush'][1]} dovecot_rss_kib_up={both['up'][1]}",
        f"pause_s={args.pause} timeout_ms={args.timeout_ms}",
    ]))


if __name__ == "__main__":
    asyncio.run(main())
