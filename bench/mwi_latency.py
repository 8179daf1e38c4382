"""MWI latency: from another client's change to the sink's update, with many watched accounts.

One Dovecot (NOTIFY), sized the way the README's MWI section tells operators to size theirs
(`tests.support.dovecot.sizing_config`: `service imap { client_limit, process_limit }`,
`default_client_limit`, `mail_max_userip_connections`, and the kernel's `fs.inotify.*` limits,
raised for the run and put back afterwards). N accounts, each a different IMAP user with one
voicemail written straight into its Maildir; one MwiEngine watching all of them (one connection
each, the portable per-connection mode) with the default login pacing.

Then, on a sample of accounts, a second client (our own asyncio IMAP connection, logged in as
that user) runs `UID STORE +FLAGS (\\Seen)`, later `UID STORE +FLAGS (\\Deleted)` + `EXPUNGE`;
the clock runs from the command's OK to the sink receiving the matching update. Dovecot itself
pushes about 0.5 s after a change, so each change is also watched by a bare IDLE client of the
same account (the floor: what any IMAP client could know, at the same moment, under the same
load). A change that does not reach the sink within 10 s is counted lost (`mwi_lost`), never
dropped silently; its latency is not in the percentiles.

Memory per watched account: the process RSS grown from before `watch` to after every account's
first update, divided by N (connections, watcher tasks, store caches). `--tracemalloc` lists
what the Python heap grew by, per source line (slower; run it apart from the figures).

`--mode push` watches the same accounts in push mode (`[mwi] watch = "push"`,
storage/imap/push.py): the same Dovecot also runs contrib/dovecot's Lua script, which posts every
change to an HTTP endpoint of the bench process (imapvm's own `HealthServer` with
`POST /mwi/push`); no connection per account, a few counting connections and one sentinel.
The floor stays the bare IDLE client's wake-up (what the per-connection mode waits for), so
in push mode the sink can be ahead of it ("after the floor" negative).

Run: .venv/bin/python bench/mwi_latency.py [--accounts 1000,10000] [--samples 100]
                                          [--mode connection|push]
Last line: floor_ms= floor_p99_ms= mwi_p50_ms_<N>= mwi_p99_ms_<N>= mwi_lost= kib_per_account= mode=
(N the biggest size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import random
import resource
import signal
import time
import tracemalloc
from dataclasses import dataclass, field

import _common  # noqa: F401  (sets sys.path)
from _common import percentile
from tests.support.dovecot import (
    DovecotServer,
    inotify_sysctls,
    pool_password,
    raised_sysctls,
    sizing_config,
)
from tests.support.dovecot_push import push_config
from tests.support.net import free_port
from tests.support.vmmail import voicemail

from imapvm.httpd import HealthServer, PushEndpoint
from imapvm.mwi.engine import MwiEngine
from imapvm.mwi.model import MwiUpdate
from imapvm.storage.base import MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import ImapConnection, Timeouts
from imapvm.storage.imap.protocol import Raw
from imapvm.storage.imap.push import PushHub, PushOptions
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.watching import WatchOptions

LOST_AFTER = 10.0  # seconds without the sink's update: the change counts as lost
BOX = "100"  # every account's voicemail box number (the X-Asterisk-VM-Extension tag)


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


class Waiter:
    """The sink: wakes whoever waits for a given state of a given name."""

    name = "bench"

    def __init__(self, expected_first: int) -> None:
        self.first: dict[str, MwiUpdate] = {}
        self._wanted: dict[str, tuple[tuple[int, int], asyncio.Future[float]]] = {}
        self.all_known = asyncio.Event()
        self.expected_first = expected_first

    async def publish(self, update: MwiUpdate) -> None:
        now = time.perf_counter()
        if update.name not in self.first:
            self.first[update.name] = update
            if len(self.first) >= self.expected_first:
                self.all_known.set()
        want = self._wanted.get(update.name)
        if want and (update.mwi_new, update.old) == want[0] and not want[1].done():
            want[1].set_result(now)

    def expect(self, name: str, new: int, old: int) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._wanted[name] = ((new, old), fut)
        return fut


async def login(server: DovecotServer, user: str) -> ImapConnection:
    conn = await ImapConnection.open(server.host, server.port,
                                     timeouts=Timeouts(open=30, read=30))
    await conn.login(user, pool_password(user))
    return conn


def fill(server: DovecotServer, users: list[str]) -> None:
    """One unseen voicemail per account, written as a Maildir file (Dovecot indexes it at the
    watcher's first login; the first update of every lamp is checked to be 1 new, 0 old)."""
    for user in users:
        server.write_maildir(user, [voicemail(BOX)])


@dataclass
class Sample:
    mwi: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    excess: list[float] = field(default_factory=list)  # mwi - floor of the same change
    lost: int = 0
    floor_lost: int = 0


async def change(server: DovecotServer, sink: Waiter, user: str, out: Sample) -> None:
    """Two changes of `user`'s mailbox (read, then deleted), each timed at the sink and at a
    bare IDLE client of the same account."""
    name = f"{user}@default"
    bare, mutator = await login(server, user), await login(server, user)
    try:
        await bare.execute("SELECT", "INBOX")
        await mutator.execute("SELECT", "INBOX")
        steps = [((0, 1), [("UID", "STORE", "1", "+FLAGS", Raw(b"(\\Seen)"))]),
                 ((0, 0), [("UID", "STORE", "1", "+FLAGS", Raw(b"(\\Deleted)")),
                           ("EXPUNGE",)])]
        for (new, old), commands in steps:
            fut = sink.expect(name, new, old)
            async with bare.idle() as pushes:
                for cmd in commands:
                    await mutator.execute(*cmd)
                t0 = time.perf_counter()
                floor_ms: float | None = None
                try:
                    await asyncio.wait_for(pushes.get(), LOST_AFTER)
                    floor_ms = (time.perf_counter() - t0) * 1000
                    out.floor.append(floor_ms)
                except TimeoutError:
                    out.floor_lost += 1
            try:
                at = await asyncio.wait_for(fut, max(0.0, LOST_AFTER - (time.perf_counter() - t0)))
            except TimeoutError:
                out.lost += 1
                continue
            ms = (at - t0) * 1000
            out.mwi.append(ms)
            if floor_ms is not None:
                out.excess.append(ms - floor_ms)
    finally:
        await bare.close()
        await mutator.close()


def top_growth(before: tracemalloc.Snapshot, n: int) -> None:
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"[{n}] tracemalloc: Python heap grew {total / n / 1024:.1f} KiB per account; top:",
          flush=True)
    by_file: dict[str, int] = {}
    for st in stats:
        name = st.traceback[0].filename.split("/src/")[-1].split("/lib/")[-1]
        by_file[name] = by_file.get(name, 0) + st.size_diff
    for name, size in sorted(by_file.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {size / n:8.0f} B/acct  {name} (all lines)", flush=True)
    for s in stats[:25]:
        frame = s.traceback[0]
        print(f"    {s.size_diff / n:8.0f} B/acct {s.count_diff / n:6.2f} blk/acct  "
              f"{frame.filename.split('/src/')[-1].split('/lib/')[-1]}:{frame.lineno}",
              flush=True)


PUSH_TOKEN = "bench-push-token-0123456789"


async def run_size(server: DovecotServer, n: int, samples: int, parallel: int,
                   trace: bool, push: tuple[int, int] | None = None) -> tuple[Sample, float]:
    """`push`: (the port Dovecot posts to, counting connections) for push mode."""
    users = [f"b{n}x{i}" for i in range(n)]
    t = time.perf_counter()
    await asyncio.to_thread(fill, server, users)
    print(f"[{n}] filled {n} accounts (Maildir files) in {time.perf_counter() - t:.1f}s",
          flush=True)
    by_box = {MailboxRef(u, "default"): u for u in users}

    def settings_for(box: MailboxRef) -> ImapSettings:
        user = by_box[box]
        return ImapSettings(host=server.host, port=server.port, user=user,
                            password=pool_password(user), vm_tag=BOX, context="default",
                            timeouts=Timeouts(open=30, read=30))

    hub = PushHub(PushOptions(connections=push[1])) if push else None
    store = ImapStore(settings_for, push=hub)
    http: HealthServer | None = None
    if push and hub:
        http = HealthServer(lambda: "", lambda: {"ok": True}, PushEndpoint(PUSH_TOKEN, hub.receive))
        await http.start("127.0.0.1", push[0])
    sink = Waiter(n)
    recount_ms: list[float] = []  # a watcher's push received -> its recount confirmed
    sampling = False

    def on_latency(seconds: float) -> None:
        if sampling:
            recount_ms.append(seconds * 1000)

    engine = MwiEngine(lambda _b: store, [sink],
                       WatchOptions(max_connections_per_server=n + 10, on_latency=on_latency))
    await engine.start()
    try:  # the engine stops whatever happens (a failure, SIGTERM, Ctrl-C)
        gc.collect()
        if trace:
            tracemalloc.start(1)
            snap = tracemalloc.take_snapshot()
        before = rss_kib()
        t = time.perf_counter()
        for box in by_box:
            await engine.watch(box)
        try:
            await asyncio.wait_for(sink.all_known.wait(), 60 + n / 20)
        except TimeoutError:
            print(f"[{n}] only {len(sink.first)} of {n} lamps known after {60 + n / 20:.0f}s",
                  flush=True)
            raise
        took = time.perf_counter() - t
        gc.collect()
        kib = (rss_kib() - before) / n
        if trace:
            top_growth(snap, n)
            tracemalloc.stop()
        wrong = [u for u in sink.first.values() if (u.mwi_new, u.old) != (1, 0)]
        print(f"[{n}] all {n} lamps known in {took:.1f}s ({n / took:.0f} logins/s); "
              f"{kib:.1f} KiB per watched account; first counts wrong: {len(wrong)}"
              f"{' e.g. ' + str(wrong[0]) if wrong else ''}; "
              f"watcher connection failures: {engine.limiter.failures_total}", flush=True)

        chosen = random.Random(n).sample(users, min(samples, n))
        sampling = True
        out = Sample()
        sem = asyncio.Semaphore(parallel)

        async def one(user: str) -> None:
            async with sem:
                await asyncio.sleep(random.random() * 0.2)  # stagger the clients
                await change(server, sink, user, out)

        await asyncio.gather(*(one(u) for u in chosen))
    finally:
        await engine.stop()
        await store.aclose()
        if http is not None:
            await http.close()
    print(f"[{n}] floor (bare IDLE client, same changes): p50={percentile(out.floor, 50):.1f} "
          f"p99={percentile(out.floor, 99):.1f} ms (n={len(out.floor)}, "
          f"missed={out.floor_lost})", flush=True)
    print(f"[{n}] change -> sink: p50={percentile(out.mwi, 50):.1f} "
          f"p99={percentile(out.mwi, 99):.1f} max={max(out.mwi, default=float('nan')):.1f} ms "
          f"(n={len(out.mwi)}, lost={out.lost}); after the floor: "
          f"p50={percentile(out.excess, 50):.1f} p99={percentile(out.excess, 99):.1f} ms",
          flush=True)
    if recount_ms:  # the imapvm part of "after the floor" (debounce + recount round trips)
        print(f"[{n}] within imapvm, push received -> recount confirmed: "
              f"p50={percentile(recount_ms, 50):.1f} p99={percentile(recount_ms, 99):.1f} "
              f"max={max(recount_ms):.1f} ms (n={len(recount_ms)}; includes the "
              f"{WatchOptions().debounce * 1000:.0f} ms debounce)", flush=True)
    return out, kib


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", default="100,1000")
    ap.add_argument("--samples", type=int, default=100, help="accounts changed per size")
    ap.add_argument("--parallel", type=int, default=8, help="accounts changing at once")
    ap.add_argument("--client-limit", type=int, default=1000,
                    help="Dovecot's service imap { client_limit }")
    ap.add_argument("--mode", choices=("connection", "push"), default="connection",
                    help="watch by a connection per account, or by Dovecot's pushes")
    ap.add_argument("--push-connections", type=int, default=PushOptions().connections,
                    help="push mode: counting connections ([mwi] push_connections)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="list the Python heap's growth per watched account by source line")
    args = ap.parse_args()
    sizes = [int(x) for x in args.accounts.split(",")]
    big = max(sizes)
    connections = big + 2 * args.parallel + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # Dovecot inherits it too
    with contextlib.ExitStack() as stack:
        kernel = stack.enter_context(raised_sysctls(inotify_sysctls(connections)))
        for key, (old, now) in kernel.items():
            print(f"{key}: {old}{f' -> {now} for the run' if now != old else ''}", flush=True)
        config = sizing_config(connections, client_limit=args.client_limit)
        push = None
        if args.mode == "push":
            push = (free_port("127.0.0.1"), args.push_connections)
            config += push_config(f"http://127.0.0.1:{push[0]}/mwi/push", PUSH_TOKEN)
        server = DovecotServer("slash", extra_config=config).start()
        stack.callback(server.stop)
        print(f"dovecot sized for {connections} connections: client_limit={args.client_limit}; "
              f"RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}", flush=True)
        results = {}
        try:
            for n in sizes:
                results[n] = await run_size(server, n, args.samples, args.parallel,
                                            args.tracemalloc, push)
        except BaseException:
            print(server._logs()[-3000:])
            raise
        warnings = [line for line in server.log_path.read_text(errors="replace").splitlines()
                    if "Warning" in line or "Error" in line or "Fatal" in line]
        print(f"dovecot log: {len(warnings)} warning/error line(s)"
              + "".join(f"\n    {w[:200]}" for w in warnings[:10]), flush=True)
    out, kib = results[big]
    print(f"floor_ms={percentile(out.floor, 50):.1f} floor_p99_ms={percentile(out.floor, 99):.1f} "
          f"mwi_p50_ms_{big}={percentile(out.mwi, 50):.1f} "
          f"mwi_p99_ms_{big}={percentile(out.mwi, 99):.1f} mwi_lost={out.lost} "
          f"kib_per_account={kib:.1f} mode={args.mode}")


async def _main_until_signalled() -> None:
    """`timeout` and CI stop a run with SIGTERM, which by default ends Python without running
    any `finally`: the raised kernel limits would stay raised and Dovecot keep running. Here it
    cancels the run, which cleans up as after a failure."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await main()


if __name__ == "__main__":
    asyncio.run(_main_until_signalled())
