"""State and sending machinery shared by the UAS core and the notifier.

``CoreBase`` owns the transactions, dialogs and the outgoing queue, and knows how to answer a
request (§8.2.6, §18.2.2 with RFC 3581) and how to send a request inside a dialog through a
non-INVITE client transaction (§12.2.1). Call handling (``core.py``) and message-summary
subscriptions (``notifier.py``) build on it.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .digest import DigestAuth
from .errors import SipParseError
from .events import Event
from .message import DEFAULT_LIMITS, Headers, Limits, SipRequest, SipResponse
from .ratelimit import RateLimiter
from .transaction import (
    Address,
    NonInviteClientTransaction,
    Send,
    ServerTransaction,
    State,
    TimerConfig,
)
from .uri import format_host, is_ip_literal, parse_name_addr, parse_uri, parse_via

if TYPE_CHECKING:
    from .core import Call
    from .notifier import Subscription

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

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, SUBSCRIBE, NOTIFY, REGISTER"
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
    # the same for sources in ``trusted`` (higher: a PBX carries many callers)
    trusted_rate_limit: tuple[float, int] | None = None
    min_expires: int = 60  # message-summary subscriptions: shortest accepted
    max_expires: int = 3600  # and longest granted
    # REGISTER is accepted (phones such as baresip subscribe to message-summary only once
    # registered) but binds nothing: imapvm calls no phone. The 200 is held back this long,
    # because baresip 1.0.0 loops subscribing when it arrives before its MWI module is ready.
    register_delay: float = 0.2


@dataclass
class Pending:
    """What the core produced since the driver last collected it."""

    outgoing: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def new_tag() -> str:
    return secrets.token_hex(6)


class CoreBase:
    """Transactions, dialogs, counters and the outgoing queue; answering and sending."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self._server_txs: dict[tuple[str, ...], ServerTransaction] = {}
        self._client_txs: dict[tuple[str, ...], NonInviteClientTransaction] = {}
        self._calls: dict[str, Call] = {}
        self._dialogs: dict[tuple[str, str, str], Call] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._registers: list[tuple[float, ServerTransaction, SipRequest]] = []  # held REGISTERs
        self._sub_dialogs: dict[tuple[str, str, str], Subscription] = {}
        self._tx_owner: dict[tuple[str, ...], str] = {}  # NOTIFY transaction -> subscription
        self._refers: dict[tuple[str, ...], str] = {}  # REFER transaction -> call
        self._publishes: dict[tuple[str, ...], str] = {}  # PUBLISH transaction -> AOR
        self._out = Pending()
        # Operational counters: retransmissions sent and absorbed, input dropped or refused.
        self.stats: Counter[str] = Counter()
        self._limiter = RateLimiter(*config.rate_limit) if config.rate_limit else None
        self._trusted_limiter = (
            RateLimiter(*config.trusted_rate_limit) if config.trusted_rate_limit else None
        )

    def take_outgoing(self) -> list[Send]:
        out, self._out.outgoing = self._out.outgoing, []
        return out

    def take_events(self) -> list[Event]:
        events, self._out.events = self._out.events, []
        return events

    def _tx_key(self, req: SipRequest, method: str) -> tuple[str, ...]:
        via = req.vias[0]
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE):
            return (branch, via.sent_by, method)
        # RFC 2543 peers: no usable branch, fall back to the request's identity (§17.2.3).
        return (req.call_id, str(req.cseq[0]), req.from_addr.tag or "", via.sent_by, method)

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

