"""Sans-I/O IMAP4rev1 client protocol: frames and parses server responses, serialises commands.

No sockets and no clocks here (DESIGN.md, "sans-I/O protocol cores"): `ResponseFramer.feed()`
takes bytes as they arrive and returns complete responses; `parse_response()` turns one into a
`Response`; `encode_command()` turns a command into the byte chunks to send, split where a
synchronising literal must wait for the server's continuation.

Values are kept close to the wire: atoms and strings are `bytes`, NIL is `None`, parenthesised
lists are Python lists. Consumers (FETCH, STATUS, ESEARCH, ... in `responses.py`) interpret them.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_LINE = 1 << 20  # a response line (not counting literals) longer than this is hostile
MAX_LITERAL = 256 << 20  # voicemail over 128 MiB is refused long before this


class ProtocolError(Exception):
    """The server sent something that is not IMAP; the connection cannot continue."""


Value = bytes | None | list["Value"]
ResponseKind = typing.Literal["tagged", "untagged", "continuation"]
Status = typing.Literal["OK", "NO", "BAD", "PREAUTH", "BYE", ""]


@dataclass(frozen=True)
class Response:
    """One complete server response.

    kind: tagged (completes a command), untagged (data or status) or continuation ("+").
    For tagged and untagged status responses (OK/NO/BAD/PREAUTH/BYE) `status` is set and
    `code`/`code_args`/`text` carry the response code and human text; for untagged data
    (`* 3 EXISTS`, `* FETCH ...`, `* LIST ...`) `name` is the upper-cased data name, `number` the
    leading number if any, and `values` the parsed rest.
    """

    kind: ResponseKind
    tag: bytes = b""
    status: Status = ""
    code: str = ""
    code_args: list[Value] = field(default_factory=list)
    text: str = ""
    name: str = ""
    number: int | None = None
    values: list[Value] = field(default_factory=list)
    raw: bytes = b""


_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}$")
_STATUS: dict[bytes, Status] = {b"OK": "OK", b"NO": "NO", b"BAD": "BAD", b"PREAUTH": "PREAUTH",
                                b"BYE": "BYE"}


class ResponseFramer:
    """Splits the byte stream into whole responses (a line plus any literals it announces)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._parts: list[bytes] = []  # pieces of the response being assembled
        self._need_literal: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._need_literal is not None:
                if len(self._buf) < self._need_literal:
                    return out
                self._parts.append(bytes(self._buf[: self._need_literal]))
                del self._buf[: self._need_literal]
                self._need_literal = None
            idx = self._buf.find(b"\r\n")
            if idx < 0:
                if len(self._buf) > MAX_LINE:
                    raise ProtocolError("response line too long")
                return out
            line = bytes(self._buf[:idx])
            del self._buf[: idx + 2]
            m = _LITERAL_AT_END.search(line)
            if m:
                size = int(m.group(1))
                if size > MAX_LITERAL:
                    raise ProtocolError(f"literal of {size} bytes is too large")
                self._parts.append(line + b"\r\n")
                self._need_literal = size
                continue
            self._parts.append(line)
            out.append(b"".join(self._parts))
            self._parts = []


