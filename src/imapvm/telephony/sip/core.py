"""The sans-I/O SIP user agent server: requests in, responses, events and deadlines out.

This module handles calls (INVITE, re-INVITE, CANCEL, BYE, INFO, UPDATE, REFER) and the
request dispatch; ``base.py`` holds the shared state and sending machinery and ``notifier.py``
the message-summary subscriptions.

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
from dataclasses import dataclass
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
from .base import (
    ALLOW,
    DTMF_EVENT_DIGITS,
    KNOWN_METHODS,
    MWI_EVENT,
    SUPPORTED_EXTENSIONS,
    CoreConfig,
    new_tag,
)
from .errors import SipParseError
from .events import (
    CallConfirmed,
    CallEnded,
    DtmfReceived,
    IncomingCall,
    MediaUpdated,
    PublishResult,
    TransferProgress,
    TransferResult,
)
from .message import (
    SipRequest,
    SipResponse,
    parse_message,
    request_uri_error,
)
from .notifier import Notifier, Subscription, publish_result
from .transaction import (
    Address,
    InviteServerTransaction,
    NonInviteServerTransaction,
    Send,
    ServerTransaction,
    State,
)
from .uri import NameAddr, parse_name_addr, parse_uri

log = logging.getLogger(__name__)

__all__ = ["Call", "CallState", "CoreConfig", "SipCore", "Subscription", "parse_dtmf_info"]

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


class SipCore(Notifier):
    """UAS core: transactions, dialogs, INVITE/re-INVITE/CANCEL/BYE/OPTIONS/INFO/UPDATE."""

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

    def next_deadline(self) -> float | None:
        deadlines = [d for tx in self._server_txs.values() if (d := tx.deadline()) is not None]
        deadlines += [d for tx in self._client_txs.values() if (d := tx.deadline()) is not None]
        deadlines += [min(c.ok_next, c.ok_give_up) for c in self._calls.values() if c.ok_data]
        deadlines += [s.expires_at for s in self._subscriptions.values()]
        deadlines += [due for due, _tx, _req in self._registers]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Fire every deadline up to ``now``. Never raises."""
        try:
            self._handle_timer(now)
        except Exception:
            log.exception("SIP core failed in its timers")

    def _handle_timer(self, now: float) -> None:
        due = [r for r in self._registers if r[0] <= now]
        self._registers = [r for r in self._registers if r[0] > now]
        for _due, rtx, rreq in due:
            self._answer_register(rtx, rreq, now)
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
        trusted = self._trusted(source)
        if not trusted and not self._authenticated(msg, source, now, transport):
            return
        if trusted and not self._within_rate(msg, source, now,
                                             trusted=self.config.trusted is not None):
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
        if verdict == "locked":
            self.stats["auth_locked"] += 1
            self._respond_stateless(msg, source, 403, "Locked (too many failures)", transport)
            return False
        if verdict == "bad":
            self.stats["auth_failures"] += 1
        challenges = auth.challenges(source[0], now, stale=verdict == "stale")
        self._respond_stateless(msg, source, 401, "Unauthorized", transport,
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
            or self._server_txs.get(self._tx_key(msg, msg.method)) is not None
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
        elif method == "REGISTER":
            self._registers.append((now + self.config.register_delay, tx, req))
        elif method in ("BYE", "INFO", "UPDATE", "NOTIFY", "PRACK"):
            self._respond_tx(tx, req, 481, now)
        elif method in KNOWN_METHODS:
            self._respond_tx(tx, req, 405, now, extra=[("Allow", ALLOW)])
        else:
            self._respond_tx(tx, req, 501, now, extra=[("Allow", ALLOW)])

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
        self._respond_tx(tx, req, 200, now, extra=extra)

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
        local_tag = new_tag()
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
            tag = call.local_tag if call else new_tag()
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
                self._out.events.append(publish_result(published, resp))
            owner = self._tx_owner.pop(tx.key, None)
            if owner and resp.status in (404, 410, 481, 489, 408, 500, 503):
                self._drop_subscription(owner, f"notify-{resp.status}")

    def _invite_tx_timed_out(self, tx: InviteServerTransaction) -> None:
        log.info("non-2xx final to INVITE never acknowledged (Timer H)")

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

    def _end(self, call: Call, reason: str) -> None:
        if call.state == CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ok_data = None
        self._calls.pop(call.handle, None)
        self._dialogs.pop(call.dialog_key, None)
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
