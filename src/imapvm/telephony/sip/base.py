"""The transaction layer the UAS core and the notifier share, and the core's configuration.

The SIP core is composed of parts that each own their state (no shared dicts, no
inheritance):

- ``TransactionLayer`` (here): the server and client transactions, answering a request
  (§8.2.6, §18.2.2 with RFC 3581) and sending a request in a dialog through a non-INVITE
  client transaction (§12.2.1), whose final answer goes to the callback its sender gave;
- ``Notifier`` (``notifier.py``): message-summary subscriptions;
- ``Dialog`` (``dialog.py``): the explicit state machine of a call's dialog;
- ``SipCore`` (``core.py``): the request dispatch, calls and the driver interface.

They share the ``Pending`` output (datagrams and events for the driver) and one
``TimerHeap`` (``timers.py``) whose keys name the part that owns them.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..sdp import SrtpPolicy
from .digest import DigestAuth
from .errors import SipParseError
from .events import Event
from .kinds import SipTransport
from .message import DEFAULT_LIMITS, Headers, Limits, SipRequest, SipResponse
from .timers import TimerHeap
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
from .uri import format_host, is_ip_literal, parse_name_addr, parse_uri, parse_via

REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 302: "Moved Temporarily",
    202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 423: "Interval Too Brief",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    422: "Session Interval Too Small",
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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreConfig:
    """What the core needs to know about itself.

    ``trusted``: None admits every source; otherwise sources outside these networks must pass
    digest authentication (``auth``) or get 403.
    """

    local_host: str
    local_port: int
    tls_port: int | None = None  # where we take SIP over TLS (Contact and Via of TLS dialogs)
    user_agent: str = "imapvm"
    codecs: tuple[str, ...] = ("G722", "PCMU", "PCMA")
    # RFC 4028 session timers: the interval granted to a caller that supports timers but asks
    # for none (0: none), and the shortest accepted (shorter requests get 422 with Min-SE)
    session_expires: int = 1800
    min_se: int = 90
    srtp: SrtpPolicy = "optional"  # RTP/SAVP with SDES: "optional", "required" or "off"
    sdes_in_clear: bool = False  # accept SDES keys over plain UDP/TCP (they travel in clear)
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


TxKey = tuple[str, ...]
# A timer's owner: ("server" | "client", transaction key), ("ack" | "sub", (handle,)) or
# ("register", (number,)).
TimerKey = tuple[str, TxKey]
# Called once with the final status of a request we sent and the response (None when it
# timed out: status 408).
FinalHandler = Callable[[int, SipResponse | None], None]


class TransactionLayer:
    """Server and client transactions: answering requests and sending in-dialog requests."""

    def __init__(
        self, config: CoreConfig, out: Pending, timers: TimerHeap[TimerKey],
        stats: Counter[str],
    ) -> None:
        self.config = config
        self._out = out
        self._timers = timers
        self._stats = stats
        self.server: dict[TxKey, ServerTransaction] = {}
        self.client: dict[TxKey, NonInviteClientTransaction] = {}
        self._on_final: dict[TxKey, FinalHandler] = {}

    def tx_key(self, req: SipRequest, method: str) -> TxKey:
        via = req.vias[0]
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE):
            return (branch, via.sent_by, method)
        # RFC 2543 peers: no usable branch, fall back to the request's identity (§17.2.3).
        return (req.call_id, str(req.cseq[0]), req.from_addr.tag or "", via.sent_by, method)

    # ---- server transactions ------------------------------------------------------------
    def find_server(self, req: SipRequest, method: str) -> ServerTransaction | None:
        return self.server.get(self.tx_key(req, method))

    def new_server(
        self, req: SipRequest, method: str, source: Address, transport: SipTransport
    ) -> ServerTransaction:
        key = self.tx_key(req, method)
        address = self.response_address(req, source, transport)
        tx: ServerTransaction
        if method == "INVITE":
            tx = InviteServerTransaction(key, self.config.timers, State.PROCEEDING, address,
                                         transport=transport)
        else:
            tx = NonInviteServerTransaction(key, self.config.timers, State.TRYING, address,
                                            transport=transport)
        self.server[key] = tx
        return tx

    def absorb(self, tx: ServerTransaction) -> None:
        """A retransmitted request: the transaction answers it again if it has answered."""
        self._stats["absorbed_retransmissions"] += 1
        self._out.outgoing += tx.on_request_retransmission()

    def ack_non_2xx(self, tx: InviteServerTransaction, now: float) -> None:
        tx.on_ack(now)
        self._timers.schedule(("server", tx.key), tx.deadline())

    def on_timer(self, kind: str, key: TxKey, now: float) -> None:
        """A transaction's deadline passed (``kind`` "server" or "client")."""
        if kind == "server":
            stx = self.server.get(key)
            if stx is None:
                return
            self._out.outgoing += stx.on_timer(now)
            if stx.state != State.TERMINATED:
                self._timers.schedule(("server", key), stx.deadline())
                return
            del self.server[key]
            if isinstance(stx, InviteServerTransaction) and stx.timed_out:
                log.info("non-2xx final to INVITE never acknowledged (Timer H)")
            return
        ctx = self.client.get(key)
        if ctx is None:
            return
        self._out.outgoing += ctx.on_timer(now)
        if ctx.state != State.TERMINATED:
            self._timers.schedule(("client", key), ctx.deadline())
            return
        del self.client[key]
        handler = self._on_final.pop(key, None)
        if handler is not None and ctx.timed_out:
            handler(408, None)

    def on_response(self, resp: SipResponse, now: float) -> None:
        try:
            via = resp.vias[0]
        except (SipParseError, IndexError):
            return
        key = (via.branch or "", resp.cseq[1])
        tx = self.client.get(key)
        if tx is None or not tx.on_response(resp.status, now):
            return
        self._timers.schedule(("client", key), tx.deadline())
        handler = self._on_final.pop(key, None)
        if handler is not None:
            handler(resp.status, resp)

    # ---- sending ----------------------------------------------------------------------
    def response_address(
        self, req: SipRequest, source: Address, transport: SipTransport = "UDP"
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
        transport: SipTransport = "UDP",
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
            headers.add("Contact", f"<{self.contact_uri(transport)}>")
        headers.add("Server", self.config.user_agent)
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", "application/sdp")
        resp = SipResponse(headers=headers, body=body, status=status,
                           reason=reason or REASONS.get(status, "Unknown"))
        return resp.serialize()

    def respond(
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
        self._timers.schedule(("server", tx.key), tx.deadline())
        return data

    def respond_stateless(
        self, req: SipRequest, source: Address, status: int, reason: str | None,
        transport: SipTransport = "UDP", extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        h = req.headers
        if not (h.get("From") and h.get("To") and req.call_id and req.cseq[0]):
            return  # a response without these would be as malformed as the request
        try:
            address = self.response_address(req, source, transport)
            data = self._build_response(req, source, status, reason, extra=extra,
                                        transport=transport)
        except (SipParseError, IndexError):
            return  # not even a Via to answer to
        self._out.outgoing.append(Send(data, address, transport))

    def local_port_for(self, transport: SipTransport) -> int:
        if transport == "TLS" and self.config.tls_port is not None:
            return self.config.tls_port
        return self.config.local_port

    def contact_uri(self, transport: SipTransport = "UDP") -> str:
        param = "" if transport == "UDP" else f";transport={transport.lower()}"
        return (f"sip:imapvm@{format_host(self.config.local_host)}:"
                f"{self.local_port_for(transport)}" + param)

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

    def send_in_dialog(
        self, method: str, call_id: str, local: str, remote: str, remote_target: str,
        route_set: list[str], source: Address, cseq: int, now: float,
        extra: Iterable[tuple[str, str]] = (), body: bytes = b"", content_type: str = "",
        transport: SipTransport = "UDP", on_final: FinalHandler | None = None,
    ) -> TxKey:
        """Send a request inside a dialog through a non-INVITE client transaction.

        Over TCP it goes back on the connection the dialog came in on (``source``).
        ``on_final`` hears the final status once (408 and no response when it timed out).
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
                    f"{format_host(self.config.local_host)}:{self.local_port_for(transport)}"
                    f";branch={branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", local)
        headers.add("To", remote)
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{cseq} {method}")
        for route in routes:
            headers.add("Route", route)
        headers.add("Contact", f"<{self.contact_uri(transport)}>")
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
        self.client[tx.key] = tx
        if on_final is not None:
            self._on_final[tx.key] = on_final
        self._out.outgoing += tx.start(now)
        self._timers.schedule(("client", tx.key), tx.deadline())
        return tx.key

