"""An RTP session's receiving on real loopback sockets: the short path for plain in-order audio
and the full path (header extensions, CSRCs, RFC 4733 events, reordering, strangers) keep one
order and one count between them."""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from imapvm.audio import g711
from imapvm.telephony.rtp.dtmf import build_event
from imapvm.telephony.rtp.packet import build_rtp
from imapvm.telephony.rtp.session import RtpSession, open_rtp_session
from imapvm.telephony.sdp import NegotiatedMedia

SSRC = 0x5EED


def payload(n: int) -> bytes:
    return bytes([n % 256]) * 160


def with_extension_and_csrc(data: bytes) -> bytes:
    """The same packet with one CSRC and a one-word header extension (as SBCs add)."""
    head = bytearray(data[:12])
    head[0] = 0x80 | 0x10 | 1
    return bytes(head) + b"\x00\x00\x00\x07" + b"\xbe\xde\x00\x01" + b"\x11" * 4 + data[12:]


async def session_with_caller(caller: socket.socket) -> RtpSession:
    session = await open_rtp_session("127.0.0.1", None)
    host, port = caller.getsockname()
    session.set_media(NegotiatedMedia(host, port, 0, "PCMU", 101, 20, "sendrecv"))
    session._unpace()  # read by hand below, not on the loop's clock
    return session


def send(caller: socket.socket, session: RtpSession, data: bytes) -> None:
    caller.sendto(data, session.local_address)


async def test_short_and_full_paths_keep_order_count_and_digits() -> None:
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))  # another host: never mixed into the call
    session = await session_with_caller(caller)
    heard: list[np.ndarray] = []
    digits: list[tuple[str, int]] = []
    session.audio_sink = heard.append
    session.digit_sink = lambda d, ms: digits.append((d, ms))
    try:
        order = [1, 2, 3, 4, 5, 7, 6, 8, 9, 10]  # 7 before 6: reordered
        for seq in order:
            data = build_rtp(0, seq, seq * 160, SSRC, payload(seq))
            if seq in (4, 8):
                data = with_extension_and_csrc(data)  # the full path, between short ones
            send(caller, session, data)
            if seq == 1:
                session._read()  # latched to the caller: what follows may take the short path
            if seq == 5:
                send(stranger, session, build_rtp(0, 6, 960, SSRC, payload(99)))
                for i, end in enumerate((False, False, True, True)):
                    send(caller, session, build_rtp(101, 100 + i, 5 * 160, SSRC,
                                                    build_event(1, end, 480)))
        session.flush_audio()
        audio = np.concatenate(heard)
        expected = np.concatenate([g711.ulaw_decode(payload(n)) for n in range(1, 11)])
        assert np.array_equal(audio, expected)
        assert session.stats.received == 10 + 4  # audio and the event packets
        assert session.stats.ignored == 1  # the stranger's packet
        assert digits == [("1", 60)]
        assert session.reorder_stats["lost"] == 0
        assert session.rtcp is not None
        assert session.rtcp.expected >= 10
    finally:
        session.close()
        caller.close()
        stranger.close()


async def test_a_new_ssrc_and_a_backlog_go_through_in_order() -> None:
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    session = await session_with_caller(caller)
    heard: list[np.ndarray] = []
    session.audio_sink = heard.append
    try:
        for seq in range(1, 41):  # a backlog of 40 frames (a stalled loop), then a new SSRC
            send(caller, session, build_rtp(0, seq, seq * 160, SSRC, payload(seq)))
        for seq in range(500, 505):
            send(caller, session, build_rtp(0, seq, seq * 160, SSRC + 1, payload(seq)))
        # the loop drains a backlog a bounded read at a time, as after_tick does
        for _ in range(10):
            session._read()
            await asyncio.sleep(0)
        session.flush_audio()
        audio = np.concatenate(heard)
        sent = [*range(1, 41), *range(500, 505)]
        assert np.array_equal(
            audio, np.concatenate([g711.ulaw_decode(payload(n)) for n in sent]))
        assert session.stats.received == len(sent)
    finally:
        session.close()
        caller.close()
