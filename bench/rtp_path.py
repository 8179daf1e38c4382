"""Where an RTP call's CPU goes: the cost of one sent and one received G.711 packet, in
microseconds of this process (user and kernel apart), through the real ``RtpSession`` code and
real loopback UDP sockets, with no event loop, SIP or caller process around it.

Run from the repository root:  .venv/bin/python bench/rtp_path.py [--calls 500] [--seconds 10]

Each round is what the pacer does for one 20 ms frame of every call: ``on_tick`` (build and
send the frame) then ``after_tick`` for the sessions that ask for it (every READ_EVERY-th tick:
read the packets the caller sent meanwhile, reorder, decode, hand the audio to a recording).
The caller's packets are written into the sessions' sockets between rounds by this process, and
that writing is left out of the figures (measured per thread with RUSAGE_THREAD around the
sessions' work only). Sent frames go to one sink socket whose small buffer the kernel simply
overflows. ``--paced`` instead runs the sessions on the loop's real pacer, fed by a separate
caller process, and prints the whole process's CPU.

Last line: ``calls= send_us= send_user_us= send_kernel_us= receive_us= receive_user_us=
receive_kernel_us= projected_cpu_pct=`` where ``projected_cpu_pct`` is what the calls' media
alone would cost of one core (50 frames a second each way per call); ``bench/sip_load.py``
measures the whole server with real callers.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from imapvm.telephony.rtp.session import (  # noqa: E402
    READ_EVERY,
    SO_TIMESTAMPNS,
    RtpSession,
    open_rtp_session,
)
from imapvm.telephony.sdp import NegotiatedMedia  # noqa: E402


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime, r.ru_stime


def bare_session(loop: asyncio.AbstractEventLoop, measure: bool = False) -> RtpSession:
    """A session on a loopback socket of its own, without the RTCP socket that
    ``open_rtp_session`` adds (SO_TIMESTAMPNS set as it sets it)."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.setblocking(False)
    rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rtp.bind(("127.0.0.1", 0))
    return RtpSession(loop, rtp, measure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="media time simulated (rounds = seconds × 50)")
    parser.add_argument("--paced", action="store_true",
                        help="run the sessions on the loop's real pacer for --seconds, fed by "
                        "a caller process sending 50 packets a second to each; prints this "
                        "process's whole CPU (the pacer and the loop included)")
    parser.add_argument("--measure", action="store_true",
                        help="--paced: keep every frame's send lateness, as sip_load does")
    parser.add_argument("--rtcp", action="store_true",
                        help="--paced: sessions with their RTCP socket, as calls have")
    parser.add_argument("--drain", action="store_true",
                        help="--paced: the sent frames are read by a process, as a caller "
                        "reads them (its wake-ups are charged to the sender on loopback)")
    args = parser.parse_args()
    if args.paced:
        return paced(args.calls, args.seconds, args.measure, args.rtcp, args.drain)

    loop = asyncio.new_event_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    caller.bind(("127.0.0.1", sink_port + 1 if sink_port < 65535 else 0))

    sessions: list[RtpSession] = []
    recorded: list[list[np.ndarray]] = []
    for _ in range(args.calls):
        session = bare_session(loop)
        session.set_media(NegotiatedMedia("127.0.0.1", sink_port, 0, "PCMU", 101, 20,
                                          "sendrecv"))
        session._unpace()  # driven by hand below, not by the loop's pacer
        session._latched = True  # symmetric RTP: the caller is the sink's neighbour
        session._remote = ("127.0.0.1", sink_port)
        frames: list[np.ndarray] = []
        session.audio_sink = frames.append
        recorded.append(frames)
        sessions.append(session)
    targets = [s.local_address for s in sessions]
    payload = bytes(range(160))
    header = struct.Struct("!BBHII")
    seq = [0] * len(sessions)

    def fill() -> None:
        for i, target in enumerate(targets):
            for _ in range(READ_EVERY):
                seq[i] = (seq[i] + 1) & 0xFFFF
                caller.sendto(header.pack(0x80, 0, seq[i], seq[i] * 160, 0x1234 + i) + payload,
                              target)

    rounds = int(args.seconds * 50) // READ_EVERY * READ_EVERY
    send_u = send_s = recv_u = recv_s = 0.0
    now = loop.time()
    for r in range(rounds // READ_EVERY):
        fill()
        for _ in range(READ_EVERY):
            u0, s0 = cpu()
            readers = [session for session in sessions if session.on_tick(now, now)]
            u1, s1 = cpu()
            for session in readers:
                session.after_tick(now)
            u2, s2 = cpu()
            send_u += u1 - u0
            send_s += s1 - s0
            recv_u += u2 - u1
            recv_s += s2 - s1
        if r % 25 == 0:
            for frames in recorded:
                frames.clear()
    packets = rounds * len(sessions)
    received = sum(s.stats.received for s in sessions)
    sent = sum(s.stats.sent for s in sessions)
    for session in sessions:
        session.close()
    sink.close()
    caller.close()
    loop.close()
    if received != packets or sent != packets:
        print(f"expected {packets} packets each way: sent {sent}, received {received}")
        return 1
    us = 1e6 / packets
    send_us, recv_us = (send_u + send_s) * us, (recv_u + recv_s) * us
    projected = (send_us + recv_us) * 50 * len(sessions) / 1e6 * 100
    print(f"{len(sessions)} calls, {rounds} frames each way per call")
    print(f"calls={len(sessions)} send_us={send_us:.2f} send_user_us={send_u * us:.2f} "
          f"send_kernel_us={send_s * us:.2f} receive_us={recv_us:.2f} "
          f"receive_user_us={recv_u * us:.2f} receive_kernel_us={recv_s * us:.2f} "
          f"projected_cpu_pct={projected:.0f}")
    return 0


FEEDER = """
import socket, struct, sys, time
targets = [("127.0.0.1", int(p)) for p in sys.argv[2:]]
end = time.monotonic() + float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
h = struct.Struct("!BBHII")
payload = bytes(160)
n = 0
t = time.monotonic()
while t < end:
    n += 1
    for i, target in enumerate(targets):
        s.sendto(h.pack(0x80, 0, n & 0xFFFF, n * 160, 1000 + i) + payload, target)
    t += 0.02
    time.sleep(max(0.0, t - time.monotonic()))
"""


DRAIN = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
ports = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    ports.append(str(s.getsockname()[1]))
print(" ".join(ports), flush=True)
while True:
    for key, _ in sel.select(1.0):
        try:
            while True:
                key.fileobj.recv(2048)
        except BlockingIOError:
            pass
"""


def paced(calls: int, seconds: float, measure: bool, rtcp: bool, drain: bool) -> int:
    """The sessions on the real pacer of a running loop, fed by a separate caller process."""

    async def run() -> int:
        loop = asyncio.get_running_loop()
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sink.bind(("127.0.0.1", 0))
        ports = [sink.getsockname()[1]] * calls
        drainer = None
        if drain:
            drainer = await asyncio.create_subprocess_exec(
                sys.executable, "-c", DRAIN, str(calls), stdout=asyncio.subprocess.PIPE)
            assert drainer.stdout is not None
            ports = [int(p) for p in (await drainer.stdout.readline()).split()]
        sessions = []
        for port in ports:
            if rtcp:
                session = await open_rtp_session("127.0.0.1", None, measure)
            else:
                session = bare_session(loop, measure)
            session.set_media(NegotiatedMedia("127.0.0.1", port, 0, "PCMU", 101, 20,
                                              "sendrecv"))
            frames: list[np.ndarray] = []
            session.audio_sink = frames.append
            sessions.append((session, frames))
        feeder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FEEDER, str(seconds + 4),
            *[str(s.local_address[1]) for s, _ in sessions])
        await asyncio.sleep(2)  # every session latched and streaming
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        sent0 = sum(s.stats.sent for s, _ in sessions)
        recv0 = sum(s.stats.received for s, _ in sessions)
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(0.5)
            for session, frames in sessions:
                frames.clear()
                if session.stats.send_errors_ms is not None:
                    session.stats.send_errors_ms.clear()
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        sent = sum(s.stats.sent for s, _ in sessions) - sent0
        received = sum(s.stats.received for s, _ in sessions) - recv0
        await feeder.wait()
        for session, _ in sessions:
            session.close()
        sink.close()
        if drainer is not None:
            drainer.kill()
            await drainer.wait()
        span = t1 - t0
        user = (r1.ru_utime - r0.ru_utime) / span * 100
        kernel = (r1.ru_stime - r0.ru_stime) / span * 100
        print(f"calls={calls} paced_cpu_pct={user + kernel:.0f} user_pct={user:.0f} "
              f"kernel_pct={kernel:.0f} sent_per_s={sent / span:.0f} "
              f"received_per_s={received / span:.0f}")
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
