"""One call's RTP stream on asyncio: symmetric RTP with latching, paced sending, receiving.

Audio from and to the voice menus is 8 kHz; on a G.722 call it is carried at 16 kHz on the line
(upsampled when played, decoded to 16 kHz and decimated for the menus when received), and a
``wide_sink`` can take the received 16 kHz audio as it is, for recordings of full bandwidth.

Pacing is one ``loop.call_at`` chain per stream on an absolute schedule (start + n·ptime), the
option measured best in reference/test-infra.md §8 (p99 ≈ 4 ms for 200 calls at about a third of
a core; a shared tick was cheaper but burstier). If the loop stalls for more than a few frames
the schedule restarts from now instead of bursting to catch up.

We send continuously (silence when nothing plays) so NATs stay open and the far end can latch
onto us; we stop sending only when the caller puts us on hold.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import numpy.typing as npt

from ...audio import g722
from ..sdp import NegotiatedMedia
from .codecs import StreamCodec
from .dtmf import DtmfReceiver
from .packet import build_rtp, parse_rtp
from .reorder import ReorderBuffer
from .srtp import SrtpError, SrtpStream

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
    withheld: int = 0  # frames not sent because the peer put the call on hold
    send_errors_ms: list[float] | None = None  # filled only when measuring (bench)
    latched: Address | None = None
    extra: dict[str, int] = field(default_factory=dict)


class RtpSession(asyncio.DatagramProtocol):
    """Created by ``open_rtp_session``; the Channel plays into it and listens to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, measure: bool = False) -> None:
        self._loop = loop
        self.transport: asyncio.DatagramTransport | None = None
        self.stats = RtpStats(send_errors_ms=[] if measure else None)
        self.media: NegotiatedMedia | None = None
        self._remote: Address | None = None
        self._latched = False
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._ptime = 0.02
        self._frame = 160  # RTP clock ticks per frame (8000 Hz for every codec we speak)
        self.codec = StreamCodec("PCMU")
        self._frame_samples = 160  # line samples per frame
        self._silence = np.zeros(160, dtype=np.int16)
        self._play: npt.NDArray[np.int16] = self._silence[:0]  # at the line's rate
        self._play_pcm: npt.NDArray[np.int16] | None = None  # as given, for a codec change
        self._play_rate = SAMPLE_RATE
        self._play_pos = 0
        self._decimator = g722.Decimator()
        self.srtp: SrtpStream | None = None
        self._play_done: asyncio.Future[bool] | None = None
        self._marker = True
        self._t0 = 0.0
        self._n = 0
        self._timer: asyncio.TimerHandle | None = None
        self._reorder = ReorderBuffer()
        self._dtmf = DtmfReceiver()
        self._audio_ssrc: int | None = None
        self.audio_sink: AudioSink | None = None
        #: Received audio at the line's rate (16 kHz on G.722), before the menus' 8 kHz.
        self.wide_sink: AudioSink | None = None
        self.digit_sink: DigitSink | None = None
        # Called once when nothing arrived for ``inactivity_timeout`` s while not on hold:
        # a phone that vanished without BYE must not keep a call (and a recording) open.
        self.inactivity_timeout: float | None = None
        self.on_inactive: Callable[[], None] | None = None
        # Called once when the media loop itself fails (a bug, or media we should have
        # refused): the call is ended with what was recorded so far, and the failure logged.
        self.on_failure: Callable[[BaseException], None] | None = None
        self.failed: BaseException | None = None
        self._last_rx = loop.time()
        self.closed = asyncio.Event()

    # ---- asyncio protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %s", exc)  # ICMP unreachable before the peer listens

    @property
    def local_address(self) -> Address:
        assert self.transport is not None
        sock = self.transport.get_extra_info("sockname")
        return sock[0], sock[1]

    # ---- media control ----------------------------------------------------------------
    def set_media(self, media: NegotiatedMedia) -> None:
        """Apply negotiated media (initial answer or re-INVITE); re-latch to the new peer."""
        if media.encoding.upper() != self.codec.encoding:
            self.codec = StreamCodec(media.encoding)
            self._decimator = g722.Decimator()
            if self._play_pcm is not None and len(self._play):
                done = self._play_pos / len(self._play)
                self._play = self.codec.from_menu_audio(self._play_pcm, self._play_rate)
                self._play_pos = int(done * len(self._play))
        if media.srtp is None:
            self.srtp = None
        elif self.srtp is None or self.srtp.keys != media.srtp:
            self.srtp = SrtpStream(media.srtp)
        self.media = media
        self._remote = (media.remote_host, media.remote_port)
        self._latched = False
        self._ptime = media.ptime_ms / 1000
        self._frame = SAMPLE_RATE * media.ptime_ms // 1000
        self._frame_samples = self.codec.rate * media.ptime_ms // 1000
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        if self._timer is None and self.transport is not None:
            self._t0, self._n = self._loop.time(), 0
            self._schedule()

    def play(self, pcm: npt.NDArray[np.int16], rate: int = SAMPLE_RATE) -> asyncio.Future[bool]:
        """Queue audio at ``rate`` (replacing what plays); the future is True when it was sent
        to the end."""
        self.stop_playback()
        self._play = self.codec.from_menu_audio(pcm, rate)
        self._play_pcm, self._play_rate = pcm, rate
        self._play_pos = 0
        self._marker = True
        self._play_done = self._loop.create_future()
        if len(self._play) == 0:
            self._play_done.set_result(True)
        return self._play_done

    def stop_playback(self) -> None:
        if self._play_done is not None and not self._play_done.done():
            self._play_done.set_result(False)
        self._play, self._play_pos, self._play_done = self._silence[:0], 0, None
        self._play_pcm = None

    def flush_audio(self) -> None:
        """Hand over audio held back for reordering (end of a recording)."""
        self._emit_audio(self._reorder.flush())

    def close(self) -> None:
        self.stop_playback()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._emit_audio(self._reorder.flush())
        if self.transport is not None:
            self.transport.close()

    # ---- sending ----------------------------------------------------------------------
    def _schedule(self) -> None:
        self._n += 1
        self._timer = self._loop.call_at(self._t0 + self._n * self._ptime, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        due = self._t0 + self._n * self._ptime
        if self.stats.send_errors_ms is not None:
            self.stats.send_errors_ms.append((now - due) * 1000)
        if now - due > 5 * self._ptime:  # the loop stalled: restart the schedule, no burst
            self._t0, self._n = now, 0
        try:
            try:
                self._send_frame()
            except OSError as exc:  # the network said no: keep the clock running regardless
                log.debug("RTP send failed: %s", exc)
            if self._n % 25 == 0:  # twice a second is plenty for these two checks
                self._check_inactivity(now)
                for digit, duration in self._dtmf.expire(now):
                    if self.digit_sink:
                        self.digit_sink(digit, duration)
        except Exception as exc:
            self._fail(exc)
            return
        self._schedule()

    def _fail(self, exc: BaseException) -> None:
        """Stop this stream for good and tell the call (never a silent, hanging call)."""
        if self.failed is not None:
            return
        self.failed = exc
        log.error("RTP media loop failed (%s: %s): ending the call", type(exc).__name__, exc,
                  exc_info=exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stop_playback()
        callback, self.on_failure = self.on_failure, None
        if callback is not None:
            callback(exc)

    def _check_inactivity(self, now: float) -> None:
        media, limit = self.media, self.inactivity_timeout
        if limit is None or media is None or media.direction != "sendrecv":
            self._last_rx = now  # on hold the far end may legitimately be silent
            return
        if now - self._last_rx > limit and self.on_inactive is not None:
            callback, self.on_inactive = self.on_inactive, None
            callback()

    def _send_frame(self) -> None:
        media = self.media
        if media is None or self._remote is None or self.transport is None:
            return
        pcm = self._silence
        if self._play_done is not None:
            chunk = self._play[self._play_pos : self._play_pos + self._frame_samples]
            self._play_pos += self._frame_samples
            if len(chunk) < self._frame_samples:
                chunk = np.concatenate([chunk, self._silence[: self._frame_samples - len(chunk)]])
            pcm = chunk
            if self._play_pos >= len(self._play):
                done = self._play_done
                self._play, self._play_pos, self._play_done = self._silence[:0], 0, None
                if not done.done():
                    done.set_result(True)
        payload = self.codec.encode(pcm)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + self._frame) & 0xFFFFFFFF
        if media.on_hold:
            self.stats.withheld += 1
            return  # keep the clock running, send nothing: the peer said it won't listen
        packet = build_rtp(media.payload_type, self._seq, self._ts, self._ssrc, payload,
                           marker=self._marker)
        self._marker = False
        if self.srtp is not None:
            packet = self.srtp.protect(packet)
        self.transport.sendto(packet, self._remote)
        self.stats.sent += 1

    # ---- receiving --------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.failed is not None:
            return
        try:
            self._receive(data, addr)
        except Exception as exc:
            self._fail(exc)

    def _receive(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        media = self.media
        if media is not None and self.srtp is not None:
            try:
                data = self.srtp.unprotect(data)
            except SrtpError:
                self.stats.ignored += 1  # forged, replayed or not ours: never decoded
                self.stats.extra["srtp_auth_failures"] = (
                    self.stats.extra.get("srtp_auth_failures", 0) + 1)
                return
        packet = parse_rtp(data)
        if media is None or packet is None:
            self.stats.ignored += 1
            return
        source = (str(addr[0]), int(addr[1]))
        if not self._latched:
            # Symmetric RTP: answer wherever the caller's media really comes from (NAT).
            self._remote, self._latched = source, True
            self.stats.latched = source
        elif self._remote is not None and source[0] != self._remote[0]:
            self.stats.ignored += 1  # another host: never mix its audio into the call
            return
        self.stats.received += 1
        self._last_rx = self._loop.time()
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
        self._emit_audio(self._reorder.push(packet.sequence, packet.timestamp, packet.payload))

    def _emit_audio(self, chunks: list[bytes | int]) -> None:
        sink, wide, media = self.audio_sink, self.wide_sink, self.media
        codec = self.codec
        # G.722 is adaptive: its decoder must see every packet, listened to or not, or it
        # drifts from the caller's encoder and what is recorded later is noise.
        if (sink is None and wide is None and not codec.wideband) or media is None or not chunks:
            return
        for chunk in chunks:
            if isinstance(chunk, int):  # lost: silence for that many 8 kHz clock ticks
                line = np.zeros(chunk * codec.rate // SAMPLE_RATE, dtype=np.int16)
            else:
                line = codec.decode(chunk)
            if wide is not None:
                wide(line)
            narrow = self._decimator.process(line) if codec.wideband else line
            if sink is not None:
                sink(narrow)

    @property
    def reorder_stats(self) -> dict[str, int]:
        s = self._reorder.stats
        return {"received": s.received, "lost": s.lost, "late": s.late, "dups": s.duplicates}


class RtpPortsExhausted(OSError):
    """Every port of the pool is taken: the call is refused (503), not answered silently."""


class PortPool:
    """Even RTP ports from a configured range, handed out round-robin (RFC 3550 §11). One port
    per call is bound (RTP); the odd port above it stays free for RTCP, which imapvm does not
    send, so a range of N ports carries N/2 calls."""

    def __init__(self, first: int, last: int) -> None:
        if first > last:
            raise ValueError("empty RTP port range")
        self.first, self.last = first, last
        self._ports = [p for p in range(first, last + 1) if p % 2 == 0] or [first]
        self._next = 0

    def __len__(self) -> int:
        return len(self._ports)

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
    for port in pool.candidates() if pool else [0]:
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: RtpSession(loop, measure), local_addr=(host, port)
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise  # not a busy port: no other port will do better
            last = exc
            continue
        return protocol
    if pool is None:
        raise RtpPortsExhausted(errno.EADDRINUSE, f"no free UDP port on {host}: {last}")
    raise RtpPortsExhausted(
        errno.EADDRINUSE, f"all {len(pool)} RTP ports of {pool.first}-{pool.last} on {host} "
        "are in use (one even port per call)")
