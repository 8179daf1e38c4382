"""The C run of an RTP session's read (``_fastpath.c``) against the general path it shortens.

Two sessions receive the same random streams on real loopback sockets: one reads with the C
run (``fast_path``), the other hands every packet to ``datagram_received`` (reorder buffer,
RTCP accounting, DTMF, latching in Python). After every read they must have heard the same
audio and digits and kept the same counts, reorder state and RTCP state, jitter included:
both read on one test clock, without kernel timestamps, so a packet arrives at the same time
for both whatever the machine's load. The streams wrap their sequence numbers
and timestamps and carry reordering, loss, duplicates, silence gaps, marker bits, RFC 4733
events, a stranger's packets, a new SSRC, garbage and datagrams larger than a read takes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapvm.telephony.rtp._fastpath import read_run, send_rtp
from imapvm.telephony.rtp.dtmf import build_event
from imapvm.telephony.rtp.packet import HEADER, build_rtp
from imapvm.telephony.rtp.session import SO_TIMESTAMPNS, RtpSession, open_rtp_session
from imapvm.telephony.sdp import NegotiatedMedia

EXAMPLES = int(os.environ.get("IMAPVM_RTP_EXAMPLES", "200"))  # longer: 5000


class Clock:
    """The sessions' loop clock in these tests: moved by the test, the same for both."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


class Pair:
    """A caller, a stranger on another loopback address, and the two sessions they send to."""

    def __init__(self, fast: RtpSession, general: RtpSession, caller: socket.socket,
                 stranger: socket.socket) -> None:
        self.fast, self.general = fast, general
        self.clock = Clock()
        for session in (fast, general):  # arrivals from the shared clock, not the kernel
            session._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 0)
            session._loop = self.clock  # type: ignore[assignment]
        self.caller, self.stranger = caller, stranger
        self.heard: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self.digits: dict[bool, list[tuple[str, int]]] = {True: [], False: []}
        for session, key in ((fast, True), (general, False)):
            session.audio_sink = self.heard[key].append
            session.digit_sink = lambda d, ms, key=key: self.digits[key].append((d, ms))

    def send(self, data: bytes, stranger: bool = False) -> None:
        sock = self.stranger if stranger else self.caller
        for session in (self.fast, self.general):
            sock.sendto(data, session.local_address)

    def read(self, limit: int) -> None:
        self.clock.now += 0.0137 * limit  # uneven against the 20 ms frames: some jitter
        self.fast._read(limit)
        self.general._read(limit)

    def check(self) -> None:
        a, b = self.fast, self.general
        assert a.fast_path
        assert not b.fast_path
        heard_a = np.concatenate(self.heard[True]) if self.heard[True] else np.zeros(0)
        heard_b = np.concatenate(self.heard[False]) if self.heard[False] else np.zeros(0)
        assert np.array_equal(heard_a, heard_b)
        assert self.digits[True] == self.digits[False]
        assert (a.stats.received, a.stats.ignored) == (b.stats.received, b.stats.ignored)
        assert a.reorder_stats == b.reorder_stats
        ra, rb = a._reorder, b._reorder
        assert (ra._next_seq, ra._next_ts, ra._pending, ra._strays) == (
            rb._next_seq, rb._next_ts, rb._pending, rb._strays)
        assert a.stats.latched == b.stats.latched
        assert a._audio_ssrc == b._audio_ssrc
        ca, cb = a.rtcp, b.rtcp
        assert ca is not None
        assert cb is not None
        assert (ca.remote_ssrc, ca._base_seq, ca._max_seq, ca._cycles, ca._received) == (
            cb.remote_ssrc, cb._base_seq, cb._max_seq, cb._cycles, cb._received)
        assert (ca._transit, ca._jitter) == (cb._transit, cb._jitter)


