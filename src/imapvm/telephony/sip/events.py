"""Events the UAS core hands to its driver (the asyncio layer or a test)."""

from __future__ import annotations

from dataclasses import dataclass

from ..sdp import NegotiatedMedia
from .kinds import EndReason
from .message import SipRequest
from .transaction import Address


@dataclass(frozen=True)
class IncomingCall:
    """A new INVITE the core accepted for processing; answer, ring or reject it by ``handle``.

    ``media`` is None when the INVITE carried no offer (we offer in the 200, RFC 3264 §5).
    """

    handle: str
    request: SipRequest
    source: Address
    media: NegotiatedMedia | None


@dataclass(frozen=True)
class CallConfirmed:
    """The ACK for our 2xx arrived: media may flow both ways."""

    handle: str


@dataclass(frozen=True)
class MediaUpdated:
    """A re-INVITE, UPDATE or late answer changed the remote media (hold, new address)."""

    handle: str
    media: NegotiatedMedia


@dataclass(frozen=True)
class DtmfReceived:
    """A digit signalled by SIP INFO (RFC 4733 digits come over RTP instead)."""

    handle: str
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class CallEnded:
    """The call is over, and why."""

    handle: str
    reason: EndReason


@dataclass(frozen=True)
class SubscriptionStarted:
    """A new message-summary subscription: send its first NOTIFY with ``SipCore.notify``."""

    handle: str
    mailbox: str | None
    account: str
    request: SipRequest
    source: Address


@dataclass(frozen=True)
class SubscriptionRefreshed:
    """A refresh: RFC 6665 wants a NOTIFY for it as well."""

    handle: str


@dataclass(frozen=True)
class SubscriptionEnded:
    """Unsubscribed, expired, or the subscriber is gone (481 or no answer to our NOTIFY)."""

    handle: str
    reason: str


@dataclass(frozen=True)
class TransferResult:
    """The final response to our REFER (202 = the phone will call the target; 408 = none)."""

    handle: str
    status: int


@dataclass(frozen=True)
class TransferProgress:
    """A NOTIFY about our REFER: the status line of the phone's call to the target."""

    handle: str
    status: int


@dataclass(frozen=True)
class PublishResult:
    """The answer to our PUBLISH (RFC 3903): ``etag`` and ``expires`` when it was accepted."""

    aor: str
    status: int
    etag: str | None
    expires: int
    min_expires: int | None = None


Event = (
    IncomingCall | CallConfirmed | MediaUpdated | DtmfReceived | CallEnded
    | SubscriptionStarted | SubscriptionRefreshed | SubscriptionEnded
    | TransferResult | TransferProgress | PublishResult
)
