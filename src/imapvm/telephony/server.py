"""The SIP server: binds the UDP transport, drives the sans-I/O core, runs one handler per call.

Usage::

    async def handler(channel: Channel) -> None:
        await channel.answer()
        digit = await channel.play(prompt, interrupt_digits="#")

    async with SipServer(SipSettings(host="127.0.0.1", port=5060), handler) as server:
        await server.serve_forever()

The core's clock is the event loop's ``loop.time()``; one ``call_at`` timer tracks the core's
earliest deadline. A handler that returns (or raises) ends its call with BYE.

This is the asyncio boundary of the sans-I/O core: the only place that catches any exception
the core raises (a bug: logged with its traceback and counted as ``internal_errors``, the
``imapvm_sip_internal_errors_total`` metric), so one bad datagram or timer cannot stop the
server. ``SipStateError`` (a call or subscription that ended meanwhile) is expected and
handled where a race makes it possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType

from ..channel import ChannelHangup
from .channel import PromptLoader, SipChannel
from .message_summary import MessageSummary
from .mwi_sink import MwiLookup, MwiSink
from .routing import RoutingConfig, caller_id, resolve_target
from .rtp.rtcp import RtcpState
from .rtp.session import PortPool, RtpSession, open_rtp_session
from .sdp import SrtpPolicy
from .sip.core import CoreConfig, SipCore
from .sip.digest import AuthGuard, Credentials, DigestAuth
from .sip.errors import SipStateError
from .sip.events import (
    CallConfirmed,
    CallEnded,
    DtmfReceived,
    Event,
    IncomingCall,
    MediaUpdated,
    PublishResult,
    SubscriptionEnded,
    SubscriptionRefreshed,
    SubscriptionStarted,
    TransferProgress,
    TransferResult,
)
from .sip.kinds import SipTransport
from .sip.transaction import TimerConfig
from .transport import Address, TcpSipTransport, UdpSipTransport, open_udp
from .transport_tls import TlsSettings, TlsSipTransport

log = logging.getLogger(__name__)

CallHandler = Callable[[SipChannel], Awaitable[None]]


@dataclass(frozen=True)
class SipSettings:
    """Listening address, media ports and policy (mapped from imapvm.toml by the lead).

    ``advertised_host`` goes into Contact and SDP; it must be set when ``host`` is a wildcard.
    ``trusted_networks``: sources admitted without authentication; others must pass digest
    authentication (when the server has ``credentials``) or get 403. ("0.0.0.0/0", "::/0")
    admits everyone. ``auth_realm`` defaults to the advertised host.
    """

    host: str = "127.0.0.1"
    port: int = 5060
    advertised_host: str | None = None
    rtp_host: str | None = None
    rtp_ports: tuple[int, int] = (10000, 20000)
    codecs: tuple[str, ...] = ("G722", "PCMU", "PCMA")
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    timers: TimerConfig = field(default_factory=TimerConfig)
    user_agent: str = "imapvm"
    symmetric_signalling: bool = False
    measure_rtp: bool = False  # keep per-packet send timing (bench only)
    # message-summary: subscription expiry bounds, and phones told without subscribing
    # (mailbox -> SIP URIs with an IP address and port, e.g. "sip:1234@192.0.2.10:5060")
    mwi_min_expires: int = 60
    mwi_max_expires: int = 3600
    mwi_unsolicited: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tcp: bool = True  # also listen on TCP, same address and port as UDP
    # PUBLISH message-summary state to a presence server (e.g. Kamailio presence_mwi):
    # its URI (IP address and port) and the domain of the mailbox AORs published for.
    mwi_presence_server: str | None = None
    mwi_publish_domain: str | None = None
    mwi_publish_expires: int = 3600
    rate_limit: tuple[float, int] | None = (20.0, 40)  # new requests/s and burst per source IP
    trusted_rate_limit: tuple[float, int] | None = (500.0, 1000)  # the same for trusted sources
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")  # offered in this order
    rtp_timeout: float | None = 60.0  # hang up after this long without RTP (not on hold)
    auth_realm: str | None = None
    max_calls: int | None = None  # beyond this, new calls get 503 with Retry-After
    # SIP over TLS: the files, and where to listen (port 0: any free port)
    tls: TlsSettings | None = None
    tls_host: str | None = None  # default: ``host``
    tls_port: int = 5061
    srtp: SrtpPolicy = "optional"  # RTP/SAVP with SDES keys: "optional", "required", "off"
    session_expires: int = 1800  # RFC 4028: granted when the caller supports timers (0: none)
    min_se: int = 90  # shorter Session-Expires get 422
    sdes_in_clear: bool = False  # SDES over plain UDP/TCP (the keys would travel in clear)


class SipServer:
    def __init__(
        self,
        settings: SipSettings,
        handler: CallHandler,
        prompt_loader: PromptLoader | None = None,
        mwi_lookup: MwiLookup | None = None,
        credentials: Credentials | None = None,
        auth_guard: AuthGuard | None = None,
        on_internal_error: Callable[[], None] | None = None,
    ) -> None:
        """``mwi_lookup(mailbox)`` gives current counts for a new subscriber when
        ``publish_mwi`` has not told us yet (the MWI engine provides it).
        ``credentials(username)`` gives a subscriber's password for digest authentication of
        untrusted sources (e.g. the voicemail.conf password of that mailbox).
        ``on_internal_error()`` is called for every bug caught at the boundary (metrics)."""
        self.settings = settings
        self._credentials = credentials
        self._auth_guard = auth_guard
        self.mwi = MwiSink(settings, lambda: self.core, self._pump, self._now, mwi_lookup)
        self._handler = handler
        #: What the next call's channel plays prompts with; the composition root replaces it
        #: on reload (calls in progress keep the one they started with).
        self.prompt_loader = prompt_loader
        self._transport: UdpSipTransport | None = None
        self._tcp: TcpSipTransport | None = None
        self._tls: TlsSipTransport | None = None
        self._core: SipCore | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pool = PortPool(*settings.rtp_ports)
        self.channels: dict[str, SipChannel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._transfers: dict[str, asyncio.Future[int]] = {}
        self.internal_errors = 0
        #: Told each ended call's RTCP view (loss, jitter, the caller's reports): metrics.
        self.on_media_summary: Callable[[RtcpState], None] | None = None
        self._on_internal_error = on_internal_error

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        advertised = s.advertised_host or s.host
        if ipaddress.ip_address(advertised).is_unspecified:
            raise ValueError("listening on a wildcard address needs advertised_host")
        for attempt in range(20):
            self._transport = await open_udp(s.host, s.port, self._on_datagram)
            host, port = self._transport.local_address
            if not s.tcp:
                break
            self._tcp = TcpSipTransport(self._on_tcp_message)
            try:
                await self._tcp.start(s.host, port)
                break
            except OSError:
                # With port 0 the OS chose a UDP port whose TCP twin is taken: try another.
                self._transport.close()
                if s.port != 0 or attempt == 19:
                    raise
        tls_port = None
        if s.tls is not None:
            self._tls = TlsSipTransport(self._on_tcp_message, s.tls)
            await self._tls.start(s.tls_host or s.host, s.tls_port)
            tls_port = self._tls.local_address[1]
        trusted = tuple(ipaddress.ip_network(n) for n in s.trusted_networks)
        auth = None
        if self._credentials is not None:
            auth = DigestAuth(s.auth_realm or advertised, self._credentials,
                              guard=self._auth_guard, algorithms=s.digest_algorithms)
        self._core = SipCore(CoreConfig(
            local_host=advertised, local_port=port, tls_port=tls_port,
            user_agent=s.user_agent, codecs=s.codecs, srtp=s.srtp,
            sdes_in_clear=s.sdes_in_clear, session_expires=s.session_expires,
            min_se=s.min_se,
            timers=s.timers, trusted=trusted, symmetric_signalling=s.symmetric_signalling,
            min_expires=s.mwi_min_expires, max_expires=s.mwi_max_expires,
            rate_limit=s.rate_limit, trusted_rate_limit=s.trusted_rate_limit, auth=auth,
        ))
        await self.mwi.resolve_targets()
        log.info("SIP listening on %s:%d (UDP%s)", host, port, ", TCP" if s.tcp else "")
        if self._tls is not None:
            log.info("SIP over TLS listening on %s:%d", *self._tls.local_address)

    @property
    def tls_address(self) -> Address | None:
        return None if self._tls is None else self._tls.local_address

    def reload_tls(self) -> bool:
        """Re-read the TLS certificate, key and CA (SIGHUP); False (and logged) when the new
        files are unusable, in which case the old certificate stays in use."""
        if self._tls is None:
            return False
        try:
            self._tls.reload()
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate reload failed, keeping the old one: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s", self._tls.settings.certificate)
        return True

    @property
    def address(self) -> Address:
        assert self._transport is not None
        return self._transport.local_address

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        if self._core is not None:
            self.core.end_subscriptions(self._now())
            self._pump()
        for channel in list(self.channels.values()):
            self.hangup_call(channel)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for task in self._tasks:
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self.mwi.close()
        if self._transport is not None:
            self._transport.close()
        if self._tcp is not None:
            await self._tcp.close()
        if self._tls is not None:
            await self._tls.close()
        self._closed.set()

    async def __aenter__(self) -> SipServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- core driving -----------------------------------------------------------------
    @property
    def core(self) -> SipCore:
        assert self._core is not None
        return self._core

    def set_draining(self, draining: bool) -> None:
        """Answer OPTIONS probes and new calls with 480 (True) or normally again (False)."""
        if self._core is not None:
            self._core.draining = draining

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        """Where the core's bugs stop: logged with the traceback, counted, then the output
        the core produced so far is still sent and the timer re-armed."""
        try:
            yield
        except Exception:
            self.internal_errors += 1
            if self._on_internal_error is not None:
                self._on_internal_error()
            log.exception("SIP core failed on %s", what)
        self._pump()

    def _on_datagram(self, data: bytes, source: Address) -> None:
        with self._boundary(f"a datagram from {source}"):
            self.core.receive(data, source, self._now())

    def _on_tcp_message(self, data: bytes, source: Address, transport: SipTransport) -> None:
        with self._boundary(f"a message from {source}"):
            self.core.receive(data, source, self._now(), transport)

    def _on_timer(self) -> None:
        due = self._timer_at or 0.0
        self._timer = self._timer_at = None
        with self._boundary("its timers"):
            # call_at may fire a hair early; never hand the core a time before its deadline.
            self.core.handle_timer(max(self._now(), due))

    def _pump(self) -> None:
        """Send what the core produced, dispatch its events, re-arm the timer."""
        core = self.core
        while True:
            for send in core.take_outgoing():
                if send.transport == "TCP" and self._tcp is not None:
                    self._tcp.send(send.data, send.address)
                elif send.transport == "TLS":
                    if self._tls is not None:
                        self._tls.send(send.data, send.address)
                elif self._transport is not None:
                    self._transport.send(send.data, send.address)
            events = core.take_events()
            if not events:
                break
            for event in events:
                self._dispatch(event)
        deadline = core.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = (
                None if deadline is None
                else asyncio.get_running_loop().call_at(deadline, self._on_timer)
            )

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, IncomingCall):
            self._incoming(event)
            return
        if isinstance(event, SubscriptionStarted | SubscriptionRefreshed):
            self._spawn(self.mwi.subscribed(event.handle))
            return
        if isinstance(event, SubscriptionEnded):
            self.mwi.forget(event.handle)
            log.info("subscription %s ended: %s", event.handle, event.reason)
            return
        if isinstance(event, TransferResult):
            waiter = self._transfers.pop(event.handle, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.status)
            return
        if isinstance(event, TransferProgress):
            log.info("call %s: transfer progress %d", event.handle, event.status)
            return
        if isinstance(event, PublishResult):
            self.mwi.on_publish_result(event)
            return
        channel = self.channels.get(event.handle)
        if channel is None:
            return
        if isinstance(event, CallConfirmed):
            channel.confirmed.set()
        elif isinstance(event, MediaUpdated):
            channel.on_media(event.media)
        elif isinstance(event, DtmfReceived):
            channel.on_digit(event.digit, event.duration_ms)
        elif isinstance(event, CallEnded):
            log.info("call %s ended: %s", event.handle, event.reason)
            self.channels.pop(event.handle, None)
            channel.on_ended(event.reason)
            rtcp = channel.rtp.rtcp if channel.rtp is not None else None
            if rtcp is not None and (rtcp.expected or rtcp.peer.reports):
                log.info("call %s media: %s", event.handle, rtcp.summary())
                if self.on_media_summary is not None:
                    self.on_media_summary(rtcp)
            forged = channel.rtp.stats.extra.get("srtp_auth_failures", 0) if channel.rtp else 0
            if forged:  # forged, replayed or garbled SRTP: dropped, never played
                log.warning("call %s SRTP: %d packets failed authentication and were dropped",
                            event.handle, forged)

    def _incoming(self, event: IncomingCall) -> None:
        limit = self.settings.max_calls
        if limit is not None and len(self.channels) >= limit:
            log.warning("call limit %d reached: 503 to %s", limit, event.source)
            self.core.reject(event.handle, 503, self._now())
            return
        target = resolve_target(event.request, self.settings.routing,
                                trusted=self._trusted(event.source))
        caller = dataclasses.replace(caller_id(event.request), address=event.source[0])
        channel = SipChannel(event.handle, event.request, caller, target,
                             event.media, self, self.prompt_loader)
        self.channels[event.handle] = channel
        log.info("call %s from %s for %s", event.handle, channel.caller.number, target)
        self._spawn(self._run(channel))

    def _trusted(self, source: Address) -> bool:
        """The source is in ``trusted_networks`` (the PBX), not merely authenticated."""
        try:
            ip = ipaddress.ip_address(source[0].split("%")[0])
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(n) for n in self.settings.trusted_networks)

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, int]:
        """Counters for metrics: calls, subscriptions, SIP events and RTP packet totals."""
        out = {"active_calls": len(self.channels),
               "subscriptions": len(self.core.subscriptions)}
        out.update({f"sip_{k}": v for k, v in self.core.stats.items()})
        out["sip_internal_errors"] = self.internal_errors
        rtp = [c.rtp for c in self.channels.values() if c.rtp is not None]
        out["rtp_packets_sent"] = sum(r.stats.sent for r in rtp)
        out["rtp_packets_received"] = sum(r.stats.received for r in rtp)
        out["rtp_packets_lost"] = sum(r.reorder_stats["lost"] for r in rtp)
        return out

    def publish_mwi(self, mailbox: str, summary: MessageSummary, *, presence: bool = True
                    ) -> int:
        """Tell every subscriber of ``mailbox``, configured phones and (with ``presence``) the
        presence server; returns the number of NOTIFY/PUBLISH requests sent."""
        return self.mwi.publish(mailbox, summary, presence=presence)

    def republish_mwi(self, mailbox: str, summary: MessageSummary) -> int:
        """PUBLISH ``mailbox``'s state to the presence server again (only there)."""
        return self.mwi.republish(mailbox, summary)

    def withdraw_mwi(self, mailbox: str) -> bool:
        """Stop publishing ``mailbox`` to the presence server (another node does now)."""
        return self.mwi.withdraw(mailbox)

    async def _run(self, channel: SipChannel) -> None:
        try:
            await self._handler(channel)
        except ChannelHangup:
            pass
        except Exception:
            log.exception("call handler failed for call %s", channel.handle)
        finally:
            if not channel.hung_up:
                self.hangup_call(channel)

    # ---- CallControl for the channels ---------------------------------------------------
    async def answer_call(self, channel: SipChannel) -> RtpSession:
        s = self.settings
        try:
            rtp = await open_rtp_session(s.rtp_host or s.host, self._pool, s.measure_rtp)
        except OSError as exc:
            # No media, no call: say so once and answer 503 (Retry-After), so the PBX tries
            # another node or later, instead of a traceback and a call left ringing.
            log.warning("call %s refused with 503: %s", channel.handle, exc.strerror or exc)
            with contextlib.suppress(SipStateError):  # the caller may have given up meanwhile
                self.core.reject(channel.handle, 503, self._now())
            self._pump()
            raise ChannelHangup("no RTP port") from None
        advertised = s.advertised_host or s.host
        try:
            if channel.hung_up:
                raise SipStateError("hung up")
            self.core.answer(channel.handle, (advertised, rtp.local_address[1]), self._now())
        except SipStateError:  # the caller gave up (CANCEL) while the RTP port opened
            rtp.close()
            raise ChannelHangup(channel.hangup_reason or "gone before answer") from None
        channel.rtp = rtp
        rtp.inactivity_timeout = s.rtp_timeout
        rtp.on_inactive = lambda: self._rtp_timed_out(channel)
        rtp.on_failure = lambda exc: self._media_failed(channel, exc)
        if channel.media is not None:
            rtp.set_media(channel.media)
        self._pump()
        return rtp

    def reject_call(self, channel: SipChannel, status: int) -> bool:
        """A final non-2xx (404 for a mailbox that does not exist) before answering."""
        try:
            self.core.reject(channel.handle, status, self._now())
        except SipStateError:
            return False  # answered already, or gone
        self._pump()
        return True

    def _media_failed(self, channel: SipChannel, exc: BaseException) -> None:
        """The RTP loop failed: end the call (the flow keeps what was recorded so far)."""
        log.error("call %s: media failed (%s), hanging up", channel.handle,
                  type(exc).__name__)
        self.hangup_call(channel)

    def _rtp_timed_out(self, channel: SipChannel) -> None:
        log.info("call %s: no RTP for %s s, hanging up", channel.handle, self.settings.rtp_timeout)
        self.hangup_call(channel)

    def hangup_call(self, channel: SipChannel) -> None:
        try:
            self.core.hangup(channel.handle, self._now())
        except SipStateError as exc:  # the phone hung up first, or our hang-up is under way
            log.debug("call %s: %s", channel.handle, exc)
        self._pump()

    async def refer_call(self, channel: SipChannel, target: str) -> bool:
        """REFER the caller to ``target``; True when the phone accepted (2xx) to call it."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._transfers[channel.handle] = waiter
        try:
            self.core.refer(channel.handle, target, self._now())
        except SipStateError:
            self._transfers.pop(channel.handle, None)
            return False
        self._pump()
        status = await waiter
        return 200 <= status < 300

    def redirect_call(self, channel: SipChannel, target: str) -> bool:
        try:
            self.core.redirect(channel.handle, target, self._now())
        except SipStateError:
            return False
        self._pump()
        return True
