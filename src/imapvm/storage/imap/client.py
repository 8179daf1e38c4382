"""The IMAP client as a state machine: bytes in, events out (DESIGN.md, "sans-I/O protocol cores").

`ImapClientCore` owns everything a connection must remember: the tags of the commands in flight
(one counter per connection), which command a continuation request ("+ ...") belongs to, the
rest of a command waiting behind a synchronising literal, SASL exchanges (base64 both ways,
SASL-IR, "*" to cancel), IDLE and its DONE, the capabilities the server announced, and the
selected mailbox with its UIDVALIDITY. It has no socket and no clock: the asyncio driver
(`connection.py`) writes `data_to_send()`, feeds `receive_data()` what it reads, and waits for
the events with its timeouts. Calls the current state does not allow raise `LocalProtocolError`
(the h11 idea): a bug shows up where it is made, not as a confused server.

    core = ImapClientCore()
    core.receive_data(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\\r\\n")  # [Greeting(...)]
    tag = core.send_command("SELECT", "INBOX")
    wire = core.data_to_send()                                            # b"V1 SELECT INBOX\\r\\n"
    core.receive_data(b"* OK [UIDVALIDITY 7] x\\r\\nV1 OK [READ-WRITE] done\\r\\n")
    core.selected                                   # Selected(name="INBOX", uidvalidity=7, ...)
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from imapvm.storage.imap.protocol import (
    Literal,
    ProtocolError,
    Response,
    ResponseFramer,
    Value,
    encode_command,
    parse_response,
)


class LocalProtocolError(Exception):
    """The caller asked for something the connection's state does not allow (a second command
    while one waits for a continuation, DONE outside IDLE, an answer nobody asked for)."""


class State(enum.Enum):
    """RFC 3501 §3 connection states (plus waiting for the greeting)."""

    GREETING = "greeting"
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True)
class Selected:
    """The mailbox a SELECT (or EXAMINE) opened, as the server confirmed it."""

    name: str
    uidvalidity: int
    readonly: bool = False


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Greeting:
    """The server's first response (OK, PREAUTH or BYE)."""

    response: Response


@dataclass(frozen=True)
class Untagged:
    """Untagged data; `owner` is the tag of the running command it belongs to (the one its
    ESEARCH correlator names, else the oldest still running), None when nothing runs."""

    response: Response
    owner: bytes | None


@dataclass(frozen=True)
class Challenge:
    """A SASL server challenge (decoded) for the AUTHENTICATE command `tag`: answer it with
    `answer_challenge`."""

    tag: bytes
    data: bytes


@dataclass(frozen=True)
class IdleStarted:
    """The server accepted IDLE `tag`: pushes follow until `done()`."""

    tag: bytes


@dataclass(frozen=True)
class Completed:
    """Command `tag` ended; `response` is its tagged status (OK, NO or BAD)."""

    tag: bytes
    name: str
    response: Response

    @property
    def ok(self) -> bool:
        return self.response.status == "OK"


@dataclass(frozen=True)
class Bye:
    """The server announced it is closing the connection."""

    text: str


@dataclass(frozen=True)
class Stray:
    """A response that belongs to nothing: a completion for a tag not in flight, or a
    continuation request no command waits for. Harmless; worth a log line."""

    response: Response


Event = Greeting | Untagged | Challenge | IdleStarted | Completed | Bye | Stray


class _Phase(enum.Enum):
    RUNNING = "running"  # sent whole; waits for its completion
    LITERAL = "literal"  # part sent; the rest waits for a continuation request
    SASL = "sasl"  # AUTHENTICATE: continuations are challenges
    CHALLENGED = "challenged"  # a challenge was handed out; waits for answer_challenge()
    IDLE_REQUESTED = "idle requested"  # IDLE sent, "+" not yet seen
    IDLING = "idling"  # pushes arrive until done()
    DONE_SENT = "done sent"  # DONE sent; waits for the completion


_CONTINUED = {_Phase.LITERAL, _Phase.SASL, _Phase.CHALLENGED, _Phase.IDLE_REQUESTED,
              _Phase.IDLING}


@dataclass
class _Command:
    tag: bytes
    name: str
    phase: _Phase
    rest: list[bytes] = field(default_factory=list)  # chunks behind synchronising literals
    mailbox: str | None = None  # SELECT / EXAMINE target
    initial: bytes | None = None  # SASL initial response to give at the first challenge
    uidvalidity: int = 0