async def open_pair() -> Pair:
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    caller.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    sessions = []
    for fast in (True, False):
        session = await open_rtp_session("127.0.0.1", None)
        host, port = caller.getsockname()
        session.set_media(NegotiatedMedia(host, port, 0, "PCMU", 101, 20, "sendrecv"))
        session._unpace()  # read by hand, not on the loop's clock
        session.fast_path = fast
        sessions.append(session)
    return Pair(sessions[0], sessions[1], caller, stranger)


def close_pair(pair: Pair) -> None:
    for s in (pair.fast, pair.general):
        s.close()
    pair.caller.close()
    pair.stranger.close()


EVENTS = st.sampled_from(
    ["next", "next", "next", "next", "next", "swap", "drop", "dup", "gap", "marker", "dtmf",
     "stranger", "garbage", "big", "new_ssrc", "late", "jump"])


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(start_seq=st.integers(0, 0xFFFF), start_ts=st.integers(0, 0xFFFFFFFF),
       plan=st.lists(st.tuples(EVENTS, st.integers(1, 20)), min_size=1, max_size=60))
def test_the_c_run_and_the_general_path_agree(start_seq: int, start_ts: int,
                                              plan: list[tuple[str, int]]) -> None:
    asyncio.run(_agree(start_seq, start_ts, plan))


async def _agree(start_seq: int, start_ts: int, plan: list[tuple[str, int]]) -> None:
    pair = await open_pair()
    seq, ts, ssrc, event_ts = start_seq, start_ts, 0x5EED, 0
    held: bytes | None = None

    def packet(marker: bool = False, size: int = 160) -> bytes:
        return build_rtp(0, seq, ts, ssrc, bytes([(seq * 7) % 256]) * size, marker)

    def advance(frames: int = 1) -> None:
        nonlocal seq, ts
        seq = (seq + 1) & 0xFFFF
        ts = (ts + 160 * frames) & 0xFFFFFFFF

    try:
        for event, n in plan:
            if event == "next":
                for _ in range(n):
                    pair.send(packet())
                    advance()
            elif event == "swap":  # two packets in the wrong order
                first = packet()
                advance()
                pair.send(packet())
                pair.send(first)
                advance()
            elif event == "drop":
                advance()
            elif event == "dup":
                data = packet()
                pair.send(data)
                pair.send(data)
                advance()
            elif event == "gap":  # silence suppression: the timestamp jumps
                ts = (ts + 160 * n) & 0xFFFFFFFF
                pair.send(packet(marker=True))
                advance()
            elif event == "marker":
                pair.send(packet(marker=True))
                advance()
            elif event == "dtmf":  # RFC 4733: shares the sequence space
                for i, end in enumerate((False, False, True, True)):
                    pair.send(build_rtp(101, seq, event_ts, ssrc, build_event(n % 10, end,
                                                                               160 * (i + 1))))
                    seq = (seq + 1) & 0xFFFF
                event_ts += 16000
            elif event == "stranger":
                pair.send(packet(), stranger=True)
            elif event == "garbage":
                pair.send(b"\x80" * (n % 12))
            elif event == "big":  # longer than a read takes: truncated alike
                pair.send(packet(size=3000))
                advance()
            elif event == "new_ssrc":
                ssrc = (ssrc + n) & 0xFFFFFFFF
                seq = (seq + 1000 * n) & 0xFFFF
            elif event == "late":  # one held back and sent n packets later
                if held is None:
                    held = packet()
                    advance()
                else:
                    pair.send(held)
                    held = None
            elif event == "jump":  # the sender restarts its sequence
                seq = (seq + 5000 + n) & 0xFFFF
            pair.read(n)
            pair.check()
        for _ in range(200):  # everything left in the sockets
            pair.read(64)
        pair.check()
        for s in (pair.fast, pair.general):
            s.flush_audio()
        pair.check()
    finally:
        close_pair(pair)


