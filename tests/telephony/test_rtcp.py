"""RTCP (RFC 3550) packets byte for byte: RR and SR with SDES CNAME as we build them, report
blocks on what we received (loss, fraction per interval, extended highest sequence across the
16-bit wrap, interarrival jitter, LSR/DLSR), and what we read of the caller's reports."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from imapvm.telephony.rtp.rtcp import RtcpState

OURS, THEIRS = 0x01020304, 0xA0B0C0D0
SDES = b"\x81\xca\x00\x03" + bytes.fromhex("01020304") + b"\x01\x03a@b\x00\x00\x00"


def state() -> RtcpState:
    return RtcpState(OURS, "a@b")


def receive(rtcp: RtcpState, seqs: list[int], ts0: int = 0) -> None:
    """Packets sent every 20 ms from ``seqs[0]`` on, arriving with the same delay each."""
    for seq in seqs:
        n = (seq - seqs[0]) % 65536
        rtcp.on_rtp(THEIRS, seq, (ts0 + 160 * n) & 0xFFFFFFFF, 10.0 + 0.02 * n)


def block(rtcp: RtcpState, now: float = 20.0) -> tuple[int, ...]:
    """The one report block of our (RR) packet, as its seven fields."""
    data = rtcp.build(0, now)
    assert data[:2] == b"\x81\xc9"  # RR, one block
    assert data[2:4] == b"\x00\x07"  # 8 words after the first
    assert data[-len(SDES):] == SDES
    return struct.unpack_from("!IB3sIIII", data, 8)


def test_rr_with_nothing_received_is_a_bare_rr_and_cname() -> None:
    assert state().build(0, 0.0) == b"\x80\xc9\x00\x01" + bytes.fromhex("01020304") + SDES


def test_sr_after_sending_carries_ntp_time_rtp_time_and_counts() -> None:
    rtcp = state()
    for _ in range(3):
        rtcp.on_sent(160)
    data = rtcp.build(0x11223344, 0.0, wall=0.5)  # 1970-01-01T00:00:00.5Z
    assert data == (b"\x80\xc8\x00\x06" + bytes.fromhex("01020304")
                    + struct.pack("!IIIII", 2208988800, 0x80000000, 0x11223344, 3, 480) + SDES)


def test_sr_with_a_report_block_on_the_callers_stream() -> None:
    rtcp = state()
    rtcp.on_sent(160)
    receive(rtcp, [100, 101, 102])
    data = rtcp.build(0, 20.0, wall=0.0)
    assert data[:4] == b"\x81\xc8\x00\x0c"  # SR, one block: 13 words
    ssrc, fraction, cumulative, ext_max, _jitter, lsr, dlsr = struct.unpack_from(
        "!IB3sIIII", data, 28)
    assert (ssrc, fraction, cumulative, ext_max, lsr, dlsr) == (THEIRS, 0, b"\0\0\0", 102, 0, 0)
    assert data[52:] == SDES


def test_loss_fraction_is_per_interval_and_cumulative_lost_is_not() -> None:
    rtcp = state()
    receive(rtcp, [1, 2, 3, 6, 7, 8, 9, 10])  # 4 and 5 never came
    assert (rtcp.expected, rtcp.lost) == (10, 2)
    _ssrc, fraction, cumulative, ext_max, *_ = block(rtcp)
    assert (fraction, int.from_bytes(cumulative, "big"), ext_max) == ((2 << 8) // 10, 2, 10)
    for seq in range(11, 21):  # the next interval: all ten arrive
        rtcp.on_rtp(THEIRS, seq, 160 * (seq - 1), 10.0 + 0.02 * (seq - 1))
    _ssrc, fraction, cumulative, ext_max, *_ = block(rtcp)
    assert (fraction, int.from_bytes(cumulative, "big"), ext_max) == (0, 2, 20)
    assert rtcp.summary().startswith("received 18, lost 2 (10.0%), jitter 0.0 ms")


def test_sequence_numbers_wrap_into_the_cycle_count() -> None:
    rtcp = state()
    receive(rtcp, [65534, 65535, 0, 1])
    assert (rtcp.expected, rtcp.lost) == (4, 0)
    assert block(rtcp)[3] == (1 << 16) + 1  # extended highest sequence number


def test_late_and_duplicate_packets_do_not_move_the_highest_sequence() -> None:
    rtcp = state()
    receive(rtcp, [10, 11, 13, 12, 13])  # 12 late, 13 twice
    assert rtcp.expected == 4
    assert rtcp.lost == 0  # duplicates make up for nothing lost; never below zero
    assert block(rtcp)[3] == 13


def test_dtmf_events_count_for_loss_but_not_for_jitter() -> None:
    rtcp = state()
    receive(rtcp, [1, 2, 3])
    for seq in (4, 5, 6):  # RFC 4733: the event's start timestamp on every packet
        rtcp.on_rtp(THEIRS, seq, 480, 10.0 + 0.02 * (seq - 1), timing=False)
    for seq in (7, 8):
        rtcp.on_rtp(THEIRS, seq, 160 * (seq - 1), 10.0 + 0.02 * (seq - 1))
    assert (rtcp.expected, rtcp.lost) == (8, 0)
    assert rtcp.jitter_ms < 1e-6


def test_a_new_ssrc_starts_the_accounting_again() -> None:
    rtcp = state()
    receive(rtcp, [1, 5])
    rtcp.on_rtp(0x99, 700, 0, 30.0)
    rtcp.on_rtp(0x99, 701, 160, 30.02)
    assert (rtcp.remote_ssrc, rtcp.expected, rtcp.lost) == (0x99, 2, 0)


def test_jitter_is_zero_on_time_and_follows_the_rfc_filter_when_late() -> None:
    steady = state()
    receive(steady, list(range(50)))
    assert steady.jitter_ms < 1e-6
    jumpy = state()  # every other packet 10 ms late: |D| = 80 clock units each time
    for n in range(50):
        jumpy.on_rtp(THEIRS, n, 160 * n, 10.0 + 0.02 * n + (0.01 if n % 2 else 0.0))
    expected = 80 * (1 - (15 / 16) ** 49)  # J += (|D| - J) / 16, 49 differences
    assert abs(jumpy.jitter_ms - expected / 8) < 1e-6
    assert block(jumpy)[4] == int(expected)


def test_jitter_survives_the_rtp_timestamp_wrapping() -> None:
    rtcp = state()
    receive(rtcp, list(range(20)), ts0=0xFFFFFFFF - 5 * 160)  # wraps at the 6th packet
    assert rtcp.jitter_ms < 1e-6


def peer_rr(fraction: int, lost: int, jitter: int, about: int = OURS) -> bytes:
    blk = struct.pack("!IB3sIIII", about, fraction, (lost & 0xFFFFFF).to_bytes(3, "big"),
                      1234, jitter, 0, 0)
    return b"\x81\xc9\x00\x07" + struct.pack("!I", THEIRS) + blk


def test_parse_reads_the_callers_block_about_our_stream() -> None:
    rtcp = state()
    assert rtcp.parse(peer_rr(64, 7, 80) + SDES, 1.0)
    assert (rtcp.peer.fraction_lost, rtcp.peer.cumulative_lost, rtcp.peer.jitter_ms,
            rtcp.peer.reports) == (0.25, 7, 10.0, 1)
    assert rtcp.parse(peer_rr(0, -1, 0), 2.0)  # 24-bit two's complement: duplicates
    assert (rtcp.peer.cumulative_lost, rtcp.peer.reports) == (-1, 2)
    assert "the caller reports lost -1" in rtcp.summary()


def test_parse_ignores_blocks_about_other_sources() -> None:
    rtcp = state()
    assert rtcp.parse(peer_rr(255, 1000, 9999, about=0x42), 1.0)
    assert rtcp.peer.reports == 0


def test_lsr_and_dlsr_echo_the_callers_last_sr() -> None:
    rtcp = state()
    receive(rtcp, [1, 2])
    sr = (b"\x80\xc8\x00\x06" + struct.pack("!I", THEIRS)
          + struct.pack("!IIIII", 0x12345678, 0x9ABCDEF0, 0, 10, 1600))
    assert rtcp.parse(sr, 100.0)
    *_rest, lsr, dlsr = block(rtcp, now=101.5)
    assert lsr == 0x56789ABC  # middle 32 bits of its NTP timestamp
    assert dlsr == int(1.5 * 65536)  # 1.5 s since, in 1/65536 s


def test_parse_refuses_what_is_not_rtcp() -> None:
    rtcp = state()
    assert not rtcp.parse(b"", 0.0)
    assert not rtcp.parse(b"\x40\xc9\x00\x01\x00\x00\x00\x00", 0.0)  # version 1
    assert not rtcp.parse(b"\x81\xc9\x00\x07" + b"\0" * 8, 0.0)  # says 32 bytes, has 12
    assert rtcp.peer.reports == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    rtcp = state()
    rtcp.parse(data, 0.0)
    assert rtcp.peer.reports in (0, 1, 2, 3, 4, 5, 6, 7, 8)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=60))
def test_what_we_build_we_parse_back(seqs: list[int]) -> None:
    """Our own report, read by a peer whose SSRC it is about, gives back our cumulative loss."""
    ours = state()
    for n, seq in enumerate(seqs):
        ours.on_rtp(THEIRS, seq, 160 * n, 0.02 * n)
    peer = RtcpState(THEIRS, "peer")
    assert peer.parse(ours.build(0, 5.0), 5.0)
    assert peer.peer.reports == 1
    assert peer.peer.cumulative_lost == ours.lost


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 0xFFFF),
    steps=st.lists(st.tuples(st.integers(-5, 40), st.floats(0.0, 0.2)), min_size=1,
                   max_size=60),
    split=st.integers(0, 60),
)
def test_a_run_of_packets_is_accounted_as_one_by_one(
    start: int, steps: list[tuple[int, float]], split: int
) -> None:
    """Packets accounted in runs of any length (the RTP session's short path, once per read)
    leave exactly the state that one packet at a time leaves (the slow path, ``on_rtp``):
    sequence wrap, reordering, jumps and jitter."""
    packets, seq, ts, at = [], start, 1000, 0.0
    for jump, gap in steps:
        seq = (seq + jump) & 0xFFFF
        ts = (ts + 160 * jump) & 0xFFFFFFFF
        at += gap
        packets.append((seq, ts, at))
    one, run = state(), state()
    for seq, ts, at in packets:
        one.on_rtp(THEIRS, seq, ts, at)
    run.on_rtp_run(THEIRS, packets[:split])
    run.on_rtp_run(THEIRS, packets[split:])
    assert vars(run) == vars(one)
    assert run.build(0, at, wall=1.0) == one.build(0, at, wall=1.0)
