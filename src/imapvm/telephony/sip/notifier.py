"""The message-summary notifier (RFC 6665 subscriptions, RFC 3842 bodies, RFC 3903 PUBLISH).

Phones subscribe to their mailbox's ``message-summary``; the driver supplies the body (the
core knows nothing of message counts) through ``notify``. Refreshes, unsubscribes, expiry and
a subscriber that vanished (481 or no answer to a NOTIFY) are handled here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .base import MWI_CONTENT_TYPE, MWI_EVENT, CoreBase, new_tag
from .errors import SipParseError
from .events import PublishResult, SubscriptionEnded, SubscriptionRefreshed, SubscriptionStarted
from .message import SipRequest, SipResponse
from .transaction import Address, ServerTransaction
from .uri import format_host, parse_name_addr, parse_uri


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


class Notifier(CoreBase):
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
            "PUBLISH", secrets.token_hex(12) + "@imapvm", f"<{aor}>;tag={new_tag()}",
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


