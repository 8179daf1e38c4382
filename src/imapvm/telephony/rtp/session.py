"""One call's RTP stream on asyncio: symmetric RTP with latching, paced G.711 sending, receiving.

Pacing is one shared clock for all streams of the loop (``pacer.py``): a tick every 2 ms on an
absolute schedule, each stream due on a tick of its own phase, so the calls' packets are spread
evenly over the ptime instead of costing one asyncio timer each (measured with
``bench/sip_load.py``). If the loop stalls for more than a few frames a stream's schedule
restarts instead of bursting to catch up.

Packets go out with the socket's own ``sendto`` (a full socket buffer drops the frame, which
for RTP is better than queueing it late), and the receive path decodes each frame once.

We send continuously (silence when nothing plays) so NATs stay open and the far end can latch
onto us; we stop sending only when the caller puts us on hold.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ...audio import g711
from ..sdp import NegotiatedMedia
from .dtmf import DtmfReceiver
from .pacer import Pacer
from .packet import build_rtp, parse_rtp
from .reorder import ReorderBuffer

log = logging.getLogger(__name__)

Address = tuple[str, int]
AudioSink = Callable[[npt.NDArray[np.int16]], None]
DigitSink = Callable[[str, int], None]
SAMPLE_RATE = 8000


@dataclass
class RtpStats:
    sent: int = 0
    received: int = 0
    ignored: int = 0  # wrong source or payload type
    send_errors_ms: list[float] | None = None  # filled only when measuring (bench)
    latched: Address | None = None
    extra: dict[str, int] = field(default_factory=dict)


class RtpSession:
    """Created by ``open_rtp_session``; the Channel plays into it and listens to it.

    The session owns a non-blocking UDP socket and no asyncio transport: on each of its
    pacer ticks it sends its frame, then reads what arrived since the last tick (at 50
    packets a second that is one packet, read 20 ms late at most), so the loop has no reader
    per call and a tick's sends are never queued behind a burst of reads.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, measure: bool = False
    ) -> None:
        self._loop = loop
        self._pacer = Pacer.for_loop(loop)
        self._paced = False
        self._sock = sock
        self._open = True
        self.stats = RtpStats(send_errors_ms=[] if measure else None)
        self.media: NegotiatedMedia | None = None
        self._remote: Address | None = None
        self._latched = False
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._ptime = 0.02
        self._frame = 160
        self._silence = bytes([g711.ULAW_SILENCE]) * 160
        self._play: bytes = b""
        self._play_pcm: npt.NDArray[np.int16] | None = None  # to re-encode on a codec change
        self._play_pos = 0
        self._play_done: asyncio.Future[bool] | None = None
        self._marker = True
        self._n = 0
        self._on_hold = False
        self._rx_seen = False
        self._reorder = ReorderBuffer()
        self._decode: Callable[[bytes], npt.NDArray[np.int16]] | None = None
        self._dtmf = DtmfReceiver()
        self._audio_ssrc: int | None = None
        self.audio_sink: AudioSink | None = None
        self.digit_sink: DigitSink | None = None
        # Called once when nothing arrived for ``inactivity_timeout`` s while not on hold:
        # a phone that vanished without BYE must not keep a call (and a recording) open.
        self.inactivity_timeout: float | None = None
        self.on_inactive: Callable[[], None] | None = None
        self._last_rx = loop.time()
        self.closed = asyncio.Event()

    @property
    def local_address(self) -> Address:
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    # ---- media control ----------------------------------------------------------------
    def set_media(self, media: NegotiatedMedia) -> None:
        """Apply negotiated media (initial answer or re-INVITE); re-latch to the new peer."""
        if self.media is not None and self.media.encoding != media.encoding and self._play:
            assert self._play_pcm is not None
            self._play = g711.encode(media.encoding, self._play_pcm)
        self.media = media
        self._on_hold = media.on_hold
        self._remote = (media.remote_host, media.remote_port)
        self._latched = False
        ptime = media.ptime_ms / 1000
        self._frame = SAMPLE_RATE * media.ptime_ms // 1000
        self._silence = bytes([g711.silence_byte(media.encoding)]) * self._frame
        self._decode = _DECODERS.get(media.encoding.upper())
        if not self._paced and self._open:
            self._paced, self._ptime = True, ptime
            self._pacer.add(self, ptime)
        elif self._paced and ptime != self._ptime:
            self._ptime = ptime
            self._pacer.change(self, ptime)

    def play(self, pcm: npt.NDArray[np.int16]) -> asyncio.Future[bool]:
        """Queue audio (replacing what plays); the future is True when it was sent to the end."""
        self.stop_playback()
        encoding = self.media.encoding if self.media else "PCMU"
        self._play = g711.encode(encoding, pcm)
        self._play_pcm = pcm
        self._play_pos = 0
        self._marker = True
        self._play_done = self._loop.create_future()
        if not self._play:
            self._play_done.set_result(True)
        return self._play_done

    def stop_playback(self) -> None:
        if self._play_done is not None and not self._play_done.done():
            self._play_done.set_result(False)
        self._play, self._play_pos, self._play_done = b"", 0, None
        self._play_pcm = None

    def flush_audio(self) -> None:
        """Hand over audio held back for reordering (end of a recording)."""
        self._emit_audio(self._reorder.flush())

    def close(self) -> None:
        self.stop_playback()
        if self._paced:
            self._pacer.remove(self)
            self._paced = False
        self._emit_audio(self._reorder.flush())
        if self._open:
            self._open = False
            self._sock.close()
            self.closed.set()

    # ---- sending ----------------------------------------------------------------------
    def on_tick(self, due: float, now: float) -> None:
        """The pacer says a frame is due (at ``due``; ``now`` is when its tick ran)."""
        errors = self.stats.send_errors_ms
        try:
            self._send_frame()
        except (OSError, OverflowError, ValueError) as exc:  # keep the clock running regardless
            log.debug("RTP send failed: %s", exc)
        if errors is not None:  # measured after the send: what the packet really waited
            errors.append((self._loop.time() - due) * 1000)
        self._read()
        self._n += 1
        if self._n % 25 == 0:  # twice a second is plenty for these two checks
            self._check_inactivity(now)
            for digit, duration in self._dtmf.expire(now):
                if self.digit_sink:
                    self.digit_sink(digit, duration)

    def _check_inactivity(self, now: float) -> None:
        if self._rx_seen:  # set per packet; the clock is read here, twice a second
            self._rx_seen, self._last_rx = False, now
        media, limit = self.media, self.inactivity_timeout
        if limit is None or media is None or media.direction != "sendrecv":
            self._last_rx = now  # on hold the far end may legitimately be silent
            return
        if now - self._last_rx > limit and self.on_inactive is not None:
            callback, self.on_inactive = self.on_inactive, None
            callback()

    def _send_frame(self) -> None:
        media = self.media
        if media is None or self._remote is None or not self._open:
            return
        payload = self._silence
        if self._play_done is not None:
            chunk = self._play[self._play_pos : self._play_pos + self._frame]
            self._play_pos += self._frame
            if len(chunk) < self._frame:
                chunk += self._silence[: self._frame - len(chunk)]
            payload = chunk
            if self._play_pos >= len(self._play):
                done = self._play_done
                self._play, self._play_pos, self._play_done = b"", 0, None
                if not done.done():
                    done.set_result(True)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + self._frame) & 0xFFFFFFFF
        if self._on_hold:
            return  # keep the clock running, send nothing: the peer said it won't listen
        packet = build_rtp(media.payload_type, self._seq, self._ts, self._ssrc, payload,
                           marker=self._marker)
        self._marker = False
        try:
            self._sock.sendto(packet, self._remote)
        except BlockingIOError:  # the socket buffer is full: a late frame is a useless one
            self.stats.extra["send_dropped"] = self.stats.extra.get("send_dropped", 0) + 1
            return
        self.stats.sent += 1

    # ---- receiving --------------------------------------------------------------------
    def _read(self, limit: int = 32) -> None:
        """Handle what arrived since the last tick (bounded: a backlog drains over ticks)."""
        sock = self._sock
        for _ in range(limit):
            if not self._open:
                return
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP unreachable before the peer listens
                log.debug("RTP socket error: %s", exc)
                return
            self.datagram_received(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        media = self.media
        packet = parse_rtp(data)
        if media is None or packet is None:
            self.stats.ignored += 1
            return
        if not self._latched:
            # Symmetric RTP: answer wherever the caller's media really comes from (NAT).
            source = (str(addr[0]), int(addr[1]))
            self._remote, self._latched = source, True
            self.stats.latched = source
        elif self._remote is not None and addr[0] != self._remote[0]:
            self.stats.ignored += 1  # another host: never mix its audio into the call
            return
        self.stats.received += 1
        self._rx_seen = True
        if packet.payload_type == media.dtmf_payload_type:
            for digit, duration in self._dtmf.feed(packet.ssrc, packet.timestamp, packet.payload,
                                                   self._loop.time()):
                if self.digit_sink:
                    self.digit_sink(digit, duration)
            return
        if packet.payload_type != media.payload_type:
            self.stats.ignored += 1  # comfort noise, another codec: not ours to decode
            return
        if packet.ssrc != self._audio_ssrc:
            self._emit_audio(self._reorder.flush())
            self._reorder = ReorderBuffer()
            self._audio_ssrc = packet.ssrc
        chunks = self._reorder.push(packet.sequence, packet.timestamp, packet.payload)
        if chunks and self.audio_sink is not None:
            self._emit_audio(chunks)

    def _emit_audio(self, chunks: list[bytes | int]) -> None:
        sink, decode = self.audio_sink, self._decode
        if sink is None or decode is None or not chunks:
            return
        for chunk in chunks:
            if isinstance(chunk, int):
                sink(np.zeros(chunk, dtype=np.int16))
            else:
                sink(decode(chunk))

    @property
    def reorder_stats(self) -> dict[str, int]:
        s = self._reorder.stats
        return {"received": s.received, "lost": s.lost, "late": s.late, "dups": s.duplicates}


_DECODERS: dict[str, Callable[[bytes], npt.NDArray[np.int16]]] = {
    "PCMU": g711.ulaw_decode, "PCMA": g711.alaw_decode,
}


class PortPool:
    """Even RTP ports from a configured range, handed out round-robin (RFC 3550 §11)."""

    def __init__(self, first: int, last: int) -> None:
        if first > last:
            raise ValueError("empty RTP port range")
        self._ports = [p for p in range(first, last + 1) if p % 2 == 0] or [first]
        self._next = 0

    def candidates(self) -> list[int]:
        start = self._next
        self._next = (self._next + 1) % len(self._ports)
        return self._ports[start:] + self._ports[:start]


async def open_rtp_session(
    host: str, pool: PortPool | None, measure: bool = False
) -> RtpSession:
    """Bind a session on the first free port of the pool (port 0 = any when no pool)."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in pool.candidates() if pool else [0]:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return RtpSession(loop, sock, measure)
    raise OSError(f"no free RTP port: {last}")
