"""One call's RTP stream on asyncio: symmetric RTP with latching, paced sending, receiving.

Audio from and to the voice menus is 8 kHz; on a G.722 call it is carried at 16 kHz on the line
(upsampled when played, decoded to 16 kHz and decimated for the menus when received), and a
``wide_sink`` can take the received 16 kHz audio as it is, for recordings of full bandwidth.

Pacing is one shared clock for all streams of the loop (``pacer.py``): a tick every 2 ms on an
absolute schedule, each stream due on a tick of its own phase, so the calls' packets are spread
evenly over the ptime instead of costing one asyncio timer each (measured with
``bench/sip_load.py``). If the loop stalls for more than a few frames a stream's schedule
restarts instead of bursting to catch up.

A session owns a non-blocking UDP socket and no asyncio transport: on each of its ticks it
sends its frame (a full socket buffer drops the frame, which for RTP is better than queueing it
late); after every stream of the tick has sent, and every READ_EVERY frames, it reads what
arrived meanwhile (eight packets at 50 a second, at most 160 ms late, so a key press is acted on
within 0.16 s of its end; the end of a recording reads everything first). So the loop has no
reader per call, a tick's sends never wait behind reads, and few reads come back empty. G.711
prompts are encoded once when they start playing, not frame by frame.

The per-packet work of the usual packet is in C (``_fastpath.c``, the project's one compiled
module): ``send_rtp`` builds the header and sends, ``read_run`` reads a batch with one recvmmsg
and accounts the leading run of in-order packets of the call's audio. Everything else (SRTP,
DTMF, latching, reordering, gaps, a new source) is decided here in Python, and with
``fast_path`` False every packet takes that general path (tests compare the two). At 500 calls
this halved the receive path's CPU per packet and took a quarter off the whole server's
(``bench/rtp_path.py``, ``bench/sip_load.py``).

We send continuously (silence when nothing plays) so NATs stay open and the far end can latch
onto us; we stop sending only when the caller puts us on hold.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ...audio import g722
from ..sdp import NegotiatedMedia
from ._fastpath import read_run, send_rtp
from .codecs import StreamCodec
from .dtmf import DtmfReceiver
from .pacer import Pacer
from .packet import HEADER, parse_rtp
from .reorder import ReorderBuffer
from .rtcp import RtcpState
from .srtp import SrtpError, SrtpStream

log = logging.getLogger(__name__)

Address = tuple[str, int]
AudioSink = Callable[[npt.NDArray[np.int16]], None]
DigitSink = Callable[[str, int], None]
SAMPLE_RATE = 8000
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python 3.11 lacks the name
READ_EVERY = 8  # frames between reads of a stream's socket: 160 ms at 20 ms ptime (4 cost
# 5 points more of a core at 500 calls: twice the reads, decodes and empty reads)
CLOSE_READ_LIMIT = 1024  # packets read at close: 20 s at 20 ms, more than a socket holds
READ_BATCH = 64  # datagrams one recvmmsg reads at most (_fastpath.c's MAX_BATCH)


@dataclass
class RtpStats:
    sent: int = 0
    received: int = 0
    ignored: int = 0  # wrong source or payload type
    withheld: int = 0  # frames not sent because the peer put the call on hold
    send_errors_ms: list[float] | None = None  # filled only when measuring (bench)
    latched: Address | None = None
    extra: dict[str, int] = field(default_factory=dict)


class RtpSession:
    """Created by ``open_rtp_session``; the Channel plays into it and listens to it."""

    #: False: every received packet goes through ``datagram_received`` (the general path that
    #: the C run of ``_read`` shortens for the usual packet; the tests compare the two).
    fast_path = True

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, measure: bool = False,
        rtcp_sock: socket.socket | None = None,
    ) -> None:
        self._loop = loop
        # the loop's clock without a Python call per frame when it is asyncio's own
        self._clock: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time)
        self._rtcp_sock = rtcp_sock
        self._rtcp_remote: Address | None = None
        self._pacer = Pacer.for_loop(loop)
        self._paced = False
        self._sock = sock
        self._fileno = sock.fileno()
        self._open = True
        self.stats = RtpStats(send_errors_ms=[] if measure else None)
        self.media: NegotiatedMedia | None = None
        self._remote: Address | None = None
        self._packed_for: Address | None = None  # the _remote that _remote_packed is of
        self._remote_packed = b""  # its host as in_addr/in6_addr bytes, for read_run
        self._latched = False
        self._ssrc = secrets.randbits(32)
        #: RTCP (RFC 3550) reports and what they say, on the port above RTP.
        self.rtcp: RtcpState | None = (
            RtcpState(self._ssrc, f"imapvm@{sock.getsockname()[0]}") if rtcp_sock else None)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._ptime = 0.02
        self._frame = 160  # RTP clock ticks per frame (8000 Hz for every codec we speak)
        self.codec = StreamCodec("PCMU")
        self._frame_samples = 160  # line samples per frame
        self._silence = np.zeros(160, dtype=np.int16)
        # G.711 only (one byte per sample, no state): silence and the prompt encoded once
        self._silence_enc: bytes | None = self.codec.encode(self._silence)
        self._play_enc: bytes | None = None
        self._play: npt.NDArray[np.int16] = self._silence[:0]  # at the line's rate
        self._play_pcm: npt.NDArray[np.int16] | None = None  # as given, for a codec change
        self._play_rate = SAMPLE_RATE
        self._play_pos = 0
        self._decimator = g722.Decimator()
        self.srtp: SrtpStream | None = None
        self._play_done: asyncio.Future[bool] | None = None
        self._marker = True
        self._n = 0
        self._on_hold = False
        self._rx_seen = False
        self._arrival: float | None = None  # of the packet being handled (loop clock)
        self._batch: list[bytes | int] | None = None  # audio of the packets being read
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

    @property
    def local_address(self) -> Address:
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

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
                self._play_enc = self._encode_whole(self._play)
        if media.srtp is None:
            self.srtp = None
        elif self.srtp is None or self.srtp.keys != media.srtp:
            self.srtp = SrtpStream(media.srtp)
        self.media = media
        self._on_hold = media.on_hold
        self._remote = (media.remote_host, media.remote_port)
        self._latched = False
        ptime = media.ptime_ms / 1000
        self._frame = SAMPLE_RATE * media.ptime_ms // 1000
        self._frame_samples = self.codec.rate * media.ptime_ms // 1000
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        self._silence_enc = self._encode_whole(self._silence)
        if not self._paced and self._open and self.failed is None:
            self._paced, self._ptime = True, ptime
            self._pacer.add(self, ptime)
        elif self._paced and ptime != self._ptime:
            self._ptime = ptime
            self._pacer.change(self, ptime)

    def _encode_whole(self, pcm: npt.NDArray[np.int16]) -> bytes | None:
        """G.711 audio encoded in one go (sliced per frame later); None for G.722, whose
        encoder state must follow the frames as they are sent."""
        return None if self.codec.wideband else self.codec.encode(pcm)

    def play(self, pcm: npt.NDArray[np.int16], rate: int = SAMPLE_RATE) -> asyncio.Future[bool]:
        """Queue audio at ``rate`` (replacing what plays); the future is True when it was sent
        to the end."""
        self.stop_playback()
        self._play = self.codec.from_menu_audio(pcm, rate)
        self._play_enc = self._encode_whole(self._play)
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
        self._play_pcm, self._play_enc = None, None

    def flush_audio(self) -> None:
        """Hand over what arrived and what is held back for reordering (end of a
        recording): nothing the caller said before it ended is left unread."""
        self._read(limit=64)
        self._emit_audio(self._reorder.flush())

    def close(self) -> None:
        self.stop_playback()
        self._unpace()
        if self._open:
            # What the caller sent before hanging up may still wait in the socket (it is
            # read every READ_EVERY frames, later when the loop is busy): read it before
            # the socket goes, or the end of a message is lost when the BYE is read first.
            self._read(limit=CLOSE_READ_LIMIT)
        self._emit_audio(self._reorder.flush())
        if self._open:
            self._open = False
            self._sock.close()
            if self._rtcp_sock is not None:
                self._send_rtcp()  # a last report: what we saw of the caller, to the end
                self._rtcp_sock.close()
            self.closed.set()

    def _unpace(self) -> None:
        if self._paced:
            self._pacer.remove(self)
            self._paced = False

    # ---- sending ----------------------------------------------------------------------
    def on_tick(self, due: float, now: float) -> bool:
        """The pacer says a frame is due (at ``due``; ``now`` is when its tick ran). True
        when this stream has work for after the tick's sends (``after_tick``)."""
        errors = self.stats.send_errors_ms
        try:
            try:
                self._send_frame()
            except OSError as exc:  # the network said no: keep the clock running regardless
                log.debug("RTP send failed: %s", exc)
            if errors is not None:  # measured after the send: what the packet really waited
                errors.append((self._clock() - due) * 1000)
        except Exception as exc:
            self._fail(exc)
            return False
        n = self._n = self._n + 1
        return n % READ_EVERY == 0 or n % 25 == 0

    def after_tick(self, now: float) -> None:
        """Every frame of this tick has gone out: every READ_EVERY ticks, read what arrived
        meanwhile (reading a few packets at once saves the empty read that ends each batch:
        one per packet when reading every tick). The pacer calls it only on the ticks
        ``on_tick`` asked for."""
        try:
            n = self._n
            if n % READ_EVERY == 0:
                self._read()
            if n % 25:
                return
            if self._rtcp_sock is not None:
                self._read_rtcp(now)
                if n % 250 == 0:  # a report every 5 s (RFC 3550 §6.2 minimum)
                    self._send_rtcp()
            # twice a second is plenty for these two checks
            self._check_inactivity(now)
            for digit, duration in self._dtmf.expire(now):
                if self.digit_sink:
                    self.digit_sink(digit, duration)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Stop this stream for good and tell the call (never a silent, hanging call)."""
        if self.failed is not None:
            return
        self.failed = exc
        log.error("RTP media loop failed (%s: %s): ending the call", type(exc).__name__, exc,
                  exc_info=exc)
        self._unpace()
        self.stop_playback()
        callback, self.on_failure = self.on_failure, None
        if callback is not None:
            callback(exc)

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
        n = self._frame_samples
        if self._play_done is not None:
            pos = self._play_pos
            encoded = self._play_enc
            if encoded is not None:  # G.711: a slice of the prompt encoded at play()
                payload = encoded[pos : pos + n]
                if len(payload) < n:
                    assert self._silence_enc is not None
                    payload += self._silence_enc[: n - len(payload)]
            else:
                chunk = self._play[pos : pos + n]
                if len(chunk) < n:
                    chunk = np.concatenate([chunk, self._silence[: n - len(chunk)]])
                payload = self.codec.encode(chunk)
            self._play_pos = pos + n
            if self._play_pos >= len(self._play):
                done = self._play_done
                self._play, self._play_pos, self._play_done = self._silence[:0], 0, None
                self._play_enc = None
                if not done.done():
                    done.set_result(True)
        else:
            payload = self._silence_enc or self.codec.encode(self._silence)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + self._frame) & 0xFFFFFFFF
        if self._on_hold:
            self.stats.withheld += 1
            return  # keep the clock running, send nothing: the peer said it won't listen
        second = media.payload_type
        if self._marker:
            second |= 0x80
            self._marker = False
        remote = self._remote
        host = self._packed_remote()
        if self.srtp is None and host:  # header and send in C (_fastpath.c)
            error = send_rtp(self._fileno, host, remote[1], second, self._seq, self._ts,
                             self._ssrc, payload)
            if error:
                if error in (errno.EAGAIN, errno.EWOULDBLOCK):
                    # the socket buffer is full: a late frame is a useless one
                    self.stats.extra["send_dropped"] = (
                        self.stats.extra.get("send_dropped", 0) + 1)
                    return
                raise OSError(error, os.strerror(error))
        else:
            packet = HEADER.pack(0x80, second, self._seq, self._ts, self._ssrc) + payload
            if self.srtp is not None:
                packet = self.srtp.protect(packet)
            try:
                self._sock.sendto(packet, remote)
            except BlockingIOError:  # the socket buffer is full: a late frame is useless
                self.stats.extra["send_dropped"] = self.stats.extra.get("send_dropped", 0) + 1
                return
        self.stats.sent += 1
        rtcp = self.rtcp
        if rtcp is not None:  # RtcpState.on_sent, without a call per frame
            rtcp.packets_sent += 1
            rtcp.octets_sent += len(payload)

    # ---- receiving --------------------------------------------------------------------
    def _read(self, limit: int = 2 * READ_EVERY) -> None:
        """Handle what arrived since the last read: READ_EVERY packets normally; a backlog
        after a stall drains at up to ``limit`` per read, so no tick grows long enough to
        delay the next one's sends (the kernel buffer holds a few seconds meanwhile).

        Each ``read_run`` (C, ``_fastpath.c``) reads up to READ_BATCH datagrams with one
        recvmmsg and handles their leading run of usual packets (plain RTP of the call's audio
        codec from the latched host and source, each the next in sequence with no gap): the
        payloads joined, the reorder buffer's expectation and RTCP's sequence and jitter
        accounting advanced. Everything after the run (SRTP, DTMF events, another source or
        codec, reordering, gaps) goes through ``datagram_received`` in arrival order."""
        if not self._open or self.failed is not None:
            return
        # Packets read in a batch arrived at different times: the kernel's receive time
        # (SO_TIMESTAMPNS, wall clock) is moved onto the loop's clock for RTCP jitter.
        loop_now = self._loop.time()
        to_loop = loop_now - time.time()
        batch: list[bytes | int] = []
        self._batch = batch
        try:
            while limit > 0 and self._open and self.failed is None:
                want = min(limit, READ_BATCH)
                read = self._read_batch(want, batch, to_loop, loop_now)
                if read < want:
                    break  # the socket is empty (or failed)
                limit -= read
        finally:
            self._arrival = None
            self._batch = None
        if batch and self.failed is None:
            self._emit_audio(batch)

    def _packed_remote(self) -> bytes:
        """The remote host packed for ``_fastpath.c``, worked out again only when ``_remote``
        is set anew (latching, a re-INVITE); b"" sends and reads by the Python path."""
        remote = self._remote
        if remote is not self._packed_for:
            self._packed_for, self._remote_packed = remote, _packed_host(remote)
        return self._remote_packed

    def _read_batch(self, want: int, batch: list[bytes | int], to_loop: float,
                    loop_now: float) -> int:
        """One ``read_run`` of up to ``want`` datagrams; returns how many it read."""
        media, rtcp, reorder, ssrc = self.media, self.rtcp, self._reorder, self._audio_ssrc
        packed = self._packed_remote()
        expected = reorder.next_in_order
        if (self.fast_path and media is not None and self.srtp is None and self._latched
                and packed and ssrc is not None and expected is not None
                and (rtcp is None or rtcp.remote_ssrc == ssrc)):
            host, audio_pt, source = packed, media.payload_type, ssrc
            seq, ts = expected
        else:  # nothing is usual: every packet comes back for datagram_received
            host, audio_pt, source, seq, ts = b"", -1, -1, -1, 0
        state = rtcp.run_state() if rtcp is not None and audio_pt >= 0 else None
        payload, count, next_seq, next_ts, after, rest, read, error = read_run(
            self._fileno, want, host, audio_pt, source, seq, ts, state, to_loop, loop_now)
        if error:  # e.g. an ICMP error queued on the socket
            log.debug("RTP socket error: %s", os.strerror(error))
        if count:
            reorder.advance(count, next_seq, next_ts)
            if rtcp is not None and after is not None:
                rtcp.set_run_state(after, count)
            self.stats.received += count
            self._rx_seen = True
            batch.append(payload)
        for data, arrival, addr in rest:
            self._arrival = arrival
            self.datagram_received(data, addr)
            if not self._open or self.failed is not None:
                break
        return read

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
        if self.rtcp is not None:  # RFC 4733 events share the sequence space, not the timing
            self.rtcp.on_rtp(packet.ssrc, packet.sequence, packet.timestamp,
                             self._arrival if self._arrival is not None else self._loop.time(),
                             timing=packet.payload_type != media.dtmf_payload_type)
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
            self._deliver(self._reorder.flush())
            self._reorder = ReorderBuffer()
            self._audio_ssrc = packet.ssrc
        chunks = self._reorder.push(packet.sequence, packet.timestamp, packet.payload)
        if chunks and (self.audio_sink is not None or self.wide_sink is not None
                       or self.codec.wideband):  # G.722's decoder must see every packet
            self._deliver(chunks)

    def _deliver(self, chunks: list[bytes | int]) -> None:
        """Audio in order: collected while a batch is read (decoded together at its end),
        else handed over at once."""
        if self._batch is not None:
            self._batch.extend(chunks)
        else:
            self._emit_audio(chunks)

    # ---- RTCP -------------------------------------------------------------------------
    def _rtcp_destination(self) -> Address | None:
        if self._rtcp_remote is not None:
            return self._rtcp_remote  # where the caller's RTCP comes from (symmetric)
        if self._remote is None:
            return None
        return self._remote[0], self._remote[1] + 1

    def _send_rtcp(self) -> None:
        rtcp, sock, dest = self.rtcp, self._rtcp_sock, self._rtcp_destination()
        if rtcp is None or sock is None or dest is None or self.media is None or self._on_hold:
            return
        data = rtcp.build(self._ts, self._loop.time())
        try:
            if self.srtp is not None:
                data = self.srtp.protect_rtcp(data)
            sock.sendto(data, dest)
            self.stats.extra["rtcp_sent"] = self.stats.extra.get("rtcp_sent", 0) + 1
        except (OSError, SrtpError) as exc:
            log.debug("RTCP send failed: %s", exc)

    def _read_rtcp(self, now: float) -> None:
        rtcp, sock = self.rtcp, self._rtcp_sock
        if rtcp is None or sock is None:
            return
        for _ in range(8):
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:  # nothing waiting (BlockingIOError) or an ICMP error
                return
            if self._remote is not None and addr[0] != self._remote[0]:
                continue  # not the caller's host
            try:
                if self.srtp is not None:
                    data = self.srtp.unprotect_rtcp(data)
            except SrtpError:
                continue
            if rtcp.parse(data, now):
                self._rtcp_remote = (str(addr[0]), int(addr[1]))
                self.stats.extra["rtcp_received"] = (
                    self.stats.extra.get("rtcp_received", 0) + 1)

    def _emit_audio(self, chunks: list[bytes | int]) -> None:
        sink, wide, media = self.audio_sink, self.wide_sink, self.media
        codec = self.codec
        # G.722 is adaptive: its decoder must see every packet, listened to or not, or it
        # drifts from the caller's encoder and what is recorded later is noise.
        if (sink is None and wide is None and not codec.wideband) or media is None or not chunks:
            return
        if not codec.wideband and len(chunks) > 1:
            chunks = _joined(chunks)  # G.711 is stateless: one decode for the batch
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


def _packed_host(remote: Address | None) -> bytes:
    """The remote host as the kernel gives a source address (4 or 16 bytes); b"" for none,
    and for a link-local IPv6 address with a zone (``fe80::1%eth0``), whose scope the C path
    does not carry: Python's ``sendto`` and ``datagram_received`` handle those."""
    if remote is None or "%" in remote[0]:
        return b""
    host = remote[0]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, host)
        except OSError:
            continue
    return b""