def test_a_failed_read_returns_its_errno_and_raises_nothing() -> None:
    """The session logs a failed read at debug and reads again on its next turn (an empty
    socket is not an error)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    fd = sock.fileno()
    assert read_run(fd, 8, b"", -1, -1, -1, 0, None, 0.0, 0.0) == (
        b"", 0, -1, 0, None, [], 0, 0)
    sock.close()
    *_, read, error = read_run(fd, 8, b"", -1, -1, -1, 0, None, 0.0, 0.0)
    assert (read, error) == (0, errno.EBADF)


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_send_rtp_sends_what_struct_packs_and_read_run_reads_it(family: int, host: str) -> None:
    sender = socket.socket(family, socket.SOCK_DGRAM)
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sender.bind((host, 0))
        receiver.bind((host, 0))
        receiver.setblocking(False)
        port = receiver.getsockname()[1]
        packed = socket.inet_pton(family, host)
        payload = bytes(range(160))
        cases = [(0x80 | 8, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0, 0, 0, 0), (101, 1, 2, 3)]
        for second, seq, ts, ssrc in cases:
            assert send_rtp(sender.fileno(), packed, port, second, seq, ts, ssrc, payload) == 0
        got, count, *_, rest, read, error = read_run(
            receiver.fileno(), 8, b"", -1, -1, -1, 0, None, 0.0, 0.0)
        assert (got, count, read, error) == (b"", 0, 3, 0)
        sent_from = sender.getsockname()
        for (data, _arrival, addr), (second, seq, ts, ssrc) in zip(rest, cases, strict=True):
            assert data == HEADER.pack(0x80, second, seq, ts, ssrc) + payload
            assert addr == sent_from  # as Python's recvfrom gives it, (host, port[, 0, 0])
        # the usual packet of a latched source: joined by the run, its state advanced
        for seq in (10, 11):
            send_rtp(sender.fileno(), packed, port, 0, seq, seq * 160, 77, payload)
        got, count, next_seq, next_ts, _, rest, read, error = read_run(
            receiver.fileno(), 8, packed, 0, 77, 10, 1600, None, 0.0, 0.0)
        assert (got, count, next_seq, next_ts, rest, read, error) == (
            payload * 2, 2, 12, 1920, [], 2, 0)
    finally:
        sender.close()
        receiver.close()


@pytest.mark.parametrize("field", ["second", "seq", "ts", "ssrc", "port", "host", "payload"])
def test_send_rtp_refuses_what_a_header_cannot_carry(field: str) -> None:
    """As struct.pack does: a media loop asked to send the impossible fails (and the call ends,
    tests/telephony/test_hostile.py), it never sends a wrong packet."""
    args: dict[str, object] = {"host": socket.inet_aton("127.0.0.1"), "port": 9, "second": 0,
                               "seq": 1, "ts": 1, "ssrc": 1, "payload": b"x"}
    args[field] = {"second": 300, "seq": 0x10000, "ts": 1 << 32, "ssrc": -1, "port": 70000,
                   "host": b"\x7f\x00\x00", "payload": b"x" * 4000}[field]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            pytest.raises((ValueError, OverflowError)):
        send_rtp(sock.fileno(), args["host"], args["port"], args["second"],  # type: ignore[arg-type]
                 args["seq"], args["ts"], args["ssrc"], args["payload"])  # type: ignore[arg-type]


def test_read_run_jitter_is_rtcp_arithmetic() -> None:
    """The jitter and sequence accounting of the run equal RtcpState.on_rtp_run's for the
    same arrivals, timestamp and sequence wraps included (arrivals here: the loop's now, as
    when the kernel gives no timestamp)."""
    from imapvm.telephony.rtp.rtcp import RtcpState

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))  # no SO_TIMESTAMPNS: every arrival is loop_now
        receiver.setblocking(False)
        sender.bind(("127.0.0.1", 0))
        target = receiver.getsockname()
        state = RtcpState(1, "x")
        state.on_rtp_run(5, [(0xFFFE, 0xFFFFFF00, 10.0)])
        reference = RtcpState(1, "x")
        reference.on_rtp_run(5, [(0xFFFE, 0xFFFFFF00, 10.0)])
        seq, ts, now = 0xFFFF, 0xFFFFFF00 + 160, 10.0
        for _round in range(3):
            sent = []
            for _ in range(4):
                sender.sendto(struct.pack("!BBHII", 0x80, 0, seq, ts, 5) + bytes(160), target)
                sent.append((seq, ts, now))
                seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
            run = state.run_state()
            _got, count, _s, _t, after, rest, _r, _e = read_run(
                receiver.fileno(), 8, socket.inet_aton("127.0.0.1"), 0, 5, sent[0][0],
                sent[0][1], run, 0.0, now)
            assert (count, rest) == (4, [])
            assert after is not None
            state.set_run_state(after, count)
            reference.on_rtp_run(5, sent)
            assert (state._max_seq, state._cycles, state._received) == (
                reference._max_seq, reference._cycles, reference._received)
            assert state._jitter == reference._jitter
            assert state._transit == reference._transit
            now += 0.013  # late: some jitter
    finally:
        receiver.close()
        sender.close()


async def test_a_read_drains_up_to_its_limit_past_one_batch_and_close_drains_the_rest() -> None:
    """One recvmmsg takes at most READ_BATCH datagrams: a backlog read drains ``limit`` of them
    in several, and closing the call reads everything the caller sent before it hung up."""
    pair = await open_pair()
    try:
        for seq in range(200):  # what a socket's default buffer holds
            pair.send(build_rtp(0, seq, seq * 160, 42, bytes([seq % 256]) * 160))
        pair.read(1)  # the first packet latches (the general path)
        pair.read(100)
        assert pair.fast.stats.received == pair.general.stats.received == 101
        pair.check()
        for s in (pair.fast, pair.general):
            s.close()
        pair.check()
        assert pair.fast.stats.received == 200
        assert sum(len(a) for a in pair.heard[True]) == 200 * 160
    finally:
        close_pair(pair)


def test_a_zoned_ipv6_peer_takes_the_python_path() -> None:
    """The C path carries no IPv6 scope: a link-local peer with a zone packs to nothing, so
    its frames go by Python's sendto (which keeps the zone) and its packets by the general
    path; plain addresses pack as the kernel reports a source."""
    from imapvm.telephony.rtp.session import _packed_host

    assert _packed_host(("fe80::1%eth0", 5004)) == b""
    assert _packed_host(None) == b""
    assert _packed_host(("127.0.0.1", 5004)) == socket.inet_aton("127.0.0.1")
    assert _packed_host(("::1", 5004)) == socket.inet_pton(socket.AF_INET6, "::1")
    assert _packed_host(("not an address", 5004)) == b""


def test_read_run_takes_arrival_from_the_kernel_timestamp_on_the_loop_clock() -> None:
    """With SO_TIMESTAMPNS a datagram's arrival is the kernel's receive time moved onto the
    loop's clock (``+ to_loop``), never later than the loop's now."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        before = time.time()
        sender.sendto(b"x" * 20, receiver.getsockname())
        sender.sendto(b"y" * 20, receiver.getsockname())
        after = time.time()
        fd = receiver.fileno()
        *_, rest, _read, _error = read_run(fd, 1, b"", -1, -1, -1, 0, None, 100.0, 1e12)
        [(data, arrival, _addr)] = rest
        assert data == b"x" * 20
        assert before + 100.0 - 0.001 <= arrival <= after + 100.0 + 0.001
        *_, rest, _read, _error = read_run(fd, 1, b"", -1, -1, -1, 0, None, 100.0, 5.0)
        assert [(d, a) for d, a, _ in rest] == [(b"y" * 20, 5.0)]  # capped at the loop's now
    finally:
        receiver.close()
        sender.close()
