"""The sans-I/O SIP user agent server: requests in, responses, events and deadlines out.

Drive it with ``receive(data, source, now)`` for every datagram, ``handle_timer(now)`` when
``next_deadline()`` passes, and the call-control methods (``ring``, ``answer``, ``reject``,
``hangup``). Collect ``take_outgoing()`` datagrams and ``take_events()`` after each call.
Nothing here raises because of what a peer sent: bad input becomes a 4xx or is dropped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from ..sdp import (
    NegotiatedMedia,
    SdpError,
    SessionDescription,
    build_answer,
    build_offer,
    parse_sdp,
)
from ..sdp import negotiate as negotiate_sdp
from .digest import DigestAuth
from .errors import SipParseError
from .events import (
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
from .message import (
    DEFAULT_LIMITS,
    Headers,
    Limits,
    SipRequest,
    SipResponse,
    parse_message,
    request_uri_error,
)
from .ratelimit import RateLimiter
from .transaction import (
    Address,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    ServerTransaction,
    State,
    TimerConfig,
)
from .uri import NameAddr, format_host, is_ip_literal, parse_name_addr, parse_uri, parse_via

log = logging.getLogger(__name__)

REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 302: "Moved Temporarily",
    202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 423: "Interval Too Brief",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
    513: "Message Too Large", 603: "Decline",
}  # fmt: skip

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, SUBSCRIBE, NOTIFY"
MWI_EVENT = "message-summary"
MWI_CONTENT_TYPE = "application/simple-message-summary"
SUPPORTED_EXTENSIONS = frozenset({"timer"})
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REGISTER", "SUBSCRIBE",
     "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "PRACK"}
)  # fmt: skip
DTMF_EVENT_DIGITS = "0123456789*#ABCD"
MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True)
class CoreConfig:
    """What the core needs to know about itself.

    ``trusted``: None admits every source; otherwise sources outside these networks must pass
    digest authentication (``auth``) or get 403.
    """

    local_host: str
    local_port: int
    user_agent: str = "imapvm"
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    timers: TimerConfig = field(default_factory=TimerConfig)
    limits: Limits = DEFAULT_LIMITS
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    auth: DigestAuth | None = None  # digest for untrusted sources; None: they get 403
    symmetric_signalling: bool = False  # send in-dialog requests to the INVITE's source
    rate_limit: tuple[float, int] | None = None  # (requests/s, burst) per source address
    min_expires: int = 60  # message-summary subscriptions: shortest accepted
    max_expires: int = 3600  # and longest granted


class CallState(Enum):
    EARLY = "early"  # INVITE received, no final response yet
    ANSWERED = "answered"  # 2xx sent, waiting for ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass
class Call:
    """One dialog created by an INVITE we received (we are always the UAS)."""

    handle: str
    invite: SipRequest
    invite_tx: InviteServerTransaction
    source: Address
    local_tag: str
    remote_tag: str
    remote_target: str
    route_set: list[str]
    offer: SessionDescription | None
    accepted_index: int
    media: NegotiatedMedia | None
    state: CallState = CallState.EARLY
    remote_cseq: int = 0
    local_cseq: int = 0
    sdp_session_id: int = 0
    sdp_version: int = 0
    local_rtp: Address | None = None
    # 2xx retransmission (RFC 3261 §13.3.1.4), for the initial INVITE or a re-INVITE
    ok_data: bytes | None = None
    ok_cseq: int = 0
    ok_next: float = 0.0
    ok_interval: float = 0.0
    ok_give_up: float = 0.0
    pending_reinvite: InviteServerTransaction | None = None
    bye_pending: bool = False  # we hung up before the ACK: BYE once it comes (§15)

    @property
    def dialog_key(self) -> tuple[str, str, str]:
        return (self.invite.call_id, self.local_tag, self.remote_tag)


@dataclass
class Subscription:
    """A message-summary subscription dialog (RFC 6665); we are the notifier."""

    handle: str
    request: SipRequest  # the initial SUBSCRIBE
    source: Address
    local_tag: str
    remote_tag: str
    remote_target: str
    route_set: list[str]
    mailbox: str | None
    account: str
    expires_at: float
    remote_cseq: int = 0
    local_cseq: int = 0
    terminated: bool = False
    transport: str = "UDP"

    @property
    def dialog_key(self) -> tuple[str, str, str]:
        return (self.request.call_id, self.local_tag, self.remote_tag)


@dataclass
class _Pending:
    outgoing: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def _new_tag() -> str:
    return secrets.token_hex(6)


class SipCore:
    """UAS core: transactions, dialogs, INVITE/re-INVITE/CANCEL/BYE/OPTIONS/INFO/UPDATE."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self._server_txs: dict[tuple[str, ...], ServerTransaction] = {}
        self._client_txs: dict[tuple[str, ...], NonInviteClientTransaction] = {}
        self._calls: dict[str, Call] = {}
        self._dialogs: dict[tuple[str, str, str], Call] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._sub_dialogs: dict[tuple[str, str, str], Subscription] = {}
        self._tx_owner: dict[tuple[str, ...], str] = {}  # NOTIFY transaction -> subscription
        self._refers: dict[tuple[str, ...], str] = {}  # REFER transaction -> call
        self._publishes: dict[tuple[str, ...], str] = {}  # PUBLISH transaction -> AOR
        self._out = _Pending()
        # Operational counters: retransmissions sent and absorbed, input dropped or refused.
        self.stats: Counter[str] = Counter()
        self._limiter = RateLimiter(*config.rate_limit) if config.rate_limit else None

    # ---- driver interface -------------------------------------------------------------
    def receive(self, data: bytes, source: Address, now: float, transport: str = "UDP") -> None:
        """Feed one datagram (or one framed TCP message). Never raises because of its content.

        ``transport`` is "UDP" or "TCP"; over TCP, ``source`` names the connection that
        responses and in-dialog requests go back on.
        """
        try:
            self._receive(data, source, now, transport)
        except Exception:  # a bug must not take the server down with it
            log.exception("SIP core failed on a datagram from %s", source)

    def take_outgoing(self) -> list[Send]:
        out, self._out.outgoing = self._out.outgoing, []
        return out

    def take_events(self) -> list[Event]:
        events, self._out.events = self._out.events, []
        return events

    def next_deadline(self) -> float | None:
        deadlines = [d for tx in self._server_txs.values() if (d := tx.deadline()) is not None]
        deadlines += [d for tx in self._client_txs.values() if (d := tx.deadline()) is not None]
        deadlines += [min(c.ok_next, c.ok_give_up) for c in self._calls.values() if c.ok_data]
        deadlines += [s.expires_at for s in self._subscriptions.values()]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Fire every deadline up to ``now``. Never raises."""
        try:
            self._handle_timer(now)
        except Exception:
            log.exception("SIP core failed in its timers")

    def _handle_timer(self, now: float) -> None:
        for key, stx in list(self._server_txs.items()):
            d = stx.deadline()
            if d is not None and now >= d:
                self._out.outgoing += stx.on_timer(now)
            if stx.state == State.TERMINATED:
                del self._server_txs[key]
                if isinstance(stx, InviteServerTransaction) and stx.timed_out:
                    self._invite_tx_timed_out(stx)
        for key, ctx in list(self._client_txs.items()):
            d = ctx.deadline()
            if d is not None and now >= d:
                self._out.outgoing += ctx.on_timer(now)
            if ctx.state == State.TERMINATED:
                del self._client_txs[key]
                owner = self._tx_owner.pop(key, None)
                if owner and ctx.timed_out:
                    self._drop_subscription(owner, "notify-timeout")
                referred = self._refers.pop(key, None)
                if referred and ctx.timed_out:
                    self._out.events.append(TransferResult(referred, 408))
                published = self._publishes.pop(key, None)
                if published and ctx.timed_out:
                    self._out.events.append(PublishResult(published, 408, None, 0))
        for sub in list(self._subscriptions.values()):
            if now >= sub.expires_at:
                self._terminate_subscription(sub, now, "timeout")
        for call in list(self._calls.values()):
            if call.ok_data is None:
                continue
            if now >= call.ok_give_up:
                call.ok_data = None
                log.info("no ACK for call %s: ending it with BYE", call.handle)
                self._send_bye(call, now,
                               reason="local-bye" if call.bye_pending else "ack-timeout")
            elif now >= call.ok_next:
                self.stats["retransmitted_2xx"] += 1
                self._out.outgoing.append(
                    Send(call.ok_data, call.invite_tx.address, call.invite_tx.transport)
                )
                call.ok_interval = min(2 * call.ok_interval, self.config.timers.t2)
                call.ok_next = now + call.ok_interval

    @property
    def calls(self) -> dict[str, Call]:
        return self._calls

    # ---- call control -----------------------------------------------------------------
    def ring(self, handle: str, now: float) -> None:
        call = self._calls.get(handle)
        if call and call.state == CallState.EARLY:
            self._respond_tx(call.invite_tx, call.invite, 180, now, to_tag=call.local_tag,
                             contact=True)

    def answer(self, handle: str, rtp: Address, now: float) -> bool:
        """Send 200 with our SDP (``rtp`` is the local media address). False if too late."""
        call = self._calls.get(handle)
        if call is None or call.state != CallState.EARLY:
            return False
        call.local_rtp = rtp
        call.sdp_session_id = secrets.randbelow(2**31)
        body = self._local_sdp(call)
        extra = self._session_timer_headers(call.invite)
        data = self._respond_tx(call.invite_tx, call.invite, 200, now, to_tag=call.local_tag,
                                contact=True, body=body, extra=extra)
        call.state = CallState.ANSWERED
        self._start_ok_retransmission(call, data, call.invite.cseq[0], now)
        return True

    def reject(self, handle: str, status: int, now: float) -> None:
        """Final non-2xx to an unanswered INVITE (486 busy, 480 unavailable, 603 ...)."""
        call = self._calls.get(handle)
        if call is None or call.state != CallState.EARLY:
            return
        extra = [("Retry-After", "5")] if status == 503 else []
        self._respond_tx(call.invite_tx, call.invite, status, now, to_tag=call.local_tag,
                         extra=extra)
        self._end(call, "rejected")

    def redirect(self, handle: str, target: str, now: float) -> bool:
        """302 to an unanswered INVITE: the cheapest transfer, done by the caller's side."""
        call = self._calls.get(handle)
        if call is None or call.state != CallState.EARLY:
            return False
        self._respond_tx(call.invite_tx, call.invite, 302, now, to_tag=call.local_tag,
                         extra=[("Contact", f"<{target}>")])
        self._end(call, "redirected")
        return True

    def hangup(self, handle: str, now: float) -> None:
        """End the call from our side: BYE once answered, 480 while still ringing."""
        call = self._calls.get(handle)
        if call is None or call.state == CallState.ENDED:
            return
        if call.state == CallState.EARLY:
            self.reject(handle, 480, now)
            return
        if call.state == CallState.ANSWERED and call.ok_data is not None:
            call.bye_pending = True  # a BYE must not overtake the ACK (RFC 3261 §15)
            return
        call.ok_data = None
        self._send_bye(call, now, reason="local-bye")

    # ---- receiving --------------------------------------------------------------------
    def _receive(self, data: bytes, source: Address, now: float, transport: str) -> None:
        try:
            msg = parse_message(data, self.config.limits)
        except SipParseError as exc:
            self.stats["bad_messages"] += 1
            if isinstance(exc.partial, SipRequest) and exc.partial.method != "ACK":
                log.info("answering %d to bad request from %s: %s", exc.status, source, exc)
                self._respond_stateless(exc.partial, source, exc.status, str(exc)[:60],
                                        transport)
            else:
                log.info("dropping unparsable datagram from %s: %s", source, exc)
            return
        if msg is None:
            return
        if isinstance(msg, SipResponse):
            self._on_response(msg, now)
            return
        if msg.method != "ACK":
            problem = request_uri_error(msg)
            if problem is not None:
                self._respond_stateless(msg, source, problem.status, None, transport)
                return
        if not self._trusted(source) and not self._authenticated(msg, source, now, transport):
            return
        if self.config.trusted is None and not self._within_rate(msg, source, now):
            return  # dropped, not answered: answering a flood only feeds it
        self._on_request(msg, source, now, transport)

    def _authenticated(
        self, msg: SipRequest, source: Address, now: float, transport: str
    ) -> bool:
        """Admit an untrusted source's request, or answer 401/403 and return False.

        Requests inside an existing dialog or transaction were admitted when it was created;
        ACK and CANCEL cannot be challenged (RFC 3261 §22.1).
        """
        auth = self.config.auth
        if msg.method in ("ACK", "CANCEL") and auth is not None:
            return True
        if auth is not None and (
            msg.to_addr.tag or self._server_txs.get(self._tx_key(msg, msg.method)) is not None
        ):
            return True
        if msg.method == "ACK" or not self._within_rate(msg, source, now):
            return False
        if auth is None:
            self._respond_stateless(msg, source, 403, None, transport)
            return False
        verdict, username = auth.verify(msg.headers.get("Authorization"), msg.method,
                                        source[0], now)
        if verdict == "ok":
            target = parse_uri(msg.uri).user
            if msg.method == "SUBSCRIBE" and target != username:
                self._respond_stateless(msg, source, 403, "Not your mailbox", transport)
                return False
            return True
        challenge = auth.challenge(source[0], now, stale=verdict == "stale")
        self._respond_stateless(msg, source, 401, "Unauthorized", transport,
                                extra=[("WWW-Authenticate", challenge)])
        return False

    def _within_rate(self, msg: SipRequest, source: Address, now: float) -> bool:
        """Per-source limit on new requests. Sources in an explicit trusted list (the PBX)
        are never limited; everyone else is, including the 403s we answer them with."""
        if (
            self._limiter is None
            or msg.method in ("ACK", "CANCEL")
            or msg.to_addr.tag
            or self._server_txs.get(self._tx_key(msg, msg.method)) is not None
            or self._limiter.allow(source[0], now)
        ):
            return True
        self.stats["rate_limited"] += 1
        return False

    def _trusted(self, source: Address) -> bool:
        if self.config.trusted is None:
            return True
        try:
            ip = ipaddress.ip_address(source[0].split("%")[0])
        except ValueError:
            return False
        return any(ip in net for net in self.config.trusted)

    def _tx_key(self, req: SipRequest, method: str) -> tuple[str, ...]:
        via = req.vias[0]
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE):
            return (branch, via.sent_by, method)
        # RFC 2543 peers: no usable branch, fall back to the request's identity (§17.2.3).
        return (req.call_id, str(req.cseq[0]), req.from_addr.tag or "", via.sent_by, method)

    def _on_request(self, req: SipRequest, source: Address, now: float, transport: str) -> None:
        method = req.method
        if method == "ACK":
            self._on_ack(req, now)
            return
        key = self._tx_key(req, method)
        existing = self._server_txs.get(key)
        if existing is not None:
            self.stats["absorbed_retransmissions"] += 1
            self._out.outgoing += existing.on_request_retransmission()
            return
        if method == "CANCEL":
            self._on_cancel(req, source, now, transport)
            return
        address = self._response_address(req, source, transport)
        tx: ServerTransaction
        if method == "INVITE":
            tx = InviteServerTransaction(key, self.config.timers, State.PROCEEDING, address,
                                         transport=transport)
        else:
            tx = NonInviteServerTransaction(key, self.config.timers, State.TRYING, address,
                                            transport=transport)
        self._server_txs[key] = tx
        unsupported = [
            opt for opt in req.headers.get_all("Require") if opt.lower() not in SUPPORTED_EXTENSIONS
        ]
        if unsupported:
            self._respond_tx(tx, req, 420, now, extra=[("Unsupported", ", ".join(unsupported))])
            return
        if req.to_addr.tag and method == "SUBSCRIBE":
            self._refresh_subscribe(req, tx, now)
        elif req.to_addr.tag:
            self._in_dialog(req, tx, source, now)
        elif method == "INVITE":
            assert isinstance(tx, InviteServerTransaction)
            self._new_invite(req, tx, source, now)
        elif method == "OPTIONS":
            self._respond_tx(tx, req, 200, now, extra=self._capabilities())
        elif method == "SUBSCRIBE":
            self._new_subscribe(req, tx, source, now)
        elif method in ("BYE", "INFO", "UPDATE", "NOTIFY", "PRACK"):
            self._respond_tx(tx, req, 481, now)
        elif method in KNOWN_METHODS:
            self._respond_tx(tx, req, 405, now, extra=[("Allow", ALLOW)])
        else:
            self._respond_tx(tx, req, 501, now, extra=[("Allow", ALLOW)])

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", "application/sdp, application/dtmf-relay, "
                "application/dtmf"), ("Supported", "timer"), ("Allow-Events", MWI_EVENT)]

    def _new_invite(
        self, req: SipRequest, tx: InviteServerTransaction, source: Address, now: float
    ) -> None:
        self._respond_tx(tx, req, 100, now)
        contacts = req.headers.get_all("Contact")
        try:
            remote_target = str(parse_name_addr(contacts[0]).uri) if contacts else ""
        except SipParseError:
            remote_target = ""
        if not remote_target:
            self._respond_tx(tx, req, 400, now, reason="Missing or bad Contact")
            return
        offer: SessionDescription | None = None
        accepted: tuple[int, NegotiatedMedia] | None = None
        if req.body:
            if req.content_type != "application/sdp":
                self._respond_tx(tx, req, 415, now, extra=[("Accept", "application/sdp")])
                return
            try:
                offer = parse_sdp(req.body)
            except SdpError:
                self._respond_tx(tx, req, 400, now, reason="Bad SDP")
                return
            accepted = negotiate_sdp(offer, self.config.codecs)
            if accepted is None:
                self._respond_tx(tx, req, 488, now)
                return
        local_tag = _new_tag()
        call = Call(
            handle=f"{local_tag}",
            invite=req,
            invite_tx=tx,
            source=source,
            local_tag=local_tag,
            remote_tag=req.from_addr.tag or "",
            remote_target=remote_target,
            route_set=req.headers.get_all("Record-Route"),
            offer=offer,
            accepted_index=accepted[0] if accepted else 0,
            media=accepted[1] if accepted else None,
            remote_cseq=req.cseq[0],
        )
        self._calls[call.handle] = call
        self._dialogs[call.dialog_key] = call
        self._out.events.append(IncomingCall(call.handle, req, source, call.media))

    def _find_dialog(self, req: SipRequest) -> Call | None:
        key = (req.call_id, req.to_addr.tag or "", req.from_addr.tag or "")
        return self._dialogs.get(key)

    def _in_dialog(
        self, req: SipRequest, tx: ServerTransaction, source: Address, now: float
    ) -> None:
        call = self._find_dialog(req)
        if call is None or call.state == CallState.ENDED:
            self._respond_tx(tx, req, 481, now)
            return
        number = req.cseq[0]
        if number < call.remote_cseq or (
            number == call.remote_cseq and req.method != "INVITE"
        ):
            self._respond_tx(tx, req, 500, now, reason="CSeq out of order")
            return
        call.remote_cseq = number
        method = req.method
        if method == "BYE":
            self._respond_tx(tx, req, 200, now)
            self._end(call, "remote-bye")
        elif method == "INVITE":
            assert isinstance(tx, InviteServerTransaction)
            self._reinvite(call, req, tx, now)
        elif method == "UPDATE":
            self._update(call, req, tx, now)
        elif method == "INFO":
            self._info(call, req, tx, now)
        elif method == "OPTIONS":
            self._respond_tx(tx, req, 200, now, extra=self._capabilities())
        elif method == "NOTIFY":
            self._refer_notify(call, req, tx, now)
        elif method in KNOWN_METHODS:
            self._respond_tx(tx, req, 405, now, extra=[("Allow", ALLOW)])
        else:
            self._respond_tx(tx, req, 501, now, extra=[("Allow", ALLOW)])

    def _refer_notify(self, call: Call, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        """NOTIFY for our REFER (RFC 3515): its message/sipfrag body is a status line."""
        if (req.headers.get("Event") or "").split(";")[0].strip().lower() != "refer":
            self._respond_tx(tx, req, 489, now)
            return
        self._respond_tx(tx, req, 200, now)
        parts = req.body.decode("utf-8", "replace").split(None, 2)
        if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit():
            self._out.events.append(TransferProgress(call.handle, int(parts[1])))

    def refer(self, handle: str, target: str, now: float) -> bool:
        """Ask the caller's phone to call ``target`` (REFER, RFC 3515); result as events."""
        call = self._calls.get(handle)
        if call is None or call.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            return False
        call.local_cseq += 1
        local: NameAddr = call.invite.to_addr
        key = self._send_in_dialog(
            "REFER", call.invite.call_id,
            str(local) if local.tag else f"{local};tag={call.local_tag}",
            call.invite.headers.get("From") or "", call.remote_target, call.route_set,
            call.source, call.local_cseq, now,
            extra=[("Refer-To", f"<{target}>"),
                   ("Referred-By", f"<{self._contact_uri()}>")],
            transport=call.invite_tx.transport,
        )
        self._refers[key] = handle
        return True

    def _refresh_target(self, call: Call, req: SipRequest) -> None:
        contacts = req.headers.get_all("Contact")
        if contacts:
            with contextlib.suppress(SipParseError):
                call.remote_target = str(parse_name_addr(contacts[0]).uri)

    def _apply_offer(self, call: Call, req: SipRequest) -> bytes | int:
        """Negotiate a new offer in ``req``: our answer body, or an error status."""
        if req.content_type != "application/sdp":
            return 415
        try:
            offer = parse_sdp(req.body)
        except SdpError:
            return 400
        accepted = negotiate_sdp(offer, self.config.codecs)
        if accepted is None:
            return 488
        call.offer, call.accepted_index, call.media = offer, accepted[0], accepted[1]
        self._out.events.append(MediaUpdated(call.handle, accepted[1]))
        return self._local_sdp(call)

    def _reinvite(
        self, call: Call, req: SipRequest, tx: InviteServerTransaction, now: float
    ) -> None:
        if call.state == CallState.EARLY or (
            call.pending_reinvite is not None and call.ok_data is not None
        ):
            self._respond_tx(tx, req, 491, now)
            return
        if call.local_rtp is None:
            self._respond_tx(tx, req, 500, now, extra=[("Retry-After", "1")])
            return
        self._refresh_target(call, req)
        if req.body:
            result = self._apply_offer(call, req)
            if isinstance(result, int):
                self._respond_tx(tx, req, result, now, to_tag=call.local_tag)
                return
            body = result
        else:
            body = self._local_sdp(call, offer=True)
        data = self._respond_tx(tx, req, 200, now, to_tag=call.local_tag, contact=True,
                                body=body, extra=self._session_timer_headers(req))
        call.pending_reinvite = tx
        self._start_ok_retransmission(call, data, req.cseq[0], now)

    def _update(self, call: Call, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        self._refresh_target(call, req)
        extra = self._session_timer_headers(req)
        if req.body and call.local_rtp is not None:
            result = self._apply_offer(call, req)
            if isinstance(result, int):
                self._respond_tx(tx, req, result, now)
                return
            self._respond_tx(tx, req, 200, now, contact=True, body=result, extra=extra)
        else:
            self._respond_tx(tx, req, 200, now, contact=True, extra=extra)

    def _info(self, call: Call, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        if not req.body:
            self._respond_tx(tx, req, 200, now)  # an empty INFO is a keep-alive probe
            return
        parsed = parse_dtmf_info(req.content_type, req.body)
        if parsed is None:
            self._respond_tx(tx, req, 415, now, extra=[
                ("Accept", "application/dtmf-relay, application/dtmf")])
            return
        self._respond_tx(tx, req, 200, now)
        self._out.events.append(DtmfReceived(call.handle, parsed[0], parsed[1]))

    def _on_ack(self, req: SipRequest, now: float) -> None:
        key = self._tx_key(req, "INVITE")
        tx = self._server_txs.get(key)
        if isinstance(tx, InviteServerTransaction) and tx.state in (
            State.COMPLETED, State.CONFIRMED
        ):
            tx.on_ack(now)  # ACK for a non-2xx final: the transaction absorbs it
            return
        call = self._find_dialog(req)
        if call is None or call.ok_data is None or req.cseq[0] != call.ok_cseq:
            return  # ACK retransmission or stray: nothing to do, never answered
        call.ok_data = None
        call.pending_reinvite = None
        if req.body and call.media is None and call.offer is None:
            self._late_answer(call, req)
        if call.state == CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            if call.bye_pending:
                self._send_bye(call, now, reason="local-bye")
                return
            self._out.events.append(CallConfirmed(call.handle))

    def _late_answer(self, call: Call, ack: SipRequest) -> None:
        try:
            answer = parse_sdp(ack.body)
        except SdpError:
            return
        accepted = negotiate_sdp(answer, self.config.codecs)
        if accepted is not None:
            call.media = accepted[1]
            call.accepted_index = accepted[0]
            self._out.events.append(MediaUpdated(call.handle, accepted[1]))

    def _on_cancel(self, req: SipRequest, source: Address, now: float, transport: str) -> None:
        key = self._tx_key(req, "CANCEL")
        tx = NonInviteServerTransaction(
            key, self.config.timers, State.TRYING,
            self._response_address(req, source, transport), transport=transport,
        )
        self._server_txs[key] = tx
        invite_tx = self._server_txs.get(self._tx_key(req, "INVITE"))
        if not isinstance(invite_tx, InviteServerTransaction):
            self._respond_tx(tx, req, 481, now)
            return
        self._respond_tx(tx, req, 200, now)
        call = next((c for c in self._calls.values() if c.invite_tx is invite_tx), None)
        if invite_tx.state == State.PROCEEDING:
            inv = call.invite if call else req
            tag = call.local_tag if call else _new_tag()
            # The 487 answers the INVITE, so it must carry the INVITE's CSeq method.
            self._respond_tx(invite_tx, inv if call else _as_invite(req), 487, now, to_tag=tag)
            if call:
                self._end(call, "cancelled")

    def _on_response(self, resp: SipResponse, now: float) -> None:
        try:
            via = resp.vias[0]
        except (SipParseError, IndexError):
            return
        key = (via.branch or "", resp.cseq[1])
        tx = self._client_txs.get(key)
        if tx is not None and tx.on_response(resp.status, now):
            referred = self._refers.pop(tx.key, None)
            if referred:
                self._out.events.append(TransferResult(referred, resp.status))
            published = self._publishes.pop(tx.key, None)
            if published:
                self._out.events.append(_publish_result(published, resp))
            owner = self._tx_owner.pop(tx.key, None)
            if owner and resp.status in (404, 410, 481, 489, 408, 500, 503):
                self._drop_subscription(owner, f"notify-{resp.status}")

    def _invite_tx_timed_out(self, tx: InviteServerTransaction) -> None:
        log.info("non-2xx final to INVITE never acknowledged (Timer H)")

    # ---- sending ----------------------------------------------------------------------
    def _response_address(
        self, req: SipRequest, source: Address, transport: str = "UDP"
    ) -> Address:
        """RFC 3261 §18.2.2 with RFC 3581: received/rport, else the sent-by port; over TCP
        the connection the request came on."""
        via = req.vias[0]
        if "rport" in via.params or transport != "UDP":
            return source
        return (source[0], via.port or 5060)

    def _top_via(self, req: SipRequest, source: Address) -> list[str]:
        vias = req.headers.get_all("Via")
        try:
            top = parse_via(vias[0])
        except (SipParseError, IndexError):
            return vias
        params = dict(top.params)
        if top.host != source[0] or "rport" in params:
            params["received"] = source[0]
        if "rport" in params:
            params["rport"] = str(source[1])
        return [str(type(top)(top.transport, top.host, top.port, params)), *vias[1:]]

    def _build_response(
        self,
        req: SipRequest,
        source: Address,
        status: int,
        reason: str | None = None,
        to_tag: str | None = None,
        contact: bool = False,
        body: bytes = b"",
        extra: Iterable[tuple[str, str]] = (),
        transport: str = "UDP",
    ) -> bytes:
        headers = Headers()
        for via in self._top_via(req, source):
            headers.add("Via", via)
        headers.add("From", req.headers.get("From") or "")
        to = req.headers.get("To") or ""
        if to_tag and status > 100:
            try:
                if parse_name_addr(to).tag is None:
                    to = f"{to};tag={to_tag}"
            except SipParseError:
                pass
        headers.add("To", to)
        headers.add("Call-ID", req.call_id)
        headers.add("CSeq", req.headers.get("CSeq") or "")
        if status >= 180 and req.method == "INVITE":
            for rr in req.headers.raw("Record-Route"):
                headers.add("Record-Route", rr)
        if contact:
            headers.add("Contact", f"<{self._contact_uri(transport)}>")
        headers.add("Server", self.config.user_agent)
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", "application/sdp")
        resp = SipResponse(headers=headers, body=body, status=status,
                           reason=reason or REASONS.get(status, "Unknown"))
        return resp.serialize()

    def _respond_tx(
        self,
        tx: ServerTransaction,
        req: SipRequest,
        status: int,
        now: float,
        reason: str | None = None,
        to_tag: str | None = None,
        contact: bool = False,
        body: bytes = b"",
        extra: Iterable[tuple[str, str]] = (),
    ) -> bytes:
        data = self._build_response(req, tx.address, status, reason, to_tag, contact, body,
                                    extra, tx.transport)
        self._out.outgoing += tx.respond(data, status, now)
        return data

    def _respond_stateless(
        self, req: SipRequest, source: Address, status: int, reason: str | None,
        transport: str = "UDP", extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        h = req.headers
        if not (h.get("From") and h.get("To") and req.call_id and req.cseq[0]):
            return  # a response without these would be as malformed as the request
        try:
            address = self._response_address(req, source, transport)
            data = self._build_response(req, source, status, reason, extra=extra,
                                        transport=transport)
        except (SipParseError, IndexError):
            return  # not even a Via to answer to
        self._out.outgoing.append(Send(data, address, transport))

    def _contact_uri(self, transport: str = "UDP") -> str:
        param = "" if transport == "UDP" else f";transport={transport.lower()}"
        return (f"sip:imapvm@{format_host(self.config.local_host)}:{self.config.local_port}"
                + param)

    def _local_sdp(self, call: Call, offer: bool = False) -> bytes:
        assert call.local_rtp is not None
        call.sdp_version += 1
        host, port = call.local_rtp
        if offer or call.offer is None or call.media is None:
            return build_offer(host, port, call.sdp_session_id, call.sdp_version,
                               self.config.codecs)
        return build_answer(call.offer, call.accepted_index, call.media, host, port,
                            call.sdp_session_id, call.sdp_version)

    def _session_timer_headers(self, req: SipRequest) -> list[tuple[str, str]]:
        """Tolerate RFC 4028 session timers: accept the interval, let the caller refresh."""
        se = req.headers.get("Session-Expires")
        if not se:
            return [("Supported", "timer")]
        interval = se.split(";")[0].strip()
        if not interval.isdigit():
            return [("Supported", "timer")]
        extra = [("Session-Expires", f"{interval};refresher=uac")]
        supported = [s.lower() for s in req.headers.get_all("Supported")]
        if "timer" in supported:
            extra.append(("Require", "timer"))
        return extra

    def _start_ok_retransmission(self, call: Call, data: bytes, cseq: int, now: float) -> None:
        t1 = self.config.timers.t1
        call.ok_data, call.ok_cseq = data, cseq
        call.ok_interval, call.ok_next, call.ok_give_up = t1, now + t1, now + 64 * t1

    def _in_dialog_destination(
        self, remote_target: str, route_set: list[str], source: Address
    ) -> tuple[str, list[str], Address]:
        """(Request-URI, Route values, address) for a request we send in a dialog."""
        target = remote_target
        routes = list(route_set)  # a UAS keeps Record-Route order (§12.1.1)
        next_hop = target
        if routes:
            first = parse_name_addr(routes[0]).uri
            if "lr" in first.params:
                next_hop = str(first)
            else:  # strict router: its URI becomes the Request-URI (§12.2.1.1)
                routes = [*routes[1:], f"<{target}>"]
                target = str(first)
                next_hop = target
        address = source
        if not self.config.symmetric_signalling:
            uri = parse_uri(next_hop)
            if is_ip_literal(uri.host):
                port = uri.port or (5061 if uri.scheme == "sips" else 5060)
                address = (uri.host, port)
        return target, routes, address

    def _send_bye(self, call: Call, now: float, reason: str) -> None:
        call.local_cseq += 1
        local: NameAddr = call.invite.to_addr
        self._send_in_dialog(
            "BYE", call.invite.call_id,
            str(local) if local.tag else f"{local};tag={call.local_tag}",
            call.invite.headers.get("From") or "", call.remote_target, call.route_set,
            call.source, call.local_cseq, now, transport=call.invite_tx.transport,
        )
        self._end(call, reason)

    def _send_in_dialog(
        self, method: str, call_id: str, local: str, remote: str, remote_target: str,
        route_set: list[str], source: Address, cseq: int, now: float,
        extra: Iterable[tuple[str, str]] = (), body: bytes = b"", content_type: str = "",
        transport: str = "UDP",
    ) -> tuple[str, ...]:
        """Send a request inside a dialog through a non-INVITE client transaction.

        Over TCP it goes back on the connection the dialog came in on (``source``).
        """
        try:
            target, routes, address = self._in_dialog_destination(
                remote_target, route_set, source
            )
        except SipParseError:
            target, routes, address = remote_target, [], source
        if transport != "UDP":
            address = source
        branch = MAGIC_COOKIE + secrets.token_hex(8)
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{transport} "
                    f"{format_host(self.config.local_host)}:{self.config.local_port}"
                    f";branch={branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", local)
        headers.add("To", remote)
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{cseq} {method}")
        for route in routes:
            headers.add("Route", route)
        headers.add("Contact", f"<{self._contact_uri(transport)}>")
        headers.add("User-Agent", self.config.user_agent)
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type)
        request = SipRequest(headers=headers, body=body, method=method, uri=target)
        tx = NonInviteClientTransaction(
            (branch, method), self.config.timers, State.TRYING, address,
            transport=transport, request=request.serialize(),
        )
        self._client_txs[tx.key] = tx
        self._out.outgoing += tx.start(now)
        return tx.key

    # ---- message-summary subscriptions (RFC 6665, RFC 3842) ---------------------------
    def _subscribe_expiry(self, req: SipRequest) -> int | None:
        """Granted expiry, or None when below the minimum (423)."""
        value = (req.headers.get("Expires") or "").strip()
        asked = int(value) if value.isdigit() and len(value) < 10 else self.config.max_expires
        if asked == 0:
            return 0
        if asked < self.config.min_expires:
            return None
        return min(asked, self.config.max_expires)

    def _event_ok(self, req: SipRequest, tx: ServerTransaction, now: float) -> bool:
        event = (req.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != MWI_EVENT:
            self._respond_tx(tx, req, 489, now, extra=[("Allow-Events", MWI_EVENT)])
            return False
        return True

    def _new_subscribe(
        self, req: SipRequest, tx: ServerTransaction, source: Address, now: float
    ) -> None:
        if not self._event_ok(req, tx, now):
            return
        expires = self._subscribe_expiry(req)
        if expires is None:
            self._respond_tx(tx, req, 423, now,
                             extra=[("Min-Expires", str(self.config.min_expires))])
            return
        contacts = req.headers.get_all("Contact")
        try:
            remote_target = str(parse_name_addr(contacts[0]).uri) if contacts else ""
            ruri = parse_uri(req.uri)
        except SipParseError:
            remote_target = ""
        if not remote_target:
            self._respond_tx(tx, req, 400, now, reason="Missing or bad Contact")
            return
        local_tag = _new_tag()
        sub = Subscription(
            handle=local_tag, request=req, source=source, local_tag=local_tag,
            remote_tag=req.from_addr.tag or "", remote_target=remote_target,
            route_set=req.headers.get_all("Record-Route"),
            mailbox=ruri.user.split(";")[0] if ruri.user else None,
            account=f"{ruri.scheme}:{ruri.user}@{format_host(ruri.host)}" if ruri.user
            else str(ruri),
            expires_at=now + expires, remote_cseq=req.cseq[0], transport=tx.transport,
        )
        self._respond_tx(tx, req, 200, now, to_tag=local_tag, contact=True,
                         extra=[("Expires", str(expires))])
        self._subscriptions[sub.handle] = sub
        self._sub_dialogs[sub.dialog_key] = sub
        self._out.events.append(SubscriptionStarted(sub.handle, sub.mailbox, sub.account, req,
                                                    source))
        if expires == 0:
            sub.terminated = True  # a one-off fetch: the first NOTIFY also ends it

    def _refresh_subscribe(self, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        sub = self._sub_dialogs.get((req.call_id, req.to_addr.tag or "", req.from_addr.tag or ""))
        if sub is None:
            self._respond_tx(tx, req, 481, now)
            return
        if not self._event_ok(req, tx, now):
            return
        expires = self._subscribe_expiry(req)
        if expires is None:
            self._respond_tx(tx, req, 423, now,
                             extra=[("Min-Expires", str(self.config.min_expires))])
            return
        sub.remote_cseq = max(sub.remote_cseq, req.cseq[0])
        self._respond_tx(tx, req, 200, now, contact=True, extra=[("Expires", str(expires))])
        sub.expires_at = now + expires
        if expires == 0:
            sub.terminated = True
        self._out.events.append(SubscriptionRefreshed(sub.handle))

    def notify(self, handle: str, body: bytes, now: float) -> bool:
        """Send a message-summary NOTIFY in a subscription (its state comes from the core)."""
        sub = self._subscriptions.get(handle)
        if sub is None:
            return False
        if sub.terminated:
            self._terminate_subscription(sub, now, None, body)
            return True
        remaining = max(0, int(sub.expires_at - now))
        self._send_notify(sub, f"active;expires={remaining}", body, now)
        return True

    def end_subscriptions(self, now: float, reason: str = "deactivated") -> None:
        """Final NOTIFY to every subscriber (shutdown): with ``deactivated`` phones
        re-subscribe at once, reaching another node if there is one (RFC 6665 §4.1.3)."""
        for sub in list(self._subscriptions.values()):
            self._terminate_subscription(sub, now, reason)

    def subscriptions_for(self, mailbox: str) -> list[str]:
        return [s.handle for s in self._subscriptions.values() if s.mailbox == mailbox]

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        return self._subscriptions

    def _send_notify(self, sub: Subscription, state: str, body: bytes, now: float) -> None:
        sub.local_cseq += 1
        local = sub.request.to_addr
        key = self._send_in_dialog(
            "NOTIFY", sub.request.call_id,
            str(local) if local.tag else f"{local};tag={sub.local_tag}",
            sub.request.headers.get("From") or "", sub.remote_target, sub.route_set,
            sub.source, sub.local_cseq, now,
            extra=[("Event", MWI_EVENT), ("Subscription-State", state)],
            body=body, content_type=MWI_CONTENT_TYPE, transport=sub.transport,
        )
        self._tx_owner[key] = sub.handle

    def _terminate_subscription(
        self, sub: Subscription, now: float, reason: str | None, body: bytes = b""
    ) -> None:
        state = "terminated" + (f";reason={reason}" if reason else "")
        self._send_notify(sub, state, body, now)
        self._drop_subscription(sub.handle, reason or "unsubscribed")

    def _drop_subscription(self, handle: str, reason: str) -> None:
        sub = self._subscriptions.pop(handle, None)
        if sub is None:
            return
        self._sub_dialogs.pop(sub.dialog_key, None)
        self._out.events.append(SubscriptionEnded(handle, reason))

    def publish(
        self, aor: str, address: Address, body: bytes, now: float, etag: str | None = None,
        expires: int = 3600,
    ) -> None:
        """PUBLISH message-summary state for ``aor`` to a presence server (RFC 3903).

        With ``etag`` and an empty body it refreshes; with ``etag`` and a body it modifies;
        ``expires=0`` removes. The answer arrives as a ``PublishResult`` event.
        """
        extra = [("Event", MWI_EVENT), ("Expires", str(expires))]
        if etag:
            extra.append(("SIP-If-Match", etag))
        key = self._send_in_dialog(
            "PUBLISH", secrets.token_hex(12) + "@imapvm", f"<{aor}>;tag={_new_tag()}",
            f"<{aor}>", aor, [], address, 1, now, extra=extra, body=body,
            content_type=MWI_CONTENT_TYPE,
        )
        self._publishes[key] = aor

    def send_unsolicited_notify(
        self, target: str, address: Address, body: bytes, now: float
    ) -> None:
        """Out-of-dialog message-summary NOTIFY for phones configured without SUBSCRIBE."""
        self._send_in_dialog(
            "NOTIFY", secrets.token_hex(12) + "@imapvm", f"<{self._contact_uri()}>;tag="
            + _new_tag(), f"<{target}>", target, [], address, 1, now,
            extra=[("Event", MWI_EVENT), ("Subscription-State", "active")],
            body=body, content_type=MWI_CONTENT_TYPE,
        )

    def _end(self, call: Call, reason: str) -> None:
        if call.state == CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ok_data = None
        self._calls.pop(call.handle, None)
        self._dialogs.pop(call.dialog_key, None)
        self._out.events.append(CallEnded(call.handle, reason))


def _publish_result(aor: str, resp: SipResponse) -> PublishResult:
    expires = (resp.headers.get("Expires") or "").strip()
    min_expires = (resp.headers.get("Min-Expires") or "").strip()
    return PublishResult(
        aor, resp.status, resp.headers.get("SIP-ETag"),
        int(expires) if expires.isdigit() and len(expires) < 10 else 0,
        int(min_expires) if min_expires.isdigit() and len(min_expires) < 10 else None,
    )


def _as_invite(cancel: SipRequest) -> SipRequest:
    """A CANCEL rewritten to answer the INVITE it cancels when we hold no call for it."""
    headers = cancel.headers.copy()
    headers.set("CSeq", f"{cancel.cseq[0]} INVITE")
    return SipRequest(headers=headers, method="INVITE", uri=cancel.uri)


def parse_dtmf_info(content_type: str, body: bytes) -> tuple[str, int] | None:
    """(digit, duration ms) from an application/dtmf-relay or application/dtmf INFO body."""
    text = body.decode("utf-8", "replace").strip()
    if content_type == "application/dtmf":
        signal, duration = text, 250
    elif content_type == "application/dtmf-relay":
        fields: dict[str, str] = {}
        for line in text.splitlines():
            name, _, value = line.partition("=")
            fields[name.strip().lower()] = value.strip()
        signal = fields.get("signal", "")
        dur = fields.get("duration", "")
        duration = int(dur) if dur.isdigit() and len(dur) < 7 else 250
    else:
        return None
    signal = signal.upper()
    if signal.isdigit() and len(signal) <= 2 and int(signal) < len(DTMF_EVENT_DIGITS):
        return DTMF_EVENT_DIGITS[int(signal)], duration
    if len(signal) == 1 and signal in DTMF_EVENT_DIGITS:
        return signal, duration
    return None