class _Tokens:
    """A cursor over one framed response."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def skip_space(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] == 0x20:
            self.pos += 1

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def rest(self) -> bytes:
        r = self.data[self.pos :]
        self.pos = len(self.data)
        return r

    def word(self) -> bytes:
        """Up to the next space (for tags and the response name)."""
        end = self.data.find(b" ", self.pos)
        if end < 0:
            end = len(self.data)
        w = self.data[self.pos : end]
        self.pos = end
        return w

    def value(self) -> Value:
        self.skip_space()
        c = self.peek()
        if c == -1:
            raise ProtocolError("unexpected end of response")
        if c == 0x28:  # (
            return self.plist(0x29)
        if c == 0x22:  # "
            return self.quoted()
        if c == 0x7B or (c == 0x7E and self.data[self.pos + 1 : self.pos + 2] == b"{"):
            return self.literal()
        return self.atom()

    def plist(self, close: int) -> list[Value]:
        self.pos += 1
        items: list[Value] = []
        while True:
            self.skip_space()
            c = self.peek()
            if c == -1:
                raise ProtocolError("unterminated list")
            if c == close:
                self.pos += 1
                return items
            items.append(self.value())

    def quoted(self) -> bytes:
        self.pos += 1
        out = bytearray()
        while True:
            if self.pos >= len(self.data):
                raise ProtocolError("unterminated quoted string")
            c = self.data[self.pos]
            if c == 0x5C:  # backslash
                self.pos += 1
                if self.pos >= len(self.data):
                    raise ProtocolError("unterminated quoted string")
                out.append(self.data[self.pos])
            elif c == 0x22:
                self.pos += 1
                return bytes(out)
            else:
                out.append(c)
            self.pos += 1

    def literal(self) -> bytes:
        if self.peek() == 0x7E:
            self.pos += 1
        end = self.data.find(b"}\r\n", self.pos)
        if end < 0:
            raise ProtocolError("bad literal")
        size_text = self.data[self.pos + 1 : end].rstrip(b"+")
        if not size_text.isdigit():
            raise ProtocolError("bad literal size")
        size = int(size_text)
        start = end + 3
        if start + size > len(self.data):
            raise ProtocolError("truncated literal")
        self.pos = start + size
        return self.data[start : self.pos]

    def atom(self) -> Value:
        """An atom; `BODY[HEADER.FIELDS (A B)]<0>` is one atom although it holds spaces."""
        start = self.pos
        data = self.data
        while True:
            m = _ATOM_RUN.match(data, self.pos)
            self.pos = m.end() if m else self.pos
            if self.pos < len(data) and data[self.pos] == 0x5B:  # [ ... ] may hold spaces
                close = data.find(b"]", self.pos)
                if close < 0:
                    self.pos = len(data)
                    break
                self.pos = close + 1
                continue
            break
        word = data[start : self.pos]
        if not word:
            raise ProtocolError(f"unexpected byte {data[self.pos:self.pos+1]!r}")
        return None if word.upper() == b"NIL" else word


_ATOM_RUN = re.compile(rb"[^ ()\r\n\[]+")


def parse_response(data: bytes) -> Response:
    """Parse one framed response (as returned by `ResponseFramer.feed`)."""
    if data.startswith(b"+"):
        text = data[1:].lstrip(b" ")
        return Response(kind="continuation", text=text.decode("utf-8", "replace"), raw=data)
    tok = _Tokens(data)
    tag = tok.word()
    if not tag:
        raise ProtocolError(f"empty response: {data[:80]!r}")
    tok.skip_space()
    first = tok.word()
    tok.skip_space()
    kind: ResponseKind = "untagged" if tag == b"*" else "tagged"
    if first.upper() in _STATUS:
        code: str = ""
        code_args: list[Value] = []
        if tok.peek() == 0x5B:  # [
            code, code_args = _response_code(tok)
            tok.skip_space()
        human = tok.rest().decode("utf-8", "replace")
        status = _STATUS[first.upper()]
        return Response(kind=kind, tag=tag, status=status, code=code, code_args=code_args,
                        text=human, name=status if kind == "untagged" else "", raw=data)
    if kind == "tagged":
        raise ProtocolError(f"tagged response without status: {data[:80]!r}")
    number = None
    if first.isdigit():
        number = int(first)
        first = tok.word()
        tok.skip_space()
    name = first.upper().decode("ascii", "replace")
    values: list[Value] = []
    if name in ("CAPABILITY", "SEARCH", "ENABLED", "SORT"):
        values = [w for w in tok.rest().split(b" ") if w]
    else:
        while not tok.at_end():
            tok.skip_space()
            if tok.at_end():
                break
            values.append(tok.value())
    return Response(kind="untagged", tag=tag, name=name, number=number, values=values, raw=data)


def _response_code(tok: _Tokens) -> tuple[str, list[Value]]:
    end = tok.data.find(b"]", tok.pos)
    if end < 0:
        raise ProtocolError("unterminated response code")
    inner = tok.data[tok.pos + 1 : end]
    tok.pos = end + 1
    name, _, rest = inner.partition(b" ")
    args: list[Value] = []
    if rest:
        sub = _Tokens(rest)
        try:
            while not sub.at_end():
                sub.skip_space()
                if sub.at_end():
                    break
                args.append(sub.value())
        except ProtocolError:
            args = [rest]  # codes with free text (e.g. [ALERT ...]) stay raw
    return name.upper().decode("ascii", "replace"), args


# -- commands -------------------------------------------------------------------------------

_ATOM_SAFE = re.compile(rb"^[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~]+$")


class Literal(bytes):
    """Command argument sent as a literal (for message bodies and 8-bit strings)."""


class Raw(bytes):
    """Command argument sent exactly as given (sequence sets, parenthesised lists, ...)."""


def quote(value: str | bytes) -> bytes:
    """An IMAP string argument: an atom where safe, a quoted string otherwise."""
    b = value.encode() if isinstance(value, str) else value
    if b and _ATOM_SAFE.match(b) and b.upper() != b"NIL":
        return b
    if b"\r" in b or b"\n" in b or b"\0" in b:
        raise ValueError("CR, LF and NUL cannot be sent in a quoted string")
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def encode_command(
    tag: bytes, name: str, args: Sequence[bytes | str | int], literal_plus: bool
) -> list[bytes]:
    """Serialise a command. Returns chunks: after each chunk but the last the client must wait
    for a continuation response (a synchronising literal); with LITERAL+ there is one chunk."""
    chunks: list[bytes] = []
    cur = bytearray(tag + b" " + name.encode())
    for arg in args:
        cur += b" "
        if isinstance(arg, Literal):
            if literal_plus:
                cur += b"{%d+}\r\n" % len(arg) + arg
            else:
                cur += b"{%d}\r\n" % len(arg)
                chunks.append(bytes(cur))
                cur = bytearray(arg)
        elif isinstance(arg, Raw):
            cur += arg
        elif isinstance(arg, int):
            cur += str(arg).encode()
        else:
            cur += quote(arg)
    cur += b"\r\n"
    chunks.append(bytes(cur))
    return chunks
