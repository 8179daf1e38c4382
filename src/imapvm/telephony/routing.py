"""Which mailbox a SIP call is for, and whether the caller deposits or checks messages.

Sources, most specific first:
1. RFC 4458 voicemail URI: ``sip:voicemail@host;target=sip:alice%40host;cause=486``, where
   cause 486 (busy) picks the busy greeting and 408/480/487 (no answer, unavailable) the
   unavailable one.
2. History-Info (RFC 7044): the last entry whose URI has a ``cause`` parameter is the
   retargeting from the called user; the entry before it names that user.
3. Diversion (RFC 5806): the first value is the most recent diversion; ``reason=user-busy``
   picks the busy greeting.
4. The Request-URI user itself.
The language the call speaks comes from a ``language`` parameter of the Request-URI
(``sip:*97@imapvm;language=es``, for PBXs that know the caller's language), else the first
language of Accept-Language (RFC 3261 §20.3); without either, the mailbox decides.
Calls to a configured check-messages user (``*97``, ``vm``) are for checking messages; the
caller's own mailbox is then taken from P-Asserted-Identity, else From.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import unquote

from ..ivr.channel import CallerId, CallTarget
from .sip.errors import SipParseError
from .sip.message import SipRequest
from .sip.uri import SipUri, parse_name_addr, parse_uri

BUSY_CAUSES = frozenset({"486", "600"})
BUSY_DIVERSION_REASONS = frozenset({"user-busy"})


@dataclass(frozen=True)
class RoutingConfig:
    """How calls map to mailboxes (the lead maps imapvm.toml's [sip.routing] onto this).

    ``check_users``: Request-URI users that mean "check my messages".
    ``voicemail_users``: RFC 4458 service users whose ``target=`` names the mailbox; empty
    means any Request-URI carrying ``target=`` counts.
    ``strip_prefix``: removed from mailbox numbers (e.g. "+49" or a trunk prefix).
    """

    check_users: Sequence[str] = ("*97", "vm", "voicemail-check")
    voicemail_users: Sequence[str] = ()
    use_diversion: bool = True
    use_history_info: bool = True
    strip_prefix: Sequence[str] = field(default_factory=tuple)


def _user(uri: SipUri) -> str | None:
    return uri.user.split(";")[0] if uri.user else None


def _strip(config: RoutingConfig, mailbox: str | None) -> str | None:
    if mailbox is None:
        return None
    for prefix in config.strip_prefix:
        if prefix and mailbox.startswith(prefix):
            return mailbox[len(prefix) :]
    return mailbox


def caller_id(request: SipRequest) -> CallerId:
    """P-Asserted-Identity (set by a trusted PBX) wins over From, which the caller chose."""
    for value in [*request.headers.get_all("P-Asserted-Identity"), request.headers.get("From")]:
        if not value:
            continue
        try:
            addr = parse_name_addr(value)
        except SipParseError:
            continue
        if addr.uri.scheme in ("sip", "sips", "tel"):
            number = _user(addr.uri)
            if number and number.lower() not in ("anonymous", "unknown"):
                return CallerId(number, addr.display, str(addr.uri))
            return CallerId(None, addr.display, str(addr.uri))
    return CallerId(None)


def _greeting(cause: str | None) -> Literal["busy", "unavailable"] | None:
    if cause is None:
        return None
    return "busy" if cause in BUSY_CAUSES else "unavailable"


def _from_history_info(request: SipRequest) -> tuple[str, str | None] | None:
    entries = []
    for value in request.headers.get_all("History-Info"):
        try:
            entries.append(parse_name_addr(value))
        except SipParseError:
            continue
    for i in range(len(entries) - 1, 0, -1):
        cause = entries[i].uri.param("cause")
        if cause is not None:
            user = _user(entries[i - 1].uri)
            if user:
                return user, cause
    return None


def _from_diversion(request: SipRequest) -> tuple[str, Literal["busy", "unavailable"]] | None:
    values = request.headers.get_all("Diversion")
    if not values:
        return None
    try:
        addr = parse_name_addr(values[0])
    except SipParseError:
        return None
    user = _user(addr.uri)
    if not user:
        return None
    reason = (addr.params.get("reason") or "").strip('"').lower()
    return user, "busy" if reason in BUSY_DIVERSION_REASONS else "unavailable"


def call_language(request: SipRequest) -> str | None:
    """``language=`` on the Request-URI, else Accept-Language's most preferred tag."""
    try:
        asked = parse_uri(request.uri).param("language")
    except SipParseError:
        asked = None
    if asked:
        return asked.strip() or None
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate(",".join(request.headers.get_all("Accept-Language")).split(",")):
        tag, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if tag and tag != "*" and q > 0:
            ranked.append((-q, i, tag))
    return min(ranked)[2] if ranked else None


def resolve_target(request: SipRequest, config: RoutingConfig) -> CallTarget:
    """The CallTarget for an INVITE (never raises; an unroutable call has mailbox None)."""
    return replace(_resolve_target(request, config), language=call_language(request))


def _resolve_target(request: SipRequest, config: RoutingConfig) -> CallTarget:
    try:
        ruri = parse_uri(request.uri)
    except SipParseError:
        return CallTarget("deposit", None)
    dialed = _user(ruri)
    if dialed is not None and dialed in config.check_users:
        return CallTarget("check", _strip(config, caller_id(request).number), None, dialed)
    target = ruri.param("target")
    if target and (not config.voicemail_users or dialed in config.voicemail_users):
        cause = ruri.param("cause")
        try:
            mailbox = _user(parse_uri(unquote(target)))
        except SipParseError:
            mailbox = None
        if mailbox:
            return CallTarget("deposit", _strip(config, mailbox), _greeting(cause), dialed)
    if config.use_history_info:
        found = _from_history_info(request)
        if found:
            return CallTarget("deposit", _strip(config, found[0]), _greeting(found[1]), dialed)
    if config.use_diversion:
        diverted = _from_diversion(request)
        if diverted:
            return CallTarget("deposit", _strip(config, diverted[0]), diverted[1], dialed)
    return CallTarget("deposit", _strip(config, dialed), None, dialed)
