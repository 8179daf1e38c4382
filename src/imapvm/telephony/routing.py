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

What Asterisk's dialplan gives ``VoiceMail()``/``VoiceMailMain()``/``VoiceMailPlayMsg()``
rides on the Request-URI (or, for PBXs that cannot add URI parameters, the same parameters in
an ``X-Imapvm-Options`` header): ``target`` repeated or ``&``-joined for several recipients,
each a URI or Asterisk's ``1234[@context]``; ``vm-context``; ``vm-opts`` (the option letters,
interpreted by ``ivr.dialplan``); ``vm-play`` (which message to play). See the README's
"Sending calls to imapvm".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import unquote

from ..channel import CallerId, CallTarget
from .sip.errors import SipParseError
from .sip.message import SipRequest
from .sip.uri import SipUri, parse_name_addr, parse_uri

log = logging.getLogger(__name__)

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


OPTIONS_HEADER = "X-Imapvm-Options"
_OUR_PARAMS = ("target", "cause", "vm-opts", "vm-context", "vm-play")


def _raw_uri_params(text: str) -> list[tuple[str, str]]:
    """The URI parameters in order, repeats kept (``parse_uri`` keeps the last of each)."""
    rest = text.partition(":")[2].partition("?")[0]
    at = rest.find("@")
    semi = rest.find(";")
    if at >= 0 and (semi < 0 or at < semi or "=" not in rest[semi:at]):
        rest = rest[at + 1 :]
    return _raw_params(rest.partition(";")[2])


def _raw_params(text: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split(";"):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name in _OUR_PARAMS:
            out.append((name, unquote(value.strip().strip('"'))))
    return out


@dataclass
class _VmParams:
    targets: list[tuple[str, str | None]] = field(default_factory=list)  # (mailbox, context)
    cause: str | None = None
    options: str = ""
    context: str | None = None
    play: str | None = None
    problems: list[str] = field(default_factory=list)


def _target_items(value: str) -> list[tuple[str, str | None]]:
    """One ``target`` value: a SIP/tel URI whose user is the mailbox, or Asterisk's
    ``1234[@context]``; several joined with ``&``."""
    out: list[tuple[str, str | None]] = []
    for item in (i.strip() for i in value.split("&")):
        if not item:
            continue
        if item.lower().startswith(("sip:", "sips:", "tel:")):
            try:
                user = _user(parse_uri(item))
            except SipParseError as exc:
                raise ValueError(f"target {item!r} is not a SIP URI ({exc})") from exc
            if not user:
                raise ValueError(f"target {item!r} names no mailbox")
            out.append((user, None))
        else:
            box, _, ctx = item.partition("@")
            if not box or not all(c.isalnum() or c in "-_.+*#" for c in box):
                raise ValueError(f"target {item!r} is not a mailbox (1234 or 1234@context)")
            out.append((box, ctx or None))
    return out


def _vm_params(pairs: list[tuple[str, str]], into: _VmParams) -> None:
    """Fold parameters into ``into``: targets add up, the first other value of each wins."""
    seen = set()
    for name, value in pairs:
        if name == "target":
            try:
                into.targets.extend(_target_items(value))
            except ValueError as exc:
                into.problems.append(str(exc))
            continue
        if name in seen:
            continue
        seen.add(name)
        if name == "cause" and into.cause is None:
            into.cause = value or None
        elif name == "vm-opts" and not into.options:
            into.options = value
        elif name == "vm-context" and into.context is None:
            into.context = value or None
        elif name == "vm-play" and into.play is None:
            into.play = value or None


def _header_params(request: SipRequest) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for value in request.headers.get_all(OPTIONS_HEADER):
        pairs.extend(_raw_params(value))
    return pairs


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


def resolve_target(request: SipRequest, config: RoutingConfig, trusted: bool = True
                   ) -> CallTarget:
    """The CallTarget for an INVITE (never raises; an unroutable call has mailbox None).

    ``trusted``: the INVITE came from a trusted network (the PBX). Only then are the
    VoiceMail() options (``vm-opts``, ``vm-play`` and the ``X-Imapvm-Options`` header)
    honoured: a phone that merely authenticated must not, say, skip another mailbox's password.
    Problems with our parameters are logged (one line each) and the call goes on without them.
    """
    return replace(_resolve_target(request, config, trusted), language=call_language(request))


def _resolve_target(request: SipRequest, config: RoutingConfig, trusted: bool) -> CallTarget:
    try:
        ruri = parse_uri(request.uri)
    except SipParseError:
        return CallTarget("deposit", None)
    dialed = _user(ruri)
    vm = _VmParams()
    uri_pairs = _raw_uri_params(request.uri)
    if config.voicemail_users and dialed not in config.voicemail_users:
        uri_pairs = [(n, v) for n, v in uri_pairs if n not in ("target", "cause")]
    if not trusted:
        dropped = {n for n, _ in uri_pairs if n in ("vm-opts", "vm-play")}
        if dropped or request.headers.get(OPTIONS_HEADER):
            log.warning("call from an untrusted source: ignoring %s",
                        ", ".join(sorted(dropped) or [OPTIONS_HEADER]))
        uri_pairs = [(n, v) for n, v in uri_pairs if n not in ("vm-opts", "vm-play")]
    _vm_params(uri_pairs, vm)
    if trusted:
        _vm_params(_header_params(request), vm)
    for problem in vm.problems:
        log.error("call for %s: %s; ignored", request.uri, problem)
    boxes = [(_strip(config, box) or box, ctx or vm.context) for box, ctx in vm.targets]
    extra = tuple(f"{b}@{c}" if c else b for b, c in boxes[1:])
    if dialed is not None and dialed in config.check_users:
        if boxes:
            box, ctx = boxes[0]
            return CallTarget("check", box, None, dialed, ctx, (), vm.options)
        return CallTarget("check", _strip(config, caller_id(request).number), None, dialed,
                          vm.context, (), vm.options)
    if boxes:
        box, ctx = boxes[0]
        purpose: Literal["deposit", "play"] = "play" if vm.play else "deposit"
        return CallTarget(purpose, box, _greeting(vm.cause), dialed, ctx, extra, vm.options,
                          vm.play)
    found: tuple[str | None, Literal["busy", "unavailable"] | None] | None = None
    if config.use_history_info:
        hi = _from_history_info(request)
        if hi:
            found = hi[0], _greeting(hi[1])
    if found is None and config.use_diversion:
        found = _from_diversion(request)
    if found is None:
        found = dialed, _greeting(vm.cause)
    mailbox = _strip(config, found[0])
    if vm.play:
        return CallTarget("play", mailbox, None, dialed, vm.context, (), vm.options, vm.play)
    return CallTarget("deposit", mailbox, found[1], dialed, vm.context, (), vm.options)