class ImapClientCore:
    """One IMAP client connection's protocol state. Not thread-safe, no I/O."""

    def __init__(self, tag_prefix: bytes = b"V") -> None:
        self._prefix = tag_prefix
        self._next_tag = 1
        self._framer = ResponseFramer()
        self._out = bytearray()
        self._running: list[_Command] = []  # in flight, oldest first (pipelining)
        self.state = State.GREETING
        self.capabilities: frozenset[str] = frozenset()
        self.selected: Selected | None = None
        self.bye: str | None = None

    # -- what the driver asks -------------------------------------------------------------
    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    def data_to_send(self) -> bytes:
        """Bytes to write to the server, in order (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def running(self) -> tuple[bytes, ...]:
        """Tags of the commands in flight, oldest first."""
        return tuple(c.tag for c in self._running)

    @property
    def blocked(self) -> bool:
        """A command is mid-way (literal, SASL, IDLE): nothing else may be sent until it is
        through, or its bytes would be taken as that command's data."""
        return any(c.phase in _CONTINUED for c in self._running)

    # -- commands -------------------------------------------------------------------------
    def send_command(self, name: str, *args: bytes | str | int,
                     literal_plus: bool | None = None) -> bytes:
        """Queue a command; returns its tag. Synchronising literals are sent as the server asks
        for them (LITERAL+, when the server has it, sends everything at once)."""
        self._check_can_send(name)
        if name.upper() in ("AUTHENTICATE", "IDLE"):
            raise LocalProtocolError(f"use {name.lower()}() for {name.upper()}")
        if literal_plus is None:
            literal_plus = self.has("LITERAL+")
        tag = self._tag()
        chunks = encode_command(tag, name, args, literal_plus=literal_plus)
        cmd = _Command(tag, name.upper(), _Phase.LITERAL if len(chunks) > 1 else _Phase.RUNNING,
                       rest=chunks[1:])
        if cmd.name in ("SELECT", "EXAMINE") and args:
            target = args[0]
            cmd.mailbox = target if isinstance(target, str) else (
                bytes(target).decode("utf-8", "replace") if isinstance(target, bytes)
                else str(target))
            # RFC 3501 §6.3.1: a SELECT deselects at once; if it fails nothing is selected.
            self._deselect()
        self._running.append(cmd)
        self._out += chunks[0]
        return tag

    def authenticate(self, mechanism: str, initial: bytes | None = None) -> bytes:
        """Start a SASL exchange. `initial` (the client-first response, raw) goes on the command
        line when the server offers SASL-IR, else as the answer to the first (empty)
        challenge. Later challenges arrive as `Challenge` events."""
        self._check_can_send("AUTHENTICATE")
        tag = self._tag()
        line = bytearray(tag + b" AUTHENTICATE " + mechanism.upper().encode("ascii"))
        cmd = _Command(tag, "AUTHENTICATE", _Phase.SASL)
        if initial is not None and self.has("SASL-IR"):
            line += b" " + (base64.b64encode(initial) or b"=")
        else:
            cmd.initial = initial
        self._running.append(cmd)
        self._out += line + b"\r\n"
        return tag

    def answer_challenge(self, tag: bytes, response: bytes | None) -> None:
        """Answer the last challenge of AUTHENTICATE `tag`; None cancels the exchange ("*")."""
        cmd = self._find(tag)
        if cmd is None or cmd.phase is not _Phase.CHALLENGED:
            raise LocalProtocolError(f"no challenge of {tag!r} is waiting for an answer")
        cmd.phase = _Phase.SASL
        self._out += (b"*" if response is None else base64.b64encode(response)) + b"\r\n"

    def idle(self) -> bytes:
        """Start IDLE (RFC 2177); `IdleStarted` follows once the server agrees."""
        self._check_can_send("IDLE")
        if not self.has("IDLE"):
            raise LocalProtocolError("the server does not offer IDLE")
        tag = self._tag()
        self._running.append(_Command(tag, "IDLE", _Phase.IDLE_REQUESTED))
        self._out += tag + b" IDLE\r\n"
        return tag

    def done(self) -> None:
        """End IDLE."""
        cmd = next((c for c in self._running if c.phase is _Phase.IDLING), None)
        if cmd is None:
            raise LocalProtocolError("DONE outside IDLE")
        cmd.phase = _Phase.DONE_SENT
        self._out += b"DONE\r\n"

    def _check_can_send(self, name: str) -> None:
        if self.state is State.GREETING:
            raise LocalProtocolError(f"{name} before the server's greeting")
        if self.state is State.LOGOUT:
            raise LocalProtocolError(f"{name} after the connection was closed")
        if self.blocked:
            raise LocalProtocolError(f"{name} while {self._running[-1].name} is not through")

    def _tag(self) -> bytes:
        tag = self._prefix + b"%d" % self._next_tag
        self._next_tag += 1
        return tag

    def _find(self, tag: bytes) -> _Command | None:
        return next((c for c in self._running if c.tag == tag), None)

    def _deselect(self) -> None:
        self.selected = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    # -- what the server says -------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the server; returns the events they complete. Raises
        ProtocolError if the server is not speaking IMAP (the connection is then unusable)."""
        events: list[Event] = []
        for raw in self._framer.feed(data):
            self._receive(parse_response(raw), events)
        return events

    def _receive(self, r: Response, events: list[Event]) -> None:
        if self.state is State.GREETING:
            self._greeting(r)
            events.append(Greeting(r))
            return
        if r.kind == "continuation":
            self._continuation(r, events)
        elif r.kind == "tagged":
            self._completion(r, events)
        else:
            self._untagged(r, events)

    def _greeting(self, r: Response) -> None:
        if r.kind != "untagged" or r.status not in ("OK", "PREAUTH", "BYE"):
            raise ProtocolError(f"expected a greeting, got {r.raw[:80]!r}")
        self.state = {"OK": State.NOT_AUTHENTICATED, "PREAUTH": State.AUTHENTICATED}.get(
            r.status, State.LOGOUT)
        if r.status == "BYE":
            self.bye = r.text
        self._learn_capabilities(r)

    def _continuation(self, r: Response, events: list[Event]) -> None:
        cmd = next((c for c in self._running if c.phase in _CONTINUED), None)
        if cmd is None or cmd.phase in (_Phase.CHALLENGED, _Phase.IDLING):
            events.append(Stray(r))
        elif cmd.phase is _Phase.LITERAL:
            self._out += cmd.rest.pop(0)
            if not cmd.rest:
                cmd.phase = _Phase.RUNNING
        elif cmd.phase is _Phase.IDLE_REQUESTED:
            cmd.phase = _Phase.IDLING
            events.append(IdleStarted(cmd.tag))
        elif cmd.initial is not None:  # the empty challenge that asks for the first response
            self._out += base64.b64encode(cmd.initial) + b"\r\n"
            cmd.initial = None
        else:
            try:
                challenge = base64.b64decode(r.text.strip(), validate=True)
            except (binascii.Error, ValueError):
                self._out += b"*\r\n"  # not base64: cancel; the server ends the command
                return
            cmd.phase = _Phase.CHALLENGED
            events.append(Challenge(cmd.tag, challenge))

    def _completion(self, r: Response, events: list[Event]) -> None:
        cmd = self._find(r.tag)
        if cmd is None:
            events.append(Stray(r))
            return
        self._running.remove(cmd)
        ok = r.status == "OK"
        if ok and cmd.name in ("LOGIN", "AUTHENTICATE"):
            self.state = State.AUTHENTICATED
        elif cmd.name in ("SELECT", "EXAMINE"):
            if ok and cmd.mailbox is not None:
                readonly = cmd.name == "EXAMINE" or r.code == "READ-ONLY"
                self.selected = Selected(cmd.mailbox, cmd.uidvalidity, readonly)
                self.state = State.SELECTED
            else:
                self._deselect()
        elif ok and cmd.name in ("CLOSE", "UNSELECT"):
            self._deselect()
        elif ok and cmd.name == "STARTTLS":
            self.capabilities = frozenset()  # RFC 3501 §6.2.1: ask again over TLS
        elif cmd.name == "LOGOUT":
            self.state = State.LOGOUT
        self._learn_capabilities(r)
        events.append(Completed(cmd.tag, cmd.name, r))

    def _untagged(self, r: Response, events: list[Event]) -> None:
        owner = self._owner(r)
        if r.status == "BYE":
            self.bye = r.text
            events.append(Bye(r.text))
        elif r.name == "CAPABILITY":
            self._set_capabilities(r.values)
        elif r.code == "UIDVALIDITY" and owner is not None:
            n = _number(r.code_args[0] if r.code_args else None)
            if n is not None:
                owner.uidvalidity = n
        if r.status:
            self._learn_capabilities(r)
        events.append(Untagged(r, owner.tag if owner is not None else None))

    def _owner(self, r: Response) -> _Command | None:
        if r.name == "ESEARCH" and r.values and isinstance(r.values[0], list):
            corr = r.values[0]
            if len(corr) >= 2 and isinstance(corr[0], bytes) and corr[0].upper() == b"TAG":
                hit = self._find(corr[1]) if isinstance(corr[1], bytes) else None
                if hit is not None:
                    return hit
        return self._running[0] if self._running else None

    def _learn_capabilities(self, r: Response) -> None:
        if r.code == "CAPABILITY":
            self._set_capabilities(r.code_args)

    def _set_capabilities(self, values: Sequence[Value]) -> None:
        self.capabilities = _capability_set(tuple(v for v in values if isinstance(v, bytes)))


_CAPABILITY_SETS: dict[tuple[bytes, ...], frozenset[str]] = {}


def _capability_set(words: tuple[bytes, ...]) -> frozenset[str]:
    """One shared set per distinct capability list: ten thousand watcher connections to one
    server all hear the same ~40 words, and a set of its own cost each ~4.5 KiB."""
    caps = _CAPABILITY_SETS.get(words)
    if caps is None:
        if len(_CAPABILITY_SETS) > 256:  # bounded: servers differ, but not without end
            _CAPABILITY_SETS.clear()
        caps = _CAPABILITY_SETS[words] = frozenset(
            w.decode("ascii", "replace").upper() for w in words)
    return caps


def _number(v: Value | None) -> int | None:
    return int(v) if isinstance(v, bytes) and v.isdigit() else None


def has_synchronising_literal(args: Iterable[object]) -> bool:
    """Whether a command with these arguments would need continuations without LITERAL+."""
    return any(isinstance(a, Literal) for a in args)
