"""SIP and tel URIs, name-addr values, Via values and header parameter lists (RFC 3261 §19, §25).

Values keep the text they were parsed from (``raw``) so that headers echoed back to a peer
(From, To, Via) are byte-for-byte what it sent; only what the UAS reasons about is parsed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from .errors import SipParseError

_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)


def is_token(text: str) -> bool:
    """RFC 3261 token: non-empty and only token characters."""
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=b;c`` → ``{"a": "b", "c": None}``; names are case-insensitive so lowercased.

    Quoted values keep their quotes off; escaped values stay escaped (callers unquote what they
    need, e.g. an RFC 4458 ``target``).
    """
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not is_token(name):
            raise SipParseError(f"bad parameter name {name!r}")
        if not sep:
            params[name] = None
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        params[name] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is outside double quotes and angle brackets."""
    if '"' not in text and "<" not in text:
        return text.split(sep)  # the common case, without a loop over every character
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, c in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
            continue
        if c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise SipParseError("unterminated quoted string")
    parts.append(text[start:])
    return parts


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value (Via, Contact, Route, ...) into its elements."""
    return [p.strip() for p in _split_outside_quotes(value, ",") if p.strip()]


def _parse_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SipParseError(f"bad port {text!r}")
    return int(text)


def parse_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → (host without brackets, port)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"bad IPv6 reference {text!r}")
        host = text[1:end]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise SipParseError(f"bad IPv6 address {host!r}") from exc
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 reference {text!r}")
        return host, _parse_port(rest[1:])
    host, sep, port = text.partition(":")
    if not host or not all(c.isalnum() or c in "-._" for c in host):
        raise SipParseError(f"bad host {host!r}")
    return host.lower(), (_parse_port(port) if sep else None)


def format_host(host: str) -> str:
    """Brackets around IPv6 literals, as URIs and Via need them."""
    return f"[{host}]" if ":" in host else host


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI. ``user`` is unescaped (``%2A97`` → ``*97``)."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    def __str__(self) -> str:
        if self.raw:
            return self.raw
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        user = f"{_escape_user(self.user)}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        hdrs = "&".join(f"{k}={v}" for k, v in self.headers.items())
        return (
            f"{self.scheme}:{user}{format_host(self.host)}{port}{format_params(self.params)}"
            + (f"?{hdrs}" if hdrs else "")
        )

    def param(self, name: str) -> str | None:
        """Unescaped parameter value (None when absent or valueless)."""
        value = self.params.get(name.lower())
        return unquote(value) if value is not None else None


_USER_UNRESERVED = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/"
)


def _escape_user(user: str) -> str:
    return "".join(c if c in _USER_UNRESERVED else "".join(f"%{b:02X}" for b in c.encode())
                   for c in user)


def parse_uri(text: str) -> SipUri:
    """Parse a URI; any scheme but sip/sips/tel raises with status 416."""
    raw = text.strip()
    scheme, sep, rest = raw.partition(":")
    scheme = scheme.lower()
    if not sep or not is_token(scheme):
        raise SipParseError(f"not a URI: {raw!r}")
    if scheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number:
            raise SipParseError("empty tel number")
        return SipUri("tel", unquote(number), "", None, parse_params(ptext), {}, raw)
    if scheme not in ("sip", "sips"):
        raise SipParseError(f"unsupported URI scheme {scheme!r}", status=416)
    rest, _, htext = rest.partition("?")
    user: str | None = None
    at = rest.find("@")
    semi = rest.find(";")
    if at >= 0 and (semi < 0 or at < semi or "=" not in rest[semi:at]):
        userinfo, rest = rest[:at], rest[at + 1 :]
        user = unquote(userinfo.partition(":")[0])
        if not user:
            raise SipParseError("empty user part")
    hostport, _, ptext = rest.partition(";")
    host, port = parse_hostport(hostport)
    headers: dict[str, str] = {}
    for item in htext.split("&") if htext else []:
        k, _, v = item.partition("=")
        headers[unquote(k)] = unquote(v)
    return SipUri(scheme, user, host, port, parse_params(ptext), headers, raw)


@dataclass(frozen=True)
class NameAddr:
    """``"Display" <uri>;params`` (From, To, Contact, Route, Diversion, P-Asserted-Identity)."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    raw: str = ""

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.raw:
            return self.raw
        disp = f'"{_quote(self.display)}" ' if self.display else ""
        return f"{disp}<{self.uri}>{format_params(self.params)}"

    def with_params(self, **params: str | None) -> NameAddr:
        merged = {**self.params, **params}
        raw = self.raw + format_params(params) if self.raw else ""
        return NameAddr(self.uri, self.display, merged, raw)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def parse_name_addr(text: str) -> NameAddr:
    raw = text.strip()
    s = raw
    display: str | None = None
    if s.startswith('"'):
        i, chars = 1, []
        while i < len(s):
            c = s[i]
            if c == "\\" and i + 1 < len(s):
                chars.append(s[i + 1])
                i += 2
                continue
            if c == '"':
                break
            chars.append(c)
            i += 1
        else:
            raise SipParseError("unterminated display name")
        display = "".join(chars)
        s = s[i + 1 :].lstrip()
        if not s.startswith("<"):
            raise SipParseError("display name without <uri>")
    lt = s.find("<")
    if lt >= 0:
        if display is None and s[:lt].strip():
            display = s[:lt].strip()
        gt = s.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <uri>")
        uri = parse_uri(s[lt + 1 : gt])
        params = parse_params(s[gt + 1 :])
    else:
        uritext, _, ptext = s.partition(";")
        uri = parse_uri(uritext)
        params = parse_params(ptext)
    return NameAddr(uri, display, params, raw)


@dataclass(frozen=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return format_host(self.host) + (f":{self.port}" if self.port else "")

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


_VIA_RE = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9.!%*_+`'~-]+)\s+(\S.*)$", re.S | re.I)


def parse_via(text: str) -> Via:
    match = _VIA_RE.match(text)
    if not match:
        raise SipParseError(f"bad Via {text!r}")
    hostport, _, ptext = match.group(2).partition(";")
    host, port = parse_hostport(hostport.replace(" ", "").replace("\t", ""))
    return Via(match.group(1).upper(), host, port, parse_params(ptext))
