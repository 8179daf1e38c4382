"""The message-summary notifier (RFC 6665 subscriptions, RFC 3842 bodies, RFC 3903 PUBLISH).

A component of the SIP core (it sends through the core's ``TransactionLayer``). Phones
subscribe to their mailbox's ``message-summary``; the driver supplies the body (the core
knows nothing of message counts) through ``notify``. Refreshes, unsubscribes, expiry and a
subscriber that vanished (481 or no answer to a NOTIFY) are handled here. Each subscription
has one entry in the core's timer heap (its expiry), and an index by mailbox makes the
fan-out of a lamp change cost the number of that mailbox's subscribers only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum

from .base import (
    MWI_CONTENT_TYPE,
    MWI_EVENT,
    CoreConfig,
    Pending,
    TimerKey,
    TransactionLayer,
    new_tag,
)
from .errors import SipParseError, SipStateError
from .events import PublishResult, SubscriptionEnded, SubscriptionRefreshed, SubscriptionStarted
from .kinds import SipTransport, TerminationReason
from .message import SipRequest, SipResponse
from .timers import TimerHeap
from .transaction import Address, ServerTransaction
from .uri import format_host, parse_name_addr, parse_uri


class SubscriptionState(Enum):
    ACTIVE = "active"
    FINAL = "final"  # unsubscribed or a one-off fetch (Expires: 0): the next NOTIFY ends it


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
    state: SubscriptionState = SubscriptionState.ACTIVE
    transport: SipTransport = "UDP"

    @property
    def dialog_key(self) -> tuple[str, str, str]:
        return (self.request.call_id, self.local_tag, self.remote_tag)


class Notifier:
    """Subscriptions by handle, by dialog and by mailbox; NOTIFY and PUBLISH sending."""

    def __init__(
        self, config: CoreConfig, transactions: TransactionLayer, out: Pending,
        timers: TimerHeap[TimerKey],
    ) -> None:
        self.config = config
        self._tx = transactions
        self._out = out
        self._timers = timers
        self.subscriptions: dict[str, Subscription] = {}
        self._by_dialog: dict[tuple[str, str, str], Subscription] = {}
        self._by_mailbox: dict[str | None, dict[str, Subscription]] = {}

    # ---- SUBSCRIBE (RFC 6665, RFC 3842) -------------------------------------------------
    def on_subscribe(
        self, req: SipRequest, tx: ServerTransaction, source: Address, now: float
    ) -> None:
        if req.to_addr.tag:
            self._refresh(req, tx, now)
        else:
            self._new(req, tx, source, now)

    def _expiry(self, req: SipRequest) -> int | None:
        """Granted expiry, or None when below the minimum (423)."""
        value = (req.headers.get("Expires") or "").strip()
        asked = int(value) if value.isdigit() and len(value) < 10 else self.config.max_expires
        if asked == 0:
            return 0
        if asked < self.config.min_expires:
            return None
        return min(asked, self.config.max_expires)

    def _acceptable(self, req: SipRequest, tx: ServerTransaction, now: float) -> int | None:
        """The expiry to grant, or None after answering 489 or 423."""
        event = (req.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != MWI_EVENT:
            self._tx.respond(tx, req, 489, now, extra=[("Allow-Events", MWI_EVENT)])
            return None
        expires = self._expiry(req)
        if expires is None:
            self._tx.respond(tx, req, 423, now,
                             extra=[("Min-Expires", str(self.config.min_expires))])
        return expires

    def _new(self, req: SipRequest, tx: ServerTransaction, source: Address, now: float) -> None:
        expires = self._acceptable(req, tx, now)
        if expires is None:
            return
        contacts = req.headers.get_all("Contact")
        try:
            remote_target = str(parse_name_addr(contacts[0]).uri) if contacts else ""
            ruri = parse_uri(req.uri)
        except SipParseError:
            remote_target = ""
        if not remote_target:
            self._tx.respond(tx, req, 400, now, reason="Missing or bad Contact")
            return
        local_tag = new_tag()
        sub = Subscription(
            handle=local_tag, request=req, source=source, local_tag=local_tag,
            remote_tag=req.from_addr.tag or "", remote_target=remote_target,
            route_set=req.headers.get_all("Record-Route"),
            mailbox=ruri.user.split(";")[0] if ruri.user else None,
            account=f"{ruri.scheme}:{ruri.user}@{format_host(ruri.host)}" if ruri.user
            else str(ruri),
            expires_at=now + expires, remote_cseq=req.cseq[0], transport=tx.transport,
        )
        self._tx.respond(tx, req, 200, now, to_tag=local_tag, contact=True,
                         extra=[("Expires", str(expires))])
        self.subscriptions[sub.handle] = sub
        self._by_dialog[sub.dialog_key] = sub
        self._by_mailbox.setdefault(sub.mailbox, {})[sub.handle] = sub
        self._timers.schedule(("sub", (sub.handle,)), sub.expires_at)
        self._out.events.append(SubscriptionStarted(sub.handle, sub.mailbox, sub.account, req,
                                                    source))
        if expires == 0:
            sub.state = SubscriptionState.FINAL  # a one-off fetch: the first NOTIFY ends it

    def _refresh(self, req: SipRequest, tx: ServerTransaction, now: float) -> None:
        sub = self._by_dialog.get((req.call_id, req.to_addr.tag or "", req.from_addr.tag or ""))
        if sub is None:
            self._tx.respond(tx, req, 481, now)
            return
        expires = self._acceptable(req, tx, now)
        if expires is None:
            return
        sub.remote_cseq = max(sub.remote_cseq, req.cseq[0])
        self._tx.respond(tx, req, 200, now, contact=True, extra=[("Expires", str(expires))])
        sub.expires_at = now + expires
        self._timers.schedule(("sub", (sub.handle,)), sub.expires_at)
        if expires == 0:
            sub.state = SubscriptionState.FINAL
        self._out.events.append(SubscriptionRefreshed(sub.handle))

    def on_timer(self, handle: str, now: float) -> None:
        sub = self.subscriptions.get(handle)
        if sub is None:
            return
        if now >= sub.expires_at:
            self._terminate(sub, now, "timeout")
        else:
            self._timers.schedule(("sub", (handle,)), sub.expires_at)

    # ---- NOTIFY -------------------------------------------------------------------------
    def notify(self, handle: str, body: bytes, now: float) -> None:
        """Send a message-summary NOTIFY in a subscription (its state comes from the core).

        Raises ``SipStateError`` when the subscription has ended."""
        sub = self.subscriptions.get(handle)
        if sub is None:
            raise SipStateError(f"subscription {handle} has ended")
        if sub.state == SubscriptionState.FINAL:
            self._terminate(sub, now, None, body)
            return
        remaining = max(0, int(sub.expires_at - now))
        self._send_notify(sub, f"active;expires={remaining}", body, now)

    def end_all(self, now: float, reason: TerminationReason = "deactivated") -> None:
        """Final NOTIFY to every subscriber (shutdown): with ``deactivated`` phones
        re-subscribe at once, reaching another node if there is one (RFC 6665 §4.1.3)."""
        for sub in list(self.subscriptions.values()):
            self._terminate(sub, now, reason)

    def for_mailbox(self, mailbox: str) -> list[str]:
        return list(self._by_mailbox.get(mailbox, {}))

    def _send_notify(self, sub: Subscription, state: str, body: bytes, now: float) -> None:
        sub.local_cseq += 1
        local = sub.request.to_addr
        handle = sub.handle

        def answered(status: int, _resp: SipResponse | None) -> None:
            if status in (404, 410, 481, 489, 408, 500, 503):
                self._drop(handle, "notify-timeout" if _resp is None else f"notify-{status}")

        self._tx.send_in_dialog(
            "NOTIFY", sub.request.call_id,
            str(local) if local.tag else f"{local};tag={sub.local_tag}",
            sub.request.headers.get("From") or "", sub.remote_target, sub.route_set,
            sub.source, sub.local_cseq, now,
            extra=[("Event", MWI_EVENT), ("Subscription-State", state)],
            body=body, content_type=MWI_CONTENT_TYPE, transport=sub.transport,
            on_final=answered,
        )

    def _terminate(
        self, sub: Subscription, now: float, reason: TerminationReason | None, body: bytes = b""
    ) -> None:
        state = "terminated" + (f";reason={reason}" if reason else "")
        self._send_notify(sub, state, body, now)
        self._drop(sub.handle, reason or "unsubscribed")

    def _drop(self, handle: str, reason: str) -> None:
        sub = self.subscriptions.pop(handle, None)
        if sub is None:
            return
        self._by_dialog.pop(sub.dialog_key, None)
        same = self._by_mailbox.get(sub.mailbox)
        if same is not None:
            same.pop(handle, None)
            if not same:
                del self._by_mailbox[sub.mailbox]
        self._timers.cancel(("sub", (handle,)))
        self._out.events.append(SubscriptionEnded(handle, reason))

    # ---- PUBLISH and unsolicited NOTIFY -------------------------------------------------
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

        def answered(status: int, resp: SipResponse | None) -> None:
            self._out.events.append(
                publish_result(aor, resp) if resp is not None
                else PublishResult(aor, status, None, 0)
            )

        self._tx.send_in_dialog(
            "PUBLISH", secrets.token_hex(12) + "@imapvm", f"<{aor}>;tag={new_tag()}",
            f"<{aor}>", aor, [], address, 1, now, extra=extra, body=body,
            content_type=MWI_CONTENT_TYPE, on_final=answered,
        )

    def send_unsolicited_notify(
        self, target: str, address: Address, body: bytes, now: float
    ) -> None:
        """Out-of-dialog message-summary NOTIFY for phones configured without SUBSCRIBE."""
        self._tx.send_in_dialog(
            "NOTIFY", secrets.token_hex(12) + "@imapvm", f"<{self._tx.contact_uri()}>;tag="
            + new_tag(), f"<{target}>", target, [], address, 1, now,
            extra=[("Event", MWI_EVENT), ("Subscription-State", "active")],
            body=body, content_type=MWI_CONTENT_TYPE,
        )


def publish_result(aor: str, resp: SipResponse) -> PublishResult:
    expires = (resp.headers.get("Expires") or "").strip()
    min_expires = (resp.headers.get("Min-Expires") or "").strip()
    return PublishResult(
        aor, resp.status, resp.headers.get("SIP-ETag"),
        int(expires) if expires.isdigit() and len(expires) < 10 else 0,
        int(min_expires) if min_expires.isdigit() and len(min_expires) < 10 else None,
    )
