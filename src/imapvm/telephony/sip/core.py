"""The sans-I/O SIP user agent server: requests in, responses, events and deadlines out.

Structure (composition, no inheritance): ``SipCore`` dispatches requests and handles calls
(INVITE, re-INVITE, CANCEL, BYE, INFO, UPDATE, REFER); each call's dialog is a ``Dialog``
state machine (``dialog.py``); transactions live in the ``TransactionLayer`` (``base.py``);
message-summary subscriptions in the ``Notifier`` component (``notifier.py``). All timers are
entries in one deadline heap (``timers.py``), so a timer pass costs what is due, not what is
alive.

Drive it with ``receive(data, source, now)`` for every datagram, ``handle_timer(now)`` when
``next_deadline()`` passes, and the call-control methods (``ring``, ``answer``, ``reject``,
``redirect``, ``refer``, ``hangup``). Collect ``take_outgoing()`` datagrams and
``take_events()`` after each call. Nothing here raises because of what a peer sent: bad input
becomes a 4xx or is dropped. A call-control method used in a state that does not allow it
(the call has ended, was already answered, ...) raises ``SipStateError`` and changes nothing.
Any other exception is a bug: the driver logs and counts it at the asyncio boundary.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
from collections import Counter
from dataclasses import dataclass

from ..sdp import (
    NegotiatedMedia,
    SdpError,
    SessionDescription,
    build_answer,
    build_offer,
    parse_sdp,
)
from ..sdp import negotiate as negotiate_sdp
from .base import (
    ALLOW,
    DTMF_EVENT_DIGITS,
    KNOWN_METHODS,
    MWI_EVENT,
    SUPPORTED_EXTENSIONS,
    CoreConfig,
    FinalHandler,
    Pending,
    TimerKey,
    TransactionLayer,
    new_tag,
)
from .dialog import Dialog, DialogState, HangupAction, PendingAck
from .errors import SipParseError, SipStateError
from .events import (
    CallConfirmed,
    CallEnded,
    DtmfReceived,
    Event,
    IncomingCall,
    MediaUpdated,
    TransferProgress,
    TransferResult,
)
from .kinds import EndReason, SipTransport, TerminationReason
from .message import (
    SipRequest,
    SipResponse,
    parse_message,
    request_uri_error,
)
from .notifier import Notifier, Subscription
from .ratelimit import RateLimiter
from .timers import TimerHeap
from .transaction import (
    Address,
    InviteServerTransaction,
    Send,
    ServerTransaction,
    State,
)
from .uri import parse_name_addr, parse_uri

log = logging.getLogger(__name__)

__all__ = [
    "Call", "CoreConfig", "Dialog", "DialogState", "SipCore", "SipStateError", "Subscription",
    "parse_dtmf_info",
]

CallState = DialogState  # the name earlier versions used


@dataclass
class Call:
    """One call: the INVITE we received, its dialog and the media negotiated in it."""

    handle: str
    invite: SipRequest
    invite_tx: InviteServerTransaction
    dialog: Dialog
    offer: SessionDescription | None
    accepted_index: int
    media: NegotiatedMedia | None
    sdp_session_id: int = 0
    sdp_version: int = 0
    local_rtp: Address | None = None
    # RFC 4028: the negotiated interval and who refreshes ("uac": the caller; "uas": we do)
    session_interval: int | None = None
    session_refresher: str | None = None

    @property
    def state(self) -> DialogState:
        return self.dialog.state

    @property
    def source(self) -> Address:
        return self.dialog.source


class SipCore:
    """UAS core: request dispatch and calls; transactions and subscriptions are components."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self._out = Pending()
        # Operational counters: retransmissions sent and absorbed, input dropped or refused.
        self.stats: Counter[str] = Counter()
        self.timers: TimerHeap[TimerKey] = TimerHeap()
        self.transactions = TransactionLayer(config, self._out, self.timers, self.stats)
        self.notifier = Notifier(config, self.transactions, self._out, self.timers)
        self._calls: dict[str, Call] = {}
        self._dialogs: dict[tuple[str, str, str], Call] = {}
        self._by_invite_tx: dict[tuple[str, ...], Call] = {}
        self._registers: dict[str, tuple[ServerTransaction, SipRequest]] = {}  # held REGISTERs
        self._register_seq = 0
        self._last_now = 0.0  # the driver's clock at the latest input (for response callbacks)
        #: Draining for shutdown or upgrade: OPTIONS probes and new calls are answered 480
        #: (Temporarily Unavailable), so a dispatcher (Kamailio) sends new calls elsewhere.
        self.draining = False
        self._limiter = RateLimiter(*config.rate_limit) if config.rate_limit else None
        self._trusted_limiter = (
            RateLimiter(*config.trusted_rate_limit) if config.trusted_rate_limit else None
        )

    # ---- driver interface -------------------------------------------------------------
    def take_outgoing(self) -> list[Send]:
        out, self._out.outgoing = self._out.outgoing, []
        return out

    def take_events(self) -> list[Event]:
        events, self._out.events = self._out.events, []
        return events

    def receive(self, data: bytes, source: Address, now: float,
                transport: SipTransport = "UDP") -> None:
        """Feed one datagram (or one framed TCP message). Never raises because of its content.

        ``transport`` is "UDP" or "TCP"; over TCP, ``source`` names the connection that
        responses and in-dialog requests go back on.
        """
        self._last_now = now
        try:
            msg = parse_message(data, self.config.limits)
        except SipParseError as exc:
            self.stats["bad_messages"] += 1
            if isinstance(exc.partial, SipRequest) and exc.partial.method != "ACK":
                log.info("answering %d to bad request from %s: %s", exc.status, source, exc)
                self.transactions.respond_stateless(exc.partial, source, exc.status,
                                                    str(exc)[:60], transport)
            else:
                log.info("dropping unparsable datagram from %s: %s", source, exc)
            return
        if msg is None:
            return
        if isinstance(msg, SipResponse):
            self.transactions.on_response(msg, now)
            return
        if msg.method != "ACK":
            problem = request_uri_error(msg)
            if problem is not None:
                self.transactions.respond_stateless(msg, source, problem.status, None,
                                                    transport)
                return
        trusted = self._trusted(source)
        if not trusted and not self._authenticated(msg, source, now, transport):
            return
        if trusted and not self._within_rate(msg, source, now,
                                             trusted=self.config.trusted is not None):
            return  # dropped, not answered: answering a flood only feeds it
        self._on_request(msg, source, now, transport)

    def next_deadline(self) -> float | None:
        """The earliest armed timer (the top of the heap: no scan)."""
        return self.timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Fire every deadline up to ``now``; only the due heap entries are looked at."""
        self._last_now = now
        for kind, ident in self.timers.pop_due(now):
            if kind in ("server", "client"):
                self.transactions.on_timer(kind, ident, now)
            elif kind == "ack":
                self._ack_timer(ident[0], now)
            elif kind == "sub":
                self.notifier.on_timer(ident[0], now)
            elif kind == "session":
                self._session_timer_fired(ident[0], now)
            elif kind == "register":
                held = self._registers.pop(ident[0], None)
                if held is not None:
                    self._answer_register(held[0], held[1], now)

    @property
    def calls(self) -> dict[str, Call]:
        return self._calls

    def call_state(self, handle: str) -> DialogState | None:
        """The call's dialog state, or None when there is no such call (any more)."""
        call = self._calls.get(handle)
        return call.dialog.state if call else None

    # ---- the notifier's driver interface ------------------------------------------------
    @property
    def subscriptions(self) -> dict[str, Subscription]:
        return self.notifier.subscriptions

    def subscriptions_for(self, mailbox: str) -> list[str]:
        return self.notifier.for_mailbox(mailbox)

    def notify(self, handle: str, body: bytes, now: float) -> None:
        """A message-summary NOTIFY in a subscription; ``SipStateError`` if it has ended."""
        self.notifier.notify(handle, body, now)

    def end_subscriptions(self, now: float,
                          reason: TerminationReason = "deactivated") -> None:
        self.notifier.end_all(now, reason)

    def publish(
        self, aor: str, address: Address, body: bytes, now: float, etag: str | None = None,
        expires: int = 3600,
    ) -> None:
        self.notifier.publish(aor, address, body, now, etag, expires)

    def send_unsolicited_notify(
        self, target: str, address: Address, body: bytes, now: float
    ) -> None:
        self.notifier.send_unsolicited_notify(target, address, body, now)

    # ---- call control -----------------------------------------------------------------
    def _call(self, handle: str) -> Call:
        call = self._calls.get(handle)
        if call is None:
            raise SipStateError(f"no call {handle} (it has ended)")
        return call

    def ring(self, handle: str, now: float) -> None:
        """180 Ringing to an unanswered INVITE."""
        call = self._call(handle)
        call.dialog.require("ring", DialogState.EARLY)
        self.transactions.respond(call.invite_tx, call.invite, 180, now,
                                  to_tag=call.dialog.local_tag, contact=True)

    def answer(self, handle: str, rtp: Address, now: float) -> None:
        """Send 200 with our SDP (``rtp`` is the local media address)."""
        call = self._call(handle)
        call.dialog.require("answer", DialogState.EARLY)
        call.local_rtp = rtp
        call.sdp_session_id = secrets.randbelow(2**31)
        body = self._local_sdp(call)
        extra = self._session_timer_headers(call.invite, call, now)
        data = self.transactions.respond(call.invite_tx, call.invite, 200, now,
                                         to_tag=call.dialog.local_tag, contact=True,
                                         body=body, extra=extra)
        call.dialog.answered(self._pending_ack(data, call.invite.cseq[0], now))
        self.timers.schedule(("ack", (handle,)), now + self.config.timers.t1)

    def reject(self, handle: str, status: int, now: float) -> None:
        """Final non-2xx to an unanswered INVITE (486 busy, 480 unavailable, 603 ...)."""
        call = self._call(handle)
        call.dialog.require("reject", DialogState.EARLY)
        extra = [("Retry-After", "5")] if status == 503 else []
        self.transactions.respond(call.invite_tx, call.invite, status, now,
                                  to_tag=call.dialog.local_tag, extra=extra)
        self._end(call, "rejected")

    def redirect(self, handle: str, target: str, now: float) -> None:
        """302 to an unanswered INVITE: the cheapest transfer, done by the caller's side."""
        call = self._call(handle)
        call.dialog.require("redirect", DialogState.EARLY)
        self.transactions.respond(call.invite_tx, call.invite, 302, now,
                                  to_tag=call.dialog.local_tag,
                                  extra=[("Contact", f"<{target}>")])
        self._end(call, "redirected")

    def hangup(self, handle: str, now: float) -> None:
        """End the call from our side: BYE once answered (after the ACK), 480 while ringing."""
        call = self._call(handle)
        action = call.dialog.hang_up()
        if action == HangupAction.REJECT:
            self.reject(handle, 480, now)
        elif action == HangupAction.BYE:
            self.timers.cancel(("ack", (handle,)))
            self._send_bye(call, now, reason="local-bye")
        # WAIT_FOR_ACK: a BYE must not overtake the ACK (RFC 3261 §15); sent when it comes

    def refer(self, handle: str, target: str, now: float) -> None:
        """Ask the caller's phone to call ``target`` (REFER, RFC 3515); result as events."""
        call = self._call(handle)
        call.dialog.check_refer()

        def answered(status: int, _resp: SipResponse | None) -> None:
            self._out.events.append(TransferResult(handle, status))

        self._send_in_dialog(call, "REFER", now, extra=[
            ("Refer-To", f"<{target}>"), ("Referred-By", f"<{self.transactions.contact_uri()}>")
        ], on_final=answered)

    # ---- receiving --------------------------------------------------------------------
    def _authenticated(
        self, msg: SipRequest, source: Address, now: float, transport: SipTransport
    ) -> bool:
        """Admit an untrusted source's request, or answer 401/403 and return False.

        Requests inside an existing dialog or transaction were admitted when it was created;
        ACK and CANCEL cannot be challenged (RFC 3261 §22.1).
        """
        auth = self.config.auth
        if msg.method in ("ACK", "CANCEL") and auth is not None:
            return True
        if auth is not None and (
            msg.to_addr.tag or self.transactions.find_server(msg, msg.method) is not None
        ):
            return True
        if msg.method == "ACK" or not self._within_rate(msg, source, now):
            return False
        if auth is None:
            self.transactions.respond_stateless(msg, source, 403, None, transport)
            return False
        verdict, username = auth.verify(msg.headers.get("Authorization"), msg.method,
                                        source[0], now)
        if verdict == "ok":
            target = parse_uri(msg.uri).user
            if msg.method == "SUBSCRIBE" and target != username:
                self.transactions.respond_stateless(msg, source, 403, "Not your mailbox",
                                                    transport)
                return False
            return True
        if verdict == "locked":
            self.stats["auth_locked"] += 1
            self.transactions.respond_stateless(msg, source, 403, "Locked (too many failures)",
                                                transport)
            return False
        if verdict == "bad":
            self.stats["auth_failures"] += 1
        elif verdict == "missing":
            with contextlib.suppress(SipParseError):
                auth.expect(parse_uri(msg.uri).user or "")
        challenges = auth.challenges(source[0], now, stale=verdict == "stale")
        self.transactions.respond_stateless(msg, source, 401, "Unauthorized", transport,
                                            extra=[("WWW-Authenticate", c) for c in challenges])
        return False

    def _within_rate(
        self, msg: SipRequest, source: Address, now: float, trusted: bool = False
    ) -> bool:
        """Per-source limit on new requests. Sources in an explicit trusted list (the PBX)
        have their own, higher limit; everyone else is limited, including the 403s we
        answer them with."""
        limiter = self._trusted_limiter if trusted else self._limiter
        if (
            limiter is None
            or msg.method in ("ACK", "CANCEL")
            or msg.to_addr.tag
            or self.transactions.find_server(msg, msg.method) is not None
            or limiter.allow(source[0], now)
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

    def _on_request(self, req: SipRequest, source: Address, now: float,
                    transport: SipTransport) -> None:
        method = req.method
        if method == "ACK":
            self._on_ack(req, now)
            return
        existing = self.transactions.find_server(req, method)
        if existing is not None:
            self.transactions.absorb(existing)
            return
        if method == "CANCEL":
            self._on_cancel(req, source, now, transport)
            return
        tx = self.transactions.new_server(req, method, source, transport)
        respond = self.transactions.respond
        unsupported = [
            opt for opt in req.headers.get_all("Require") if opt.lower() not in SUPPORTED_EXTENSIONS
        ]
        if unsupported:
            respond(tx, req, 420, now, extra=[("Unsupported", ", ".join(unsupported))])
            return
        if method == "SUBSCRIBE":
            self.notifier.on_subscribe(req, tx, source, now)
        elif req.to_addr.tag:
            self._in_dialog(req, tx, now)
        elif method in ("INVITE", "OPTIONS") and self.draining:
            respond(tx, req, 480, now, extra=[("Retry-After", "30")])
        elif method == "INVITE":
            assert isinstance(tx, InviteServerTransaction)
            self._new_invite(req, tx, source, now)
        elif method == "OPTIONS":
            respond(tx, req, 200, now, extra=self._capabilities())
        elif method == "REGISTER":
            self._register_seq += 1
            ident = str(self._register_seq)
            self._registers[ident] = (tx, req)
            self.timers.schedule(("register", (ident,)), now + self.config.register_delay)
        elif method in ("BYE", "INFO", "UPDATE", "NOTIFY", "PRACK"):
            respond(tx, req, 481, now)
        elif method in KNOWN_METHODS:
            respond(tx, req, 405, now, extra=[("Allow", ALLOW)])
        else:
            respond(tx, req, 501, now, extra=[("Allow", ALLOW)])

    def _answer_register(self, tx: ServerTransaction, req: SipRequest, now: float) -> None:
        """200 with the phone's Contact echoed and the expiry it asked for (bounded)."""
        extra: list[tuple[str, str]] = []
        asked = req.headers.get("Expires")
        expires = int(asked) if asked and asked.strip().isdigit() else 3600
        expires = min(expires, self.config.max_expires)
        for contact in req.headers.get_all("Contact"):
            if contact.strip() != "*":
                value = contact if "expires=" in contact else f"{contact};expires={expires}"
                extra.append(("Contact", value))
        extra.append(("Expires", str(expires)))
        self.transactions.respond(tx, req, 200, now, extra=extra)

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", "application/sdp, application/dtmf-relay, "
                "application/dtmf"), ("Supported", "timer"), ("Allow-Events", MWI_EVENT)]

    def _new_invite(
        self, req: SipRequest, tx: InviteServerTransaction, source: Address, now: float
    ) -> None:
        respond = self.transactions.respond
        respond(tx, req, 100, now)
        contacts = req.headers.get_all("Contact")
        try:
            remote_target = str(parse_name_addr(contacts[0]).uri) if contacts else ""
        except SipParseError:
            remote_target = ""
        if not remote_target:
            respond(tx, req, 400, now, reason="Missing or bad Contact")
            return
        if isinstance(self._session_timer(req), int):
            respond(tx, req, 422, now, extra=[("Min-SE", str(self.config.min_se))])
            return
        offer: SessionDescription | None = None
        accepted: tuple[int, NegotiatedMedia] | None = None
        if req.body:
            if req.content_type != "application/sdp":
                respond(tx, req, 415, now, extra=[("Accept", "application/sdp")])
                return
            try:
                offer = parse_sdp(req.body)
            except SdpError:
                respond(tx, req, 400, now, reason="Bad SDP")
                return
            accepted = self._negotiate(offer, tx.transport)
            if accepted is None:
                respond(tx, req, 488, now)
                return
        local_tag = new_tag()
        local = req.to_addr
        dialog = Dialog(
            call_id=req.call_id, local_tag=local_tag, remote_tag=req.from_addr.tag or "",
            local=str(local) if local.tag else f"{local};tag={local_tag}",
            remote=req.headers.get("From") or "", remote_target=remote_target,
            route_set=req.headers.get_all("Record-Route"), source=source,
            transport=tx.transport, remote_cseq=req.cseq[0],
        )
        call = Call(
            handle=local_tag, invite=req, invite_tx=tx, dialog=dialog, offer=offer,
            accepted_index=accepted[0] if accepted else 0,
            media=accepted[1] if accepted else None,
        )
        self._calls[call.handle] = call
        self._dialogs[dialog.key] = call
        self._by_invite_tx[tx.key] = call
        self._out.events.append(IncomingCall(call.handle, req, source, call.media))

    def _find_dialog(self, req: SipRequest) -> Call | None:
        key = (req.call_id, req.to_addr.tag or "", req.from_addr.tag or "")
        return self._dialogs.get(key)

    def _in_dialog(self, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        respond = self.transactions.respond
        call = self._find_dialog(req)
        if call is None or call.state == DialogState.ENDED:
            respond(tx, req, 481, now)
            return
        dialog = call.dialog
        number = req.cseq[0]
        if number < dialog.remote_cseq or (
            number == dialog.remote_cseq and req.method != "INVITE"
        ):
            respond(tx, req, 500, now, reason="CSeq out of order")
            return
        dialog.remote_cseq = number
        method = req.method
        if method == "BYE":
            respond(tx, req, 200, now)
            self._end(call, "remote-bye")
        elif method == "INVITE":
            assert isinstance(tx, InviteServerTransaction)
            self._reinvite(call, req, tx, now)
        elif method == "UPDATE":
            self._update(call, req, tx, now)
        elif method == "INFO":
            self._info(call, req, tx, now)
        elif method == "OPTIONS":
            respond(tx, req, 200, now, extra=self._capabilities())
        elif method == "NOTIFY":
            self._refer_notify(call, req, tx, now)
        elif method in KNOWN_METHODS:
            respond(tx, req, 405, now, extra=[("Allow", ALLOW)])
        else:
            respond(tx, req, 501, now, extra=[("Allow", ALLOW)])

    def _refer_notify(self, call: Call, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        """NOTIFY for our REFER (RFC 3515): its message/sipfrag body is a status line."""
        if (req.headers.get("Event") or "").split(";")[0].strip().lower() != "refer":
            self.transactions.respond(tx, req, 489, now)
            return
        self.transactions.respond(tx, req, 200, now)
        parts = req.body.decode("utf-8", "replace").split(None, 2)
        if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit():
            self._out.events.append(TransferProgress(call.handle, int(parts[1])))

    def _refresh_target(self, call: Call, req: SipRequest) -> None:
        contacts = req.headers.get_all("Contact")
        if contacts:
            with contextlib.suppress(SipParseError):
                call.dialog.remote_target = str(parse_name_addr(contacts[0]).uri)

    def _apply_offer(self, call: Call, req: SipRequest) -> bytes | int:
        """Negotiate a new offer in ``req``: our answer body, or an error status."""
        if req.content_type != "application/sdp":
            return 415
        try:
            offer = parse_sdp(req.body)
        except SdpError:
            return 400
        accepted = self._negotiate(offer, call.dialog.transport)
        if accepted is None:
            return 488
        call.offer, call.accepted_index, call.media = offer, accepted[0], accepted[1]
        self._out.events.append(MediaUpdated(call.handle, accepted[1]))
        return self._local_sdp(call)

    def _reinvite(
        self, call: Call, req: SipRequest, tx: InviteServerTransaction, now: float
    ) -> None:
        respond = self.transactions.respond
        if not call.dialog.accepts_reinvite():
            respond(tx, req, 491, now)  # ours still awaits its ACK, or we are hanging up
            return
        if call.local_rtp is None:
            respond(tx, req, 500, now, extra=[("Retry-After", "1")])
            return
        if isinstance(self._session_timer(req), int):
            respond(tx, req, 422, now, to_tag=call.dialog.local_tag,
                    extra=[("Min-SE", str(self.config.min_se))])
            return
        self._refresh_target(call, req)
        if req.body:
            result = self._apply_offer(call, req)
            if isinstance(result, int):
                respond(tx, req, result, now, to_tag=call.dialog.local_tag)
                return
            body = result
        else:
            body = self._local_sdp(call, offer=True)
        data = respond(tx, req, 200, now, to_tag=call.dialog.local_tag, contact=True,
                       body=body, extra=self._session_timer_headers(req, call, now))
        call.dialog.reinvited(self._pending_ack(data, req.cseq[0], now))
        self.timers.schedule(("ack", (call.handle,)), now + self.config.timers.t1)

    def _update(self, call: Call, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        respond = self.transactions.respond
        self._refresh_target(call, req)
        if isinstance(self._session_timer(req), int):
            respond(tx, req, 422, now, extra=[("Min-SE", str(self.config.min_se))])
            return
        extra = self._session_timer_headers(req, call, now)
        if req.body and call.local_rtp is not None:
            result = self._apply_offer(call, req)
            if isinstance(result, int):
                respond(tx, req, result, now)
                return
            respond(tx, req, 200, now, contact=True, body=result, extra=extra)
        else:
            respond(tx, req, 200, now, contact=True, extra=extra)

    def _info(self, call: Call, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        respond = self.transactions.respond
        if not req.body:
            respond(tx, req, 200, now)  # an empty INFO is a keep-alive probe
            return
        parsed = parse_dtmf_info(req.content_type, req.body)
        if parsed is None:
            respond(tx, req, 415, now, extra=[
                ("Accept", "application/dtmf-relay, application/dtmf")])
            return
        respond(tx, req, 200, now)
        self._out.events.append(DtmfReceived(call.handle, parsed[0], parsed[1]))

    def _on_ack(self, req: SipRequest, now: float) -> None:
        tx = self.transactions.find_server(req, "INVITE")
        if isinstance(tx, InviteServerTransaction) and tx.state in (
            State.COMPLETED, State.CONFIRMED
        ):
            self.transactions.ack_non_2xx(tx, now)  # ACK for a non-2xx final: absorbed
            return
        call = self._find_dialog(req)
        if call is None:
            return
        before = call.dialog.acked(req.cseq[0])
        if before is None:
            return  # ACK retransmission or stray: nothing to do, never answered
        self.timers.cancel(("ack", (call.handle,)))
        if req.body and call.media is None and call.offer is None:
            self._late_answer(call, req)
        if before == DialogState.HANGING_UP:
            self._send_bye(call, now, reason="local-bye")
        elif before == DialogState.ANSWERED:
            self._out.events.append(CallConfirmed(call.handle))

    def _late_answer(self, call: Call, ack: SipRequest) -> None:
        try:
            answer = parse_sdp(ack.body)
        except SdpError:
            return
        accepted = self._negotiate(answer, call.dialog.transport)
        if accepted is not None:
            call.media = accepted[1]
            call.accepted_index = accepted[0]
            self._out.events.append(MediaUpdated(call.handle, accepted[1]))

    def _on_cancel(self, req: SipRequest, source: Address, now: float,
                   transport: SipTransport) -> None:
        respond = self.transactions.respond
        tx = self.transactions.new_server(req, "CANCEL", source, transport)
        invite_tx = self.transactions.find_server(req, "INVITE")
        if not isinstance(invite_tx, InviteServerTransaction):
            respond(tx, req, 481, now)
            return
        respond(tx, req, 200, now)
        call = self._by_invite_tx.get(invite_tx.key)
        if invite_tx.state == State.PROCEEDING:
            # The 487 answers the INVITE, so it must carry the INVITE's CSeq method.
            if call is not None:
                respond(invite_tx, call.invite, 487, now, to_tag=call.dialog.local_tag)
                self._end(call, "cancelled")
            else:
                respond(invite_tx, _as_invite(req), 487, now, to_tag=new_tag())

    def _negotiate(self, offer: SessionDescription, transport: SipTransport
                   ) -> tuple[int, NegotiatedMedia] | None:
        c = self.config
        return negotiate_sdp(offer, c.codecs, c.srtp, secure=transport == "TLS",
                             sdes_in_clear=c.sdes_in_clear)

    def _local_sdp(self, call: Call, offer: bool = False) -> bytes:
        assert call.local_rtp is not None
        call.sdp_version += 1
        host, port = call.local_rtp
        if offer or call.offer is None or call.media is None:
            return build_offer(host, port, call.sdp_session_id, call.sdp_version,
                               self.config.codecs)
        return build_answer(call.offer, call.accepted_index, call.media, host, port,
                            call.sdp_session_id, call.sdp_version)

    def _session_timer(self, req: SipRequest) -> tuple[int, str, bool] | int | None:
        """RFC 4028 for this request: (interval, refresher, caller supports timers), 422
        when the interval asked for is below our Min-SE, or None for no session timer."""
        supported = any(t.strip().lower() == "timer"
                        for v in req.headers.get_all("Supported") for t in v.split(","))
        se = req.headers.get("Session-Expires")
        refresher: str | None = None
        if se:
            head, *params = (p.strip() for p in se.split(";"))
            if not head.isdigit():
                return None
            interval = int(head)
            if interval < self.config.min_se:
                return 422
            for p in params:
                name, _, value = p.partition("=")
                if name.strip().lower() == "refresher":
                    refresher = value.strip().lower()
        elif supported and self.config.session_expires:
            interval = self.config.session_expires
            min_se = (req.headers.get("Min-SE") or "").split(";")[0].strip()
            if min_se.isdigit():
                interval = max(interval, int(min_se))
        else:
            return None
        if refresher not in ("uac", "uas") or (refresher == "uac" and not supported):
            refresher = "uac" if supported else "uas"
        return interval, refresher, supported

    def _session_timer_headers(self, req: SipRequest, call: Call | None = None,
                               now: float = 0.0) -> list[tuple[str, str]]:
        """Session-Expires for our 2xx, and (for a call) the timer armed: when the caller
        refreshes, the call ends unless a refresh comes before the interval runs out (less
        min(32 s, a third), RFC 4028 §10); when we refresh, an UPDATE goes at half of it."""
        timer = self._session_timer(req)
        if not isinstance(timer, tuple):
            return [("Supported", "timer")]
        interval, refresher, supported = timer
        if call is not None:
            call.session_interval, call.session_refresher = interval, refresher
            when = (now + interval / 2 if refresher == "uas"
                    else now + interval - min(32.0, interval / 3))
            self.timers.schedule(("session", (call.handle,)), when)
        extra = [("Session-Expires", f"{interval};refresher={refresher}")]
        if supported:
            extra.append(("Require", "timer"))
        return extra

    def _session_timer_fired(self, handle: str, now: float) -> None:
        call = self._calls.get(handle)
        if call is None or call.session_interval is None:
            return
        if call.session_refresher == "uac":
            log.info("call %s: no session refresh within %d s; ending it with BYE", handle,
                     call.session_interval)
            self._send_bye(call, now, reason="session-expired")
            return
        interval = call.session_interval

        def refreshed(status: int, _resp: SipResponse | None) -> None:
            if status in (408, 481) and handle in self._calls:
                log.info("call %s: session refresh got %d; ending it", handle, status)
                self._send_bye(self._calls[handle], self._last_now, reason="session-expired")

        self._send_in_dialog(call, "UPDATE", now, extra=[
            ("Session-Expires", f"{interval};refresher=uas"), ("Supported", "timer")],
            on_final=refreshed)
        self.timers.schedule(("session", (handle,)), now + interval / 2)

    # ---- 2xx retransmission, BYE, ending ------------------------------------------------
    def _pending_ack(self, data: bytes, cseq: int, now: float) -> PendingAck:
        t1 = self.config.timers.t1
        return PendingAck(data, cseq, next=now + t1, interval=t1, give_up=now + 64 * t1)

    def _ack_timer(self, handle: str, now: float) -> None:
        call = self._calls.get(handle)
        pending = call.dialog.pending_ack if call else None
        if call is None or pending is None:
            return
        if now >= pending.give_up:
            log.info("no ACK for call %s: ending it with BYE", call.handle)
            self._send_bye(call, now, reason=call.dialog.ack_timed_out())
            return
        if now >= pending.next:
            self.stats["retransmitted_2xx"] += 1
            self._out.outgoing.append(
                Send(pending.data, call.invite_tx.address, call.invite_tx.transport)
            )
            pending.interval = min(2 * pending.interval, self.config.timers.t2)
            pending.next = now + pending.interval
        self.timers.schedule(("ack", (handle,)), pending.deadline)

    def _send_in_dialog(
        self, call: Call, method: str, now: float, extra: list[tuple[str, str]] | None = None,
        on_final: FinalHandler | None = None,
    ) -> None:
        d = call.dialog
        self.transactions.send_in_dialog(
            method, d.call_id, d.local, d.remote, d.remote_target, d.route_set, d.source,
            d.next_cseq(), now, extra=extra or [], transport=d.transport, on_final=on_final,
        )

    def _send_bye(self, call: Call, now: float, reason: EndReason) -> None:
        self._send_in_dialog(call, "BYE", now)
        self._end(call, reason)

    def _end(self, call: Call, reason: EndReason) -> None:
        self.timers.cancel(("ack", (call.handle,)))
        self.timers.cancel(("session", (call.handle,)))
        if not call.dialog.end():
            return
        self._calls.pop(call.handle, None)
        self._dialogs.pop(call.dialog.key, None)
        self._by_invite_tx.pop(call.invite_tx.key, None)
        self._out.events.append(CallEnded(call.handle, reason))


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
