"""Message-summary subscriptions at scale: N phones subscribed to one imapvm node.

The node (our SipServer, in this process) serves N subscriptions from a raw-socket client in
a child process (so only the server's work is in this process's CPU figures), over loopback:

1. The phones subscribe at ``--rate`` per second (phones booting); ``subscribe_p99_ms`` is the
   time from a SUBSCRIBE to its 200. Every NOTIFY is answered with 200.
2. Steady state: after Timer J/K of the start-up traffic has run out (``--settle`` s), the
   phones refresh their subscriptions as phones with ``--expires`` do (each at half its
   expiry, spread evenly), for ``--idle`` seconds; ``idle_cpu_pct`` is this process's CPU over
   that window, in percent of one core (the refreshes, their NOTIFYs and the timers all
   included). ``rss_mib`` is the process's resident memory with all N subscribed.
3. Fan-out: ``--per-mailbox`` phones watch each mailbox; one mailbox at a time changes
   (``publish_mwi``) and ``notify_fanout_ms`` is the p99 time until the last of its phones
   got the NOTIFY with the new count (over ``--changes`` changes).

Run: .venv/bin/python bench/subscriptions.py [--subs 10000] [--expires 600] [--idle 30]
Last line: subs= subscribe_p99_ms= notify_fanout_ms= idle_cpu_pct= rss_mib=
Goal (issue 18): idle_cpu_pct <= 5 at 10,000 subscriptions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import resource
import socket
import sys
import time

import _common  # noqa: F401  (sets sys.path)
from _common import percentile

from imapvm.telephony.message_summary import MessageSummary
from imapvm.telephony.server import SipServer, SipSettings


# ---- the phones (child process) ---------------------------------------------------------
class Phones(asyncio.DatagramProtocol):
    def __init__(self, server: tuple[str, int], n: int, per_mailbox: int, expires: int) -> None:
        self.server = server
        self.n, self.per_mailbox, self.expires = n, per_mailbox, expires
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.sent_at: dict[tuple[int, int], float] = {}  # (phone, cseq) -> time sent
        self.cseq = [0] * n
        self.to_tag: list[str | None] = [None] * n
        self.latencies: list[float] = []
        self.subscribed = 0
        self.all_subscribed = asyncio.Event()
        self.expect: dict[str, tuple[int, set[int], asyncio.Future[float]]] = {}
        self.pid = os.getpid()
        self.branch = 0

    def mailbox(self, phone: int) -> str:
        return str(100000 + phone // self.per_mailbox)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def subscribe(self, phone: int) -> None:
        assert self.transport is not None
        self.cseq[phone] += 1
        self.branch += 1
        host, port = self.server
        mailbox = self.mailbox(phone)
        tag = self.to_tag[phone]
        msg = (
            f"SUBSCRIBE sip:{mailbox}@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{self.pid}x{self.branch}"
            ";rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:phone{phone}@127.0.0.1>;tag=f{phone}\r\n"
            f"To: <sip:{mailbox}@{host}>" + (f";tag={tag}" if tag else "") + "\r\n"
            f"Call-ID: sub{phone}-{self.pid}@bench\r\nCSeq: {self.cseq[phone]} SUBSCRIBE\r\n"
            f"Contact: <sip:phone{phone}@127.0.0.1:{self.port}>\r\n"
            "Event: message-summary\r\nAccept: application/simple-message-summary\r\n"
            f"Expires: {self.expires}\r\nContent-Length: 0\r\n\r\n"
        )
        self.sent_at[(phone, self.cseq[phone])] = time.monotonic()
        self.transport.sendto(msg.encode(), self.server)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        call_id = headers["call-id"][0]
        phone = int(call_id[3:].split("-")[0])
        if lines[0].startswith("SIP/2.0"):
            status = int(lines[0].split()[1])
            cseq = int(headers["cseq"][0].split()[0])
            sent = self.sent_at.pop((phone, cseq), None)
            if sent is None or status != 200:
                return
            if self.to_tag[phone] is None:
                self.to_tag[phone] = headers["to"][0].split(";tag=")[1].split(";")[0]
                self.latencies.append((now - sent) * 1000)
                self.subscribed += 1
                if self.subscribed == self.n:
                    self.all_subscribed.set()
            return
        assert self.transport is not None
        ok = ("SIP/2.0 200 OK\r\n" + "".join(f"Via: {v}\r\n" for v in headers["via"])
              + f"From: {headers['from'][0]}\r\nTo: {headers['to'][0]}\r\n"
              f"Call-ID: {call_id}\r\nCSeq: {headers['cseq'][0]}\r\nContent-Length: 0\r\n\r\n")
        self.transport.sendto(ok.encode(), addr)
        expected = self.expect.get(self.mailbox(phone))
        if expected is not None and f"Voice-Message: {expected[0]}/".encode() in body:
            expected[1].discard(phone)
            if not expected[1] and not expected[2].done():
                expected[2].set_result(now)


async def phones_main(host: str, port: int, n: int, per_mailbox: int, expires: int,
                      rate: float) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    _, phones = await loop.create_datagram_endpoint(
        lambda: Phones((host, port), n, per_mailbox, expires), sock=sock)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    start = time.monotonic()
    for i in range(n):  # open loop: phone i boots at start + i / rate
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        phones.subscribe(i)
    while not phones.all_subscribed.is_set():  # resend what the network lost (UDP)
        try:
            await asyncio.wait_for(phones.all_subscribed.wait(), 2.0)
        except TimeoutError:
            for i in range(n):
                if phones.to_tag[i] is None:
                    phones.subscribe(i)
    say(f"subscribed p50={percentile(phones.latencies, 50):.2f} "
        f"p99={percentile(phones.latencies, 99):.2f}")
    while line := (await reader.readline()).decode().split():
        if line[0] == "refresh":  # refresh this many phones, evenly over this many seconds
            seconds, count = float(line[1]), int(line[2])
            order = random.sample(range(n), min(n, count))
            t0 = time.monotonic()
            for k, i in enumerate(order):
                delay = t0 + k * seconds / len(order) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                phones.subscribe(i)
            await asyncio.sleep(max(0.0, t0 + seconds - time.monotonic()))
            say("refreshed")
        elif line[0] == "expect":  # mailbox, new count: say when all its phones heard it
            mailbox, count = line[1], int(line[2])
            members = {i for i in range(n) if phones.mailbox(i) == mailbox}
            fut: asyncio.Future[float] = loop.create_future()
            phones.expect[mailbox] = (count, members, fut)
            say("ready")
            try:
                done = await asyncio.wait_for(fut, 10)
                say(f"heard {done:.6f}")
            except TimeoutError:
                say("heard lost")
            del phones.expect[mailbox]
        elif line[0] == "quit":
            break


# ---- the node (this process) --------------------------------------------------------------
def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def node_main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)

    async def handler(channel: object) -> None:
        raise RuntimeError("no calls in this bench")

    settings = SipSettings(host="127.0.0.1", port=0, tcp=False, mwi_min_expires=60,
                           mwi_max_expires=max(3600, args.expires), rate_limit=None)
    async with SipServer(settings, handler) as server:
        host, port = server.address
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--phones", host, str(port), str(args.subs),
            str(args.per_mailbox), str(args.expires), str(args.rate),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        stdin, stdout = child.stdin, child.stdout

        async def ask(line: str) -> str:
            stdin.write((line + "\n").encode())
            await stdin.drain()
            return (await stdout.readline()).decode().strip()

        t_sub = time.monotonic()
        subscribed = (await asyncio.wait_for(stdout.readline(), args.subs / args.rate + 120))
        subscribed_s = time.monotonic() - t_sub
        sub_p99 = float(subscribed.decode().split("p99=")[1])
        print(f"  {subscribed.decode().strip()} ms, {args.subs} subscribed in "
              f"{subscribed_s:.1f} s; server subscriptions={len(server.core.subscriptions)}",
              flush=True)
        rss = rss_mib()
        await asyncio.sleep(args.settle)  # start-up transactions end (Timer J = 32 s)

        # Steady state: phones refreshing at the rate N phones with this expiry produce.
        refresh_rate = args.subs / (args.expires / 2)
        window = args.idle
        refreshes = max(1, int(refresh_rate * window))  # each phone at most once
        examined0 = server.core.timers.examined
        c0, t0 = cpu_seconds(), time.monotonic()
        await ask(f"refresh {window} {refreshes}")
        c1, t1 = cpu_seconds(), time.monotonic()
        idle_cpu = (c1 - c0) / (t1 - t0) * 100
        examined = server.core.timers.examined - examined0
        print(f"  steady state: {refresh_rate:.1f} refreshes/s, cpu {idle_cpu:.2f} % over "
              f"{t1 - t0:.1f} s, timer entries examined {examined}, "
              f"subscriptions={len(server.core.subscriptions)}", flush=True)

        # Fan-out of single mailbox changes.
        fanout: list[float] = []
        lost = 0
        mailboxes = [str(100000 + k) for k in range(args.subs // args.per_mailbox)]
        for k, mailbox in enumerate(random.sample(mailboxes, min(args.changes, len(mailboxes)))):
            assert await ask(f"expect {mailbox} {k + 1}") == "ready"
            start = time.monotonic()
            server.publish_mwi(mailbox, MessageSummary(k + 1, 0))
            heard = (await stdout.readline()).decode().split()
            if heard[1] == "lost":
                lost += 1
            else:
                fanout.append((float(heard[1]) - start) * 1000)
        print(f"  fan-out to {args.per_mailbox} phones: p50={percentile(fanout, 50):.2f} ms "
              f"p99={percentile(fanout, 99):.2f} ms lost={lost}", flush=True)
        stdin.write(b"quit\n")
        await stdin.drain()
        await child.wait()
    print(f"subs={args.subs} subscribe_p99_ms={sub_p99:.1f} "
          f"notify_fanout_ms={percentile(fanout, 99):.1f} idle_cpu_pct={idle_cpu:.1f} "
          f"rss_mib={rss:.0f}", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--phones":
        host, port, n, per, expires, rate = sys.argv[2:8]
        asyncio.run(phones_main(host, int(port), int(n), int(per), int(expires), float(rate)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subs", type=int, default=10000)
    parser.add_argument("--per-mailbox", type=int, default=10, help="phones per mailbox")
    parser.add_argument("--expires", type=int, default=600, help="the phones' Expires")
    parser.add_argument("--rate", type=float, default=500.0, help="new SUBSCRIBEs per second")
    parser.add_argument("--settle", type=float, default=35.0)
    parser.add_argument("--idle", type=float, default=30.0, help="steady-state window, s")
    parser.add_argument("--changes", type=int, default=100, help="mailbox changes for fan-out")
    args = parser.parse_args()
    asyncio.run(node_main(args))


if __name__ == "__main__":
    main()
