"""RTP packet header parsing and building (RFC 3550 §5.1), nothing else.

Parsing tolerates CSRC lists, header extensions and padding because PBXs and SBCs add them;
anything inconsistent returns None (RTP is never answered, only dropped).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC


class RtpPacket(NamedTuple):  # a tuple: 25,000 of these a second at 500 calls
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    if len(data) < 12:
        return None
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if b0 & 0x20:
        if end == 0 or data[-1] == 0:
            return None
        end -= data[-1]
    if offset > end:
        return None
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[offset:end])


def build_rtp(payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes,
              marker: bool = False) -> bytes:
    return HEADER.pack(
        0x80, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF, ssrc,
    ) + payload
