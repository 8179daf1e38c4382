"""RTP packets, RFC 4733 events and the reorder buffer, on plain bytes."""

from __future__ import annotations

import pytest

from imapvm.telephony.rtp.dtmf import DtmfReceiver, build_event, event_code, parse_event
from imapvm.telephony.rtp.packet import build_rtp, parse_rtp
from imapvm.telephony.rtp.reorder import ReorderBuffer
from imapvm.telephony.rtp.session import PortPool


def test_rtp_round_trip_and_wraparound() -> None:
    data = build_rtp(0, 0x1FFFF, 2**32 + 5, 0xDEADBEEF, b"\xff" * 160, marker=True)
    pkt = parse_rtp(data)
    assert pkt is not None
    assert (pkt.payload_type, pkt.marker, pkt.sequence, pkt.timestamp, pkt.ssrc) == (
        0, True, 0xFFFF, 5, 0xDEADBEEF
    )
    assert pkt.payload == b"\xff" * 160


def test_rtp_with_csrc_extension_and_padding() -> None:
    header = bytearray(build_rtp(8, 1, 2, 3, b""))
    header[0] = 0x80 | 0x20 | 0x10 | 2  # padding, extension, 2 CSRCs
    body = b"\x00" * 8 + b"\xbe\xde\x00\x01" + b"\x11" * 4 + b"payload" + b"\x00\x00\x03"
    pkt = parse_rtp(bytes(header) + body)
    assert pkt is not None
    assert pkt.payload == b"payload"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80" * 11, b"\x40" + b"\x00" * 20, bytes([0x8F]) + b"\x00" * 20,
     bytes([0xA0]) + b"\x00" * 11 + b"\x00", bytes([0x90]) + b"\x00" * 13],
)
def test_bad_rtp_is_none(data: bytes) -> None:
    assert parse_rtp(data) is None


def test_event_payload_round_trip() -> None:
    ev = parse_event(build_event(event_code("#"), True, 1280, volume=7))
    assert ev is not None
    assert (ev.event, ev.end, ev.volume, ev.duration) == (11, True, 7, 1280)
    with pytest.raises(ValueError, match="DTMF"):
        event_code("x")


def test_dtmf_receiver_reports_once_with_duration_despite_repeated_end_packets() -> None:
    rx = DtmfReceiver()
    out = []
    for i, dur in enumerate((160, 320, 480)):
        out += rx.feed(1, 1000, build_event(5, False, dur), i * 0.02)
    for _ in range(3):
        out += rx.feed(1, 1000, build_event(5, True, 640), 0.08)
    assert out == [("5", 80)]
    assert rx.feed(1, 1000, build_event(5, True, 640), 0.5) == []


def test_dtmf_receiver_recovers_lost_end_packets() -> None:
    rx = DtmfReceiver(stale_after=0.25)
    assert rx.feed(1, 1000, build_event(1, False, 160), 0.0) == []
    # a new event starts before the old one ended: the old one is reported
    assert rx.feed(1, 3000, build_event(2, False, 160), 0.3) == [("1", 20)]
    assert rx.expire(0.4) == []
    assert rx.expire(0.6) == [("2", 20)]
    # the same digit pressed twice is two events (different timestamps)
    rx.feed(1, 5000, build_event(2, True, 800), 1.0)
    assert rx.feed(1, 7000, build_event(2, True, 800), 1.5) == [("2", 100)]


def test_reorder_buffer_reorders_and_fills_gaps() -> None:
    buf = ReorderBuffer(depth=2)
    frame = {n: bytes([n]) * 160 for n in range(10)}
    out: list[bytes | int] = []
    for seq in (0, 2, 1, 3, 5, 6, 7, 8):  # 1 late, 4 lost
        out += buf.push(seq, seq * 160, frame[seq])
    out += buf.flush()
    assert out == [frame[0], frame[1], frame[2], frame[3], 160, frame[5], frame[6], frame[7],
                   frame[8]]
    assert buf.stats.lost == 1


def test_reorder_buffer_drops_duplicates_and_late_packets_and_wraps() -> None:
    buf = ReorderBuffer(depth=1)
    out: list[bytes | int] = []
    for seq in [65534, 65535, 65535, 0, 1, 65534]:
        out += buf.push(seq, 1000 + 160 * ((seq - 65534) & 0xFFFF), b"x" * 160)
    out += buf.flush()
    assert out == [b"x" * 160] * 4
    assert (buf.stats.duplicates, buf.stats.late) == (0, 2)  # released already: "late"


def test_reorder_buffer_timestamp_jump_is_silence_and_restart_is_handled() -> None:
    buf = ReorderBuffer(depth=0)
    assert buf.push(10, 0, b"a" * 160) == [b"a" * 160]
    assert buf.push(11, 160 + 800, b"b" * 160) == [800, b"b" * 160]  # DTX gap
    assert buf.push(40000, 99999, b"c" * 160) == []  # one stray is dropped ...
    assert buf.push(40001, 99999 + 160, b"d" * 160) == []
    assert buf.push(40002, 99999 + 320, b"e" * 160) == [b"e" * 160]  # ... three: a restart


def test_port_pool_rotates_even_ports() -> None:
    pool = PortPool(10001, 10008)
    assert pool.candidates() == [10002, 10004, 10006, 10008]
    assert pool.candidates()[0] == 10004


def test_a_read_batch_is_decoded_as_runs_with_gaps_kept_apart() -> None:
    from imapvm.telephony.rtp.session import _joined

    assert _joined([b"ab", b"cd", 160, b"ef", 80, 40, b"g"]) == [b"abcd", 160, b"ef", 80, 40, b"g"]
    assert _joined([]) == []


def test_silence_is_judged_per_20_ms_frame_within_a_chunk() -> None:
    import numpy as np

    from imapvm.telephony.channel import _last_loud_frame

    loud = np.full(160, 3000, dtype=np.int16)
    quiet = np.zeros(160, dtype=np.int16)
    assert _last_loud_frame(np.concatenate([loud, quiet, quiet, quiet]), 128) == 160
    assert _last_loud_frame(np.concatenate([quiet, quiet, loud, quiet]), 128) == 480
    assert _last_loud_frame(np.concatenate([quiet, quiet]), 128) is None
    assert _last_loud_frame(np.concatenate([quiet, loud[:80]]), 128) == 240  # a short tail
