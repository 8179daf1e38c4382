"""SIP message model, parser and serializer (RFC 3261 §7, §20).

``parse_message`` turns one datagram (or one framed stream message) into a ``SipRequest`` or
``SipResponse`` and raises only ``SipParseError``: a request good enough to answer comes back
as the error's ``partial`` so the core can send a 400 (or 416/505); anything worse is dropped.
Limits are enforced before any work that scales with the input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import SipParseError
from .uri import NameAddr, Via, is_token, parse_name_addr, parse_uri, parse_via, split_header_values

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info",
    "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip

_CANONICAL = {
    name.lower(): name
    for name in [
        *COMPACT_FORMS.values(), "Accept", "Allow", "Authorization", "CSeq", "Diversion",
        "Expires", "History-Info", "Max-Forwards", "Min-Expires", "Min-SE", "Organization",
        "P-Asserted-Identity", "P-Preferred-Identity", "Priority", "Proxy-Authorization",
        "Proxy-Require", "Reason", "Record-Route", "Require", "Retry-After", "Route", "Server",
        "Subscription-State", "Timestamp", "Unsupported", "User-Agent", "Warning",
        "WWW-Authenticate", "Proxy-Authenticate", "Date", "Accept-Encoding", "Accept-Language",
    ]
}  # fmt: skip
_CANONICAL["call-id"] = "Call-ID"
_CANONICAL["cseq"] = "CSeq"
_CANONICAL["www-authenticate"] = "WWW-Authenticate"
_CANONICAL["sip-etag"] = "SIP-ETag"
_CANONICAL["sip-if-match"] = "SIP-If-Match"

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1). Authorization-style headers
# and Date contain commas that are not separators, so only these are ever split.
LIST_HEADERS = frozenset(
    name.lower()
    for name in [
        "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "Content-Encoding", "Allow-Events", "Diversion", "History-Info", "P-Asserted-Identity",
        "Warning", "Reason",
    ]
)  # fmt: skip

SIP_VERSION = "SIP/2.0"


@functools.lru_cache(maxsize=512)  # peers send a few dozen names; the bound stops a flood
def canonical_name(name: str) -> str:
    """Full, conventionally capitalised header name (compact forms expanded)."""
    low = name.lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low]
    return _CANONICAL.get(low) or "-".join(p.capitalize() for p in name.split("-"))


@dataclass(frozen=True)
class Limits:
    """Bounds on what the parser accepts; anything larger is refused before parsing."""

    max_message_bytes: int = 65535
    max_headers: int = 128
    max_header_bytes: int = 8192
    max_list_elements: int = 64


DEFAULT_LIMITS = Limits()


class Headers:
    """Ordered, case-insensitive, repeatable header fields; names stored in canonical form."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one (at the position of the first)."""
        canon = canonical_name(name)
        for i, (n, _) in enumerate(self._items):
            if n == canon:
                self._items[i] = (canon, value)
                self._items = [
                    item for j, item in enumerate(self._items) if j <= i or item[0] != canon
                ]
                return
        self._items.append((canon, value))

    def remove(self, name: str) -> None:
        canon = canonical_name(name)
        self._items = [item for item in self._items if item[0] != canon]

    def raw(self, name: str) -> list[str]:
        """Field values exactly as received, one per header line."""
        canon = canonical_name(name)
        return [v for n, v in self._items if n == canon]

    def get_all(self, name: str) -> list[str]:
        """All values, list headers split on their commas."""
        values = self.raw(name)
        if canonical_name(name).lower() in LIST_HEADERS:
            return [e for v in values for e in split_header_values(v)]
        return values

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return values[0] if values else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.raw(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h


@dataclass
class _Message:
    """A parsed or built message. The header views below are parsed once, on first use (the
    core reads To, Via and CSeq several times per request): a message's headers are never
    changed after it was parsed or built (``_as_invite`` copies them first)."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @functools.cached_property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @functools.cached_property
    def cseq(self) -> tuple[int, str]:
        """(number, method); (0, "") when absent or unreadable (rejected for requests)."""
        return parse_cseq(self.headers.get("CSeq") or "")

    @functools.cached_property
    def from_addr(self) -> NameAddr:
        return parse_name_addr(self.headers.get("From") or "")

    @functools.cached_property
    def to_addr(self) -> NameAddr:
        return parse_name_addr(self.headers.get("To") or "")

    @functools.cached_property
    def vias(self) -> tuple[Via, ...]:
        return tuple(parse_via(v) for v in self.headers.get_all("Via"))

    @functools.cached_property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _head_and_body(self, start: str) -> bytes:
        lines = [start]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class SipRequest(_Message):
    method: str = ""
    uri: str = ""

    def serialize(self) -> bytes:
        return self._head_and_body(f"{self.method} {self.uri} {SIP_VERSION}")


@dataclass
class SipResponse(_Message):
    status: int = 0
    reason: str = ""

    def serialize(self) -> bytes:
        return self._head_and_body(f"{SIP_VERSION} {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        return 0, ""
    number = int(parts[0])
    if number >= 2**31 or not is_token(parts[1]):
        return 0, ""
    return number, parts[1]


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    return data, b""


def _header_lines(head: bytes, limits: Limits) -> tuple[list[str], str | None, int]:
    """Unfolded lines, and the first problem with the status it deserves (400, or 513 for
    what exceeds the limits). Lines are kept (truncated, or with NUL replaced) so the
    request can still be answered: RFC 4475 wants an answer, not silence."""
    problem: str | None = None
    status = 400
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("utf-8", "replace")
        problem = "header section is not UTF-8"
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
        problem = problem or "NUL in header section"
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if len(line) > limits.max_header_bytes:
            if problem is None:
                problem, status = "header line too long", 513
            if lines:  # the start line stays whole (the message size bounds it)
                line = line[: limits.max_header_bytes]
        if line[:1] in (" ", "\t") and len(lines) > 1:
            lines[-1] = lines[-1].rstrip() + " " + line.strip()  # folded continuation
            if len(lines[-1]) > limits.max_header_bytes:
                if problem is None:
                    problem, status = "header line too long", 513
                lines[-1] = lines[-1][: limits.max_header_bytes]
        else:
            lines.append(line)
        if len(lines) - 1 > limits.max_headers:
            if problem is None:
                problem, status = "too many headers", 513
            lines.pop()
            break
    return lines, problem, status


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SipMessage | None:
    """Parse one message. None for keep-alive CRLFs; ``SipParseError`` for anything unusable."""
    status = 400
    problem: str | None = None
    if len(data) > limits.max_message_bytes:
        # Read what fits, so the request can be answered 513 (RFC 4475 §3.1.2.? oversize).
        data, problem, status = data[: limits.max_message_bytes], "message too large", 513
    data = data.lstrip(b"\r\n")
    if not data:
        return None
    head, body = _split_head(data)
    lines, line_problem, line_status = _header_lines(head, limits)
    if problem is None and line_problem is not None:
        problem, status = line_problem, line_status
    msg = _parse_start_line(lines[0])
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not is_token(name):
            problem = problem or f"bad header line {line[:40]!r}"
            continue
        msg.headers.add(name, value.strip())
    if problem is None:
        problem = _check_lists(msg, limits)
    lengths = {v.strip() for v in msg.headers.raw("Content-Length")}
    length_text = msg.headers.get("Content-Length")
    if len(lengths) > 1:
        problem = problem or "conflicting Content-Length headers"
    elif length_text is not None:
        if not length_text.isascii() or not length_text.isdigit() or len(length_text) > 9:
            problem = problem or "bad Content-Length"
        elif int(length_text) > len(body):
            problem = problem or "Content-Length larger than the body"
        else:
            body = body[: int(length_text)]
    msg.body = body
    if isinstance(msg, SipRequest):
        if problem is None:
            problem = _check_request(msg)
        elif _check_request(msg) is not None:
            status = 400  # not even answerable as what it claims to be
        if problem:
            raise SipParseError(problem, status=status, partial=msg)
    elif problem or not msg.headers.get("Via") or not msg.cseq[0]:
        raise SipParseError(problem or "response without Via or CSeq")
    return msg


def _parse_start_line(line: str) -> SipMessage:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] != SIP_VERSION:
            raise SipParseError("bad status line")
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError("bad status code")
        return SipResponse(status=int(code), reason=parts[2] if len(parts) > 2 else "")
    parts = line.split(" ")
    if len(parts) != 3 or not is_token(parts[0]) or not parts[1]:
        words = line.split()
        if len(words) >= 3 and is_token(words[0]) and words[-1] == SIP_VERSION:
            # White space inside or around the Request-URI (RFC 4475 §3.1.2.6-8): still a
            # request, answered 400 once its headers are read.
            req = SipRequest(method=words[0], uri=" ".join(words[1:-1]))
            req.headers.add(_BAD_LINE, "1")
            return req
        raise SipParseError("bad request line")
    req = SipRequest(method=parts[0], uri=parts[1])
    if parts[2] != SIP_VERSION:
        # Answerable: keep the method and let the core send 505 once headers are read.
        req.headers.add("X-Imapvm-Bad-Version", parts[2][:20])
    return req


_BAD_LINE = "X-Imapvm-Bad-Request-Line"


def _check_lists(msg: SipMessage, limits: Limits) -> str | None:
    for name in ("Via", "Route", "Record-Route", "Contact"):
        if len(msg.headers.get_all(name)) > limits.max_list_elements:
            return f"too many {name} elements"
    return None


def _check_request(req: SipRequest) -> str | None:
    """Semantic checks; returns a reason for a 400 or None (Request-URI: request_uri_error)."""
    h = req.headers
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if not h.get(name):
            return f"missing {name}"
    if _BAD_LINE in h:
        return "bad request line (white space in or around the Request-URI)"
    if any(len(h.raw(name)) > 1 for name in ("Call-ID", "CSeq", "From", "To", "Max-Forwards")):
        return "repeated Call-ID, CSeq, From, To or Max-Forwards"
    number, method = req.cseq
    if not number and method == "":
        return "bad CSeq"
    if method != req.method:
        return "CSeq method does not match the request method"
    mf = h.get("Max-Forwards")
    if mf is not None and (not mf.isdigit() or int(mf) > 255):
        return "bad Max-Forwards"
    try:
        req.vias  # noqa: B018 - parse for validation
        req.from_addr  # noqa: B018
        req.to_addr  # noqa: B018
    except SipParseError as exc:
        return str(exc)
    return None


def request_uri_error(req: SipRequest) -> SipParseError | None:
    """416 for an unsupported Request-URI scheme, 505 for a wrong SIP version, else None."""
    if "X-Imapvm-Bad-Version" in req.headers:
        return SipParseError("SIP version not supported", status=505, partial=req)
    try:
        parse_uri(req.uri)
    except SipParseError as exc:
        return SipParseError(str(exc), status=exc.status, partial=req)
    return None
