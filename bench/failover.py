"""Several nodes under load, one killed mid-way: what is lost, how fast the rest takes over.

The topology of README "Running several nodes", on loopback: Kamailio started from
contrib/kamailio/kamailio.cfg, N `imapvm serve` nodes (each adopting the others' outboxes,
publishing its share of the mailboxes to Kamailio's presence server), one Dovecot. One phone per
mailbox is subscribed at Kamailio. Callers (the Python SIP phone, each with its own caller
number) leave messages through Kamailio, `--concurrency` at a time; when half the calls have
started, the node carrying the most calls is killed with SIGKILL. With `--drains N` the
survivors are then drained (SIGUSR1) and resumed (SIGUSR2) N times in turn while the calls go
on, so mailboxes move away and back; with `--mail-changes` a mail client reads, un-reads and
deletes voicemails (two seeded per mailbox) in every mailbox at the same time.

Ends with one line:
    nodes= calls= calls_failed_new= messages_lost= duplicates= partial_expected= partial_kept=
    lamp_gap_max_s= takeover_s= lamps_wrong=
calls_failed_new: calls started after the kill that were not answered or whose message never
arrived. partial_expected: calls talking to the killed node at the kill; partial_kept: their
messages found (marked X-Imapvm-Partial). lamp_gap_max_s: the longest time from a message
becoming due (its caller hung up; for a cut call, the kill) until its mailbox's lamp at
Kamailio counted it. takeover_s: from the kill until the survivors had delivered the killed
node's unfinished recordings (its outbox adopted); lamps_wrong: phones whose lamp, 10 s after
everything settled, did not show what their mailbox holds (each is explained on stderr: the
owner, what each node last published, what Kamailio stored, what the phone heard).
lamp_gap_max_s is nan with --mail-changes (messages are read as they arrive).

    .venv/bin/python bench/failover.py --calls 40 --nodes 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common  # noqa: F401  (sets sys.path)
from tests.cluster.caller import TalkingCaller
from tests.cluster.test_kamailio_edge import KamailioLamp
from tests.cluster.topology import Topology
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient
from tests.support.vmmail import voicemail
from tests.telephony.pyphone import PyPhone

from imapvm.mwi.cluster import owner
from imapvm.telephony.message_summary import MessageSummary


class NumberedPhone(PyPhone):
    """The Python phone with a caller number of its own (to find each call's message)."""

    number = "caller"

    def _headers(self, method: str, cseq: int, to: str) -> str:
        return super()._headers(method, cseq, to).replace("sip:caller@",
                                                           f"sip:{self.number}@")


@dataclass
class Call:
    index: int
    mailbox: str
    number: str
    started: float = 0.0
    status: int | None = None
    node_port: int | None = None
    due: float | None = None  # when its message became due (hang-up, or the kill)
    cut: bool = False  # talking to the killed node at the kill
    after_kill: bool = False


@dataclass
class Bench:
    topo: Topology
    mailboxes: list[str]
    talk: float
    calls: list[Call] = field(default_factory=list)
    killed_at: float | None = None
    victim_port: int | None = None
    active: dict[int, TalkingCaller] = field(default_factory=dict)

    async def one_call(self, call: Call) -> None:
        caller = TalkingCaller(self.topo.kamailio.address, call.mailbox)
        phone = NumberedPhone("127.0.0.1", self.topo.kamailio.address)
        phone.number = call.number
        caller.phone = phone
        call.started = time.monotonic()
        call.after_kill = self.killed_at is not None
        try:
            try:
                call.status = await caller.start(within=20)
            except TimeoutError:
                call.status = 0
            if call.status != 200:
                return
            uri = str(phone.uri)
            call.node_port = next((n.serve.sip_port for n in self.topo.nodes
                                   if f":{n.serve.sip_port}" in uri), None)
            self.active[call.index] = caller
            await asyncio.sleep(self.talk)  # the caller speaks (pacing, not synchronisation)
            if call.cut:
                return
            await caller.hang_up(within=5)
            call.due = time.monotonic()
        finally:
            self.active.pop(call.index, None)
            await caller.close()


async def held(dovecot: DovecotServer, box: str) -> MessageSummary:
    """What the mailbox holds: (unread, read) voicemails."""
    mail = await AsyncMailClient.connect(dovecot, f"vm{box}", f"vm{box}-pw")
    try:
        await mail.select("INBOX")
        total = len(await mail.uids())
        seen = len(await mail.uids("SEEN"))
    finally:
        await mail.close()
    return MessageSummary(total - seen, seen)


def diagnose(topo: Topology, box: str, truth: MessageSummary, lamp: KamailioLamp,
             events: list[tuple[float, str]], t0: float) -> str:
    """Why a lamp is wrong: who owned the mailbox, what each node last published, what
    Kamailio stored, what the phone heard (times in seconds from the kill)."""
    out = [f"LAMP WRONG box {box}: holds {truth.new}/{truth.old}, lamp shows "
           f"{lamp.states[-1][1] if lamp.states else None}"]
    live = [n for n in topo.nodes if n.serve.proc is not None
            and n.serve.proc.returncode is None]
    urls = {n.name: f"http://127.0.0.1:{n.serve.http_port}" for n in topo.nodes}
    mine = owner(f"{box}@default", [urls[n.name] for n in live])
    out.append("  owner now: " + ", ".join(n for n, u in urls.items() if u == mine))
    out.append("  bench: " + "; ".join(f"{t - t0:+.2f} {w}" for t, w in events
                                       if f"box {box}" in w or not w.startswith("box")))
    out.append("  phone heard: " + ", ".join(
        f"{t - t0:+.2f} {v.new if v else '?'}/{v.old if v else '?'}"
        for t, v, _ in lamp.states[-8:]))
    aor = f"sip:{box}@"
    for node in topo.nodes:
        try:
            text = node.serve.log
        except OSError:
            continue
        lines = [ln for ln in text.splitlines()
                 if (aor in ln and "PUBLISH" in ln) or "cluster view" in ln
                 or f"{box}@default" in ln]
        out.append(f"  {node.name} ({urls[node.name]}):")
        out.extend("    " + ln[:220] for ln in lines[-14:])
    db = topo.kamailio.directory / "presence.sqlite"
    try:
        with contextlib.closing(sqlite3.connect(db)) as con:
            rows = con.execute(
                "select etag, received_time, expires, body from presentity where username=? "
                "order by received_time", (box,)).fetchall()
        for etag, received, expires, body in rows:
            voice = next((ln for ln in str(body).splitlines() if "Voice-Message" in ln), "")
            out.append(f"  kamailio presentity {etag} received {received} expires {expires} "
                       f"{voice.strip()}")
    except sqlite3.Error as exc:
        out.append(f"  kamailio presentity: {exc}")
    return "\n".join(out)


async def run(args: argparse.Namespace) -> str:
    root = Path(tempfile.mkdtemp(prefix="failover"))
    dovecot = DovecotServer("slash", quota_kb=100_000)
    await asyncio.to_thread(dovecot.start)
    boxes = [str(1000 + i) for i in range(args.mailboxes)]
    lines = []
    for box in boxes:
        await asyncio.to_thread(dovecot.add_user, f"vm{box}", f"vm{box}-pw")
        lines.append(f"{box} => 4242,Box {box},,,imapuser=vm{box}|imappassword=vm{box}-pw")
    topo = await Topology.start(root, dovecot.port, "\n".join(lines), count=args.nodes)
    lamps: dict[str, KamailioLamp] = {}
    try:
        for box in boxes:
            phone = PyPhone("127.0.0.1", topo.kamailio.address)
            await phone.open()
            lamps[box] = KamailioLamp(phone, box)
            lamps[box].subscribe()
        for lamp in lamps.values():
            await lamp.wait_state(MessageSummary(0, 0), within=30)
        if args.mail_changes:  # two voicemails per mailbox that the mail client may delete
            for box in boxes:
                mail = await AsyncMailClient.connect(dovecot, f"vm{box}", f"vm{box}-pw")
                try:
                    for k in range(2):
                        await mail.append("INBOX", voicemail(box, caller=f"444{box}{k}"))
                finally:
                    await mail.close()
            for box in boxes:
                await lamps[box].wait_state(MessageSummary(2, 0), within=30)
        bench = Bench(topo, boxes, args.talk)
        bench.calls = [Call(i, boxes[i % len(boxes)], f"55501{i:03d}")
                       for i in range(args.calls)]
        gate = asyncio.Semaphore(args.concurrency)
        kill_after = args.calls // 2
        started = 0
        kill_done = asyncio.Event()

        async def guarded(call: Call) -> None:
            nonlocal started
            async with gate:
                started += 1
                if started > kill_after and not kill_done.is_set():
                    await kill_done.wait()
                await bench.one_call(call)

        async def killer() -> None:
            while started < kill_after:  # noqa: ASYNC110 - the bench's own pacing
                await asyncio.sleep(0.05)
            await asyncio.sleep(args.talk / 2)  # the latest callers are mid-message
            counts: dict[int, int] = {}
            for c in bench.calls:
                if c.index in bench.active and c.node_port is not None:
                    counts[c.node_port] = counts.get(c.node_port, 0) + 1
            port = max(counts, key=lambda p: counts[p]) if counts else \
                topo.nodes[0].serve.sip_port
            victim = next(n for n in topo.nodes if n.serve.sip_port == port)
            for c in bench.calls:
                if c.index in bench.active and c.node_port == port:
                    c.cut = True
            bench.victim_port = port
            victim.serve.signal(signal.SIGKILL)
            bench.killed_at = time.monotonic()
            for c in bench.calls:
                if c.cut:
                    c.due = bench.killed_at
            kill_done.set()

        takeover = float("nan")

        async def watch_takeover() -> None:
            """From the kill until the survivors have adopted the dead node's recordings."""
            nonlocal takeover
            await kill_done.wait()
            victim = next(n for n in topo.nodes if n.serve.sip_port == bench.victim_port)
            survivors = [n for n in topo.nodes if n is not victim]
            cut = [c for c in bench.calls if c.cut]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = 0
                for s in survivors:
                    _, h = await s.serve.health()
                    adopted = h["adopted"]
                    assert isinstance(adopted, dict)
                    done += int(adopted[str(victim.outbox)]["adopted_items"])
                if done >= len(cut):
                    takeover = time.monotonic() - (bench.killed_at or 0)
                    return
                await asyncio.sleep(0.05)

        calls_done = asyncio.Event()
        rng = random.Random(args.seed)
        events: list[tuple[float, str]] = []  # what the bench did, for the diagnosis

        def note(what: str) -> None:
            events.append((time.monotonic(), what))

        async def drainer() -> None:
            """Drain and resume the survivors in turn: their mailboxes move away and back."""
            await kill_done.wait()
            survivors = [n for n in topo.nodes if n.serve.sip_port != bench.victim_port]
            note("killed " + next(n.name for n in topo.nodes if n not in survivors))
            dead = {bench.victim_port}

            async def dispatcher_sees_only_the_dead_down() -> None:
                """As an operator would: drain a node only once Kamailio sends calls to every
                other live node again (its probes run every second)."""
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        while {int(u.rsplit(":", 1)[1])  # noqa: ASYNC110 - its log
                               for u in topo.kamailio.nodes_down()} != dead:
                            await asyncio.sleep(0.1)

            for k in range(args.drains):
                if calls_done.is_set():
                    return
                node = survivors[k % len(survivors)]
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                await dispatcher_sees_only_the_dead_down()
                node.serve.signal(signal.SIGUSR1)
                note(f"drained {node.name}")
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                node.serve.signal(signal.SIGUSR2)
                note(f"resumed {node.name}")

        async def mail_changes(box: str) -> None:
            """A mail client reads, un-reads and deletes voicemails while the calls go on."""
            mail = await AsyncMailClient.connect(dovecot, f"vm{box}", f"vm{box}-pw")
            try:
                await mail.select("INBOX")
                while not calls_done.is_set():
                    await asyncio.sleep(rng.uniform(0.3, 1.5))
                    uids = await mail.uids()
                    seen = set(await mail.uids("SEEN"))
                    seeded = set(await mail.uids(f"HEADER X-Asterisk-VM-Caller-ID-Num 444{box}"))
                    roll = rng.random()
                    if seeded and roll < 0.1:
                        uid = rng.choice(sorted(seeded))
                        await mail.delete([uid])
                        note(f"box {box}: deleted uid {uid}")
                    elif uids and roll < 0.65:
                        uid = rng.choice(uids)
                        await mail.store([uid], "+FLAGS", "\\Seen")
                        note(f"box {box}: read uid {uid}")
                    elif seen:
                        uid = rng.choice(sorted(seen))
                        await mail.store([uid], "-FLAGS", "\\Seen")
                        note(f"box {box}: unread uid {uid}")
            finally:
                await mail.close()

        async def all_calls() -> None:
            try:
                await asyncio.gather(*(guarded(c) for c in bench.calls))
            finally:
                calls_done.set()

        await asyncio.gather(killer(), watch_takeover(), drainer(), all_calls(),
                             *(mail_changes(b) for b in boxes if args.mail_changes))
        note("calls done")
        victim = next(n for n in topo.nodes if n.serve.sip_port == bench.victim_port)
        survivors = [n for n in topo.nodes if n is not victim]
        cut = [c for c in bench.calls if c.cut]
        # every outbox empty
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = False
            for s in survivors:
                _, h = await s.serve.health()
                adopted = h["adopted"]
                assert isinstance(adopted, dict)
                busy |= h["outbox_depth"] != 0 or any(a["state"] != "waiting"
                                                      for a in adopted.values())
            if not busy:
                break
            await asyncio.sleep(0.2)

        # what arrived: scanned until every answered call's message is there, or 30 s
        async def scan() -> dict[str, list[tuple[bool, int]]]:
            got: dict[str, list[tuple[bool, int]]] = {}
            for box in boxes:
                mail = await AsyncMailClient.connect(dovecot, f"vm{box}", f"vm{box}-pw")
                try:
                    await mail.select("INBOX")
                    for uid in await mail.uids():
                        msg = email.message_from_bytes(await mail.fetch(uid))
                        got.setdefault(str(msg["X-Asterisk-VM-Caller-ID-Num"]), []).append(
                            (msg["X-Imapvm-Partial"] == "yes", uid))
                finally:
                    await mail.close()
            return got

        wanted = {c.number for c in bench.calls if c.status == 200 and c.due is not None}
        deadline = time.monotonic() + 30
        while True:
            found = await scan()
            if wanted <= set(found) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # anything delivered twice would have arrived by now
        found = await scan()
        expected = [c for c in bench.calls if c.status == 200 and c.due is not None]
        lost = sum(1 for c in expected if c.number not in found and not c.cut)
        duplicates = sum(len(v) - 1 for v in found.values() if len(v) > 1)
        partial_kept = sum(1 for c in cut if c.number in found)
        failed_new = sum(1 for c in bench.calls if c.after_kill
                         and (c.status != 200 or c.number not in found))

        # the lamps settle on what the mailboxes hold (bounded: a lamp that never does is
        # inf, and counted as wrong)
        wrong = 0
        for box in boxes:
            truth = await held(dovecot, box)
            try:
                await lamps[box].wait_state(truth, within=10)
            except AssertionError:
                wrong += 1
                truth = await held(dovecot, box)  # unchanged unless something is still moving
                print(diagnose(topo, box, truth, lamps[box], events,
                               bench.killed_at or 0.0), file=sys.stderr)

        # lamp lag: each due message until its mailbox's lamp counted it
        gaps: list[float] = []
        for box in boxes if not args.mail_changes else ():
            due = sorted(c.due for c in expected if c.mailbox == box and c.number in found
                         and c.due is not None)
            states = lamps[box].states
            for k, at in enumerate(due, start=1):
                shown = next((t for t, v, _ in states if v is not None and v.new >= k
                              and t >= at - 0.5), None)
                if shown is None:
                    shown = next((t for t, v, _ in states if v is not None and v.new >= k),
                                 None)
                gap = max(0.0, (shown - at)) if shown is not None else float("inf")
                gaps.append(gap)
                if args.verbose:
                    print(f"box {box} message {k}: due {at - (bench.killed_at or 0):+.2f} s "
                          f"from the kill, lamp after {gap:.2f} s", file=sys.stderr)
        lamp_gap = max(gaps) if gaps else (float("nan") if args.mail_changes else 0.0)
        return (f"nodes={args.nodes} calls={args.calls} calls_failed_new={failed_new} "
                f"messages_lost={lost} duplicates={duplicates} partial_expected={len(cut)} "
                f"partial_kept={partial_kept} lamp_gap_max_s={lamp_gap:.2f} "
                f"takeover_s={takeover:.2f} lamps_wrong={wrong}")
    finally:
        for lamp in lamps.values():
            lamp.close()
        await topo.stop()
        await asyncio.to_thread(dovecot.stop)
        if not args.keep:
            await asyncio.to_thread(shutil.rmtree, root, True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=40)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--mailboxes", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--talk", type=float, default=4.0, help="seconds each caller speaks")
    p.add_argument("--verbose", action="store_true", help="each message's lamp lag")
    p.add_argument("--keep", action="store_true", help="keep the nodes' directories and logs")
    p.add_argument("--drains", type=int, default=0,
                   help="after the kill, drain and resume a survivor this many times")
    p.add_argument("--mail-changes", action="store_true",
                   help="a mail client reads, un-reads and deletes voicemails meanwhile")
    p.add_argument("--seed", type=int, default=None, help="seed of the drains and mail changes")
    args = p.parse_args()
    print(asyncio.run(run(args)), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