def _joined(chunks: list[bytes | int]) -> list[bytes | int]:
    """Runs of payloads joined into one (gaps stay apart)."""
    out: list[bytes | int] = []
    run: list[bytes] = []
    for chunk in chunks:
        if isinstance(chunk, int):
            if run:
                out.append(b"".join(run))
                run = []
            out.append(chunk)
        else:
            run.append(chunk)
    if run:
        out.append(b"".join(run))
    return out


class RtpPortsExhausted(OSError):
    """Every port of the pool is taken: the call is refused (503), not answered silently."""


class PortPool:
    """Even RTP ports from a configured range, handed out round-robin (RFC 3550 §11). Each
    call binds an even port for RTP and the odd one above it for RTCP, so a range of N ports
    carries N/2 calls."""

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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in pool.candidates() if pool else [0] * 20:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        rtcp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            rtcp.setblocking(False)
            if sys.platform.startswith("linux"):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((host, port))
            rtp_port = sock.getsockname()[1]
            if rtp_port % 2:
                raise OSError(errno.EADDRINUSE, "odd port")  # port 0 chose an odd one
            rtcp.bind((host, rtp_port + 1))  # RTCP on the port above (RFC 3550 §11)
        except OSError as exc:
            sock.close()
            rtcp.close()
            if exc.errno != errno.EADDRINUSE:
                raise  # not a busy port: no other port will do better
            last = exc
            continue
        return RtpSession(loop, sock, measure, rtcp)
    if pool is None:
        raise RtpPortsExhausted(errno.EADDRINUSE, f"no free UDP port on {host}: {last}")
    raise RtpPortsExhausted(
        errno.EADDRINUSE, f"all {len(pool)} RTP ports of {pool.first}-{pool.last} on {host} "
        "are in use (one even port per call)")
