"""The sans-I/O IMAP client core on byte strings: tags, literals, SASL, IDLE, SELECT state.

No server and no event loop: what a live connection would exchange is written out as bytes,
and the core must produce exactly the client's side of it."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapvm.storage.imap.client import (
    Bye,
    Challenge,
    Completed,
    Greeting,
    IdleStarted,
    ImapClientCore,
    LocalProtocolError,
    Selected,
    State,
    Stray,
    Untagged,
)
from imapvm.storage.imap.notify import changed_folder, notify_set
from imapvm.storage.imap.protocol import Literal, Raw, parse_response

GREETING = b"* OK [CAPABILITY IMAP4rev1 IDLE SASL-IR LITERAL+ NOTIFY] ready\r\n"


def ready(greeting: bytes = GREETING) -> ImapClientCore:
    core = ImapClientCore()
    events = core.receive_data(greeting)
    assert isinstance(events[0], Greeting)
    return core


def test_greeting_sets_state_and_capabilities() -> None:
    core = ready()
    assert core.state is State.NOT_AUTHENTICATED
    assert core.has("literal+")
    assert core.has("NOTIFY")
    pre = ready(b"* PREAUTH hello\r\n")
    assert pre.state is State.AUTHENTICATED
    assert pre.capabilities == frozenset()
    bye = ready(b"* BYE too busy\r\n")
    assert bye.state is State.LOGOUT
    assert bye.bye == "too busy"
    with pytest.raises(LocalProtocolError):
        bye.send_command("NOOP")


def test_nothing_is_sent_before_the_greeting() -> None:
    with pytest.raises(LocalProtocolError, match="greeting"):
        ImapClientCore().send_command("NOOP")


def test_tags_are_per_connection() -> None:
    a, b = ready(), ready()
    assert [a.send_command("NOOP"), a.send_command("NOOP")] == [b"V1", b"V2"]
    assert b.send_command("NOOP") == b"V1"  # no process-wide counter
    assert a.data_to_send() == b"V1 NOOP\r\nV2 NOOP\r\n"
    assert a.data_to_send() == b""


def test_completion_carries_untagged_owner_and_learns_capabilities() -> None:
    core = ready()
    tag = core.send_command("LOGIN", "u", "p w")
    assert core.data_to_send() == b'V1 LOGIN u "p w"\r\n'
    events = core.receive_data(b"V1 OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n")
    assert events == [Completed(tag, "LOGIN", events[0].response)]  # type: ignore[union-attr]
    assert isinstance(events[0], Completed)
    assert events[0].ok
    assert core.state is State.AUTHENTICATED
    assert core.capabilities == frozenset({"IMAP4REV1", "MOVE"})
    core.send_command("CAPABILITY")
    core.receive_data(b"* CAPABILITY IMAP4rev1 ESEARCH\r\n")
    assert core.has("ESEARCH")
    assert not core.has("MOVE")


def test_select_state_is_declared_by_the_core() -> None:
    core = ready()
    core.send_command("SELECT", "Voice/INBOX")
    assert core.data_to_send() == b"V1 SELECT Voice/INBOX\r\n"
    events = core.receive_data(b"* 3 EXISTS\r\n* OK [UIDVALIDITY 1234] UIDs valid\r\n"
                               b"V1 OK [READ-WRITE] Select completed\r\n")
    assert [type(e) for e in events] == [Untagged, Untagged, Completed]
    assert all(e.owner == b"V1" for e in events if isinstance(e, Untagged))
    assert core.selected == Selected("Voice/INBOX", 1234, readonly=False)
    assert core.state is State.SELECTED
    # a failed SELECT leaves nothing selected (RFC 3501 §6.3.1), even the previous one
    core.send_command("SELECT", "Gone")
    assert core.selected is None
    core.receive_data(b"V2 NO [NONEXISTENT] no such mailbox\r\n")
    assert core.selected is None
    assert core.state is State.AUTHENTICATED
    core.send_command("EXAMINE", "INBOX")
    core.receive_data(b"* OK [UIDVALIDITY 9] x\r\nV3 OK [READ-ONLY] done\r\n")
    assert core.selected == Selected("INBOX", 9, readonly=True)
    core.send_command("UNSELECT")
    core.receive_data(b"V4 OK done\r\n")
    assert core.selected is None


def test_synchronising_literals_wait_for_each_continuation() -> None:
    core = ready(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
    tag = core.send_command("APPEND", "INBOX", Raw(b"()"), Literal(b"abc"),
                            Raw(b"()"), Literal(b"de"))
    assert core.data_to_send() == b"V1 APPEND INBOX () {3}\r\n"
    assert core.blocked
    with pytest.raises(LocalProtocolError, match="APPEND is not through"):
        core.send_command("NOOP")  # it would be taken as literal data
    assert core.receive_data(b"+ go ahead\r\n") == []
    assert core.data_to_send() == b"abc () {2}\r\n"
    core.receive_data(b"+ more\r\n")
    assert core.data_to_send() == b"de\r\n"
    assert not core.blocked
    events = core.receive_data(b"V1 OK [APPENDUID 7 1:2] done\r\n")
    assert isinstance(events[0], Completed)
    assert events[0].tag == tag


def test_literal_refused_before_continuation_drops_the_rest() -> None:
    core = ready(b"* OK hi\r\n")
    core.send_command("APPEND", "INBOX", Literal(b"x" * 10))
    core.data_to_send()
    events = core.receive_data(b"V1 NO [OVERQUOTA] too big\r\n")
    assert isinstance(events[0], Completed)
    assert events[0].response.code == "OVERQUOTA"
    assert not core.blocked
    assert core.data_to_send() == b""
    core.send_command("NOOP")
    assert core.data_to_send() == b"V2 NOOP\r\n"


def test_literal_plus_sends_everything_at_once() -> None:
    core = ready()
    core.send_command("APPEND", "INBOX", Literal(b"abc"))
    assert core.data_to_send() == b"V1 APPEND INBOX {3+}\r\nabc\r\n"
    assert not core.blocked


def test_sasl_with_initial_response_on_the_command_line() -> None:
    core = ready()
    tag = core.authenticate("PLAIN", b"bob\0master\0secret")
    wire = core.data_to_send()
    assert wire == b"V1 AUTHENTICATE PLAIN " + base64.b64encode(b"bob\0master\0secret") + b"\r\n"
    events = core.receive_data(b"V1 OK [CAPABILITY IMAP4rev1 X] Logged in\r\n")
    assert isinstance(events[0], Completed)
    assert events[0].tag == tag
    assert core.state is State.AUTHENTICATED
    assert core.has("X")


def test_sasl_without_sasl_ir_and_a_multi_step_exchange() -> None:
    core = ready(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
    tag = core.authenticate("GSSAPI", b"token1")
    assert core.data_to_send() == b"V1 AUTHENTICATE GSSAPI\r\n"
    assert core.receive_data(b"+ \r\n") == []  # the empty challenge asks for the first token
    assert core.data_to_send() == base64.b64encode(b"token1") + b"\r\n"
    events = core.receive_data(b"+ " + base64.b64encode(b"server says") + b"\r\n")
    assert events == [Challenge(tag, b"server says")]
    with pytest.raises(LocalProtocolError):
        core.send_command("NOOP")
    core.answer_challenge(tag, b"token2")
    assert core.data_to_send() == base64.b64encode(b"token2") + b"\r\n"
    with pytest.raises(LocalProtocolError, match="no challenge"):
        core.answer_challenge(tag, b"again")
    core.receive_data(b"+ " + base64.b64encode(b"layer") + b"\r\n")
    core.answer_challenge(tag, None)  # cancel
    assert core.data_to_send() == b"*\r\n"
    events = core.receive_data(b"V1 BAD cancelled\r\n")
    assert isinstance(events[0], Completed)
    assert not events[0].ok
    assert core.state is State.NOT_AUTHENTICATED


def test_sasl_error_challenge_and_empty_initial_response() -> None:
    core = ready()
    core.authenticate("GSSAPI", b"")
    assert core.data_to_send() == b"V1 AUTHENTICATE GSSAPI =\r\n"  # RFC 4959: empty is "="
    core.receive_data(b"+ not base64 at all!\r\n")
    assert core.data_to_send() == b"*\r\n"  # a challenge that cannot be decoded cancels


def test_idle_and_done() -> None:
    core = ready()
    core.send_command("SELECT", "INBOX")
    core.data_to_send()
    core.receive_data(b"* OK [UIDVALIDITY 5] x\r\nV1 OK done\r\n")
    with pytest.raises(LocalProtocolError, match="DONE outside IDLE"):
        core.done()
    tag = core.idle()
    assert core.data_to_send() == tag + b" IDLE\r\n"
    assert core.receive_data(b"+ idling\r\n") == [IdleStarted(tag)]
    events = core.receive_data(b"* 4 EXISTS\r\n* 2 FETCH (FLAGS (\\Seen))\r\n")
    assert [e.owner for e in events if isinstance(e, Untagged)] == [tag, tag]
    with pytest.raises(LocalProtocolError):
        core.send_command("NOOP")  # must DONE first
    core.done()
    assert core.data_to_send() == b"DONE\r\n"
    events = core.receive_data(tag + b" OK IDLE terminated\r\n")
    assert isinstance(events[0], Completed)
    assert events[0].name == "IDLE"
    assert core.selected == Selected("INBOX", 5)


def test_idle_needs_the_capability_and_a_refusal_completes() -> None:
    with pytest.raises(LocalProtocolError, match="IDLE"):
        ready(b"* OK hi\r\n").idle()
    core = ready()
    tag = core.idle()
    events = core.receive_data(tag + b" NO not now\r\n")
    assert isinstance(events[0], Completed)
    assert not events[0].ok
    with pytest.raises(LocalProtocolError):
        core.done()


def test_pipelined_esearch_goes_to_the_command_it_names() -> None:
    core = ready()
    t1 = core.send_command("UID", "SEARCH", "RETURN", Raw(b"(ALL)"), "SEEN")
    t2 = core.send_command("UID", "SEARCH", "RETURN", Raw(b"(ALL)"), "UNSEEN")
    events = core.receive_data(b'* ESEARCH (TAG "V2") UID ALL 4\r\n'
                               b'* ESEARCH (TAG "V1") UID ALL 1:3\r\n'
                               b"* 9 EXISTS\r\n")
    owners = [e.owner for e in events if isinstance(e, Untagged)]
    assert owners == [t2, t1, t1]  # unlabelled data: the oldest running command
    core.receive_data(b"V1 OK done\r\nV2 OK done\r\n")
    assert core.running == ()
    events = core.receive_data(b"* 10 EXISTS\r\n")
    assert isinstance(events[0], Untagged)
    assert events[0].owner is None


def test_stray_responses_and_bye() -> None:
    core = ready()
    events = core.receive_data(b"+ nobody asked\r\nV77 OK what\r\n* BYE shutting down\r\n")
    assert [type(e) for e in events] == [Stray, Stray, Bye, Untagged]
    assert core.bye == "shutting down"


def test_logout_and_starttls_states() -> None:
    core = ready()
    core.send_command("STARTTLS")
    core.receive_data(b"V1 OK begin TLS\r\n")
    assert core.capabilities == frozenset()  # must be asked again over TLS
    core.send_command("LOGOUT")
    core.receive_data(b"* BYE bye\r\nV2 OK done\r\n")
    assert core.state is State.LOGOUT


def test_notify_set_and_push_sorting() -> None:
    assert notify_set([]) == ("SET", Raw(
        b"(selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))"))
    verb, spec = notify_set(["Work", "Old Stuff", "Work"])
    assert verb == "SET"
    assert spec.endswith(b' (mailboxes ("Old Stuff" Work) (MessageNew MessageExpunge '
                         b'FlagChange))')

    def r(line: bytes) -> str | None:
        return changed_folder(parse_response(line), "INBOX")

    assert r(b"* 3 EXISTS") == "INBOX"
    assert r(b"* 2 EXPUNGE") == "INBOX"
    assert r(b"* VANISHED 4:5") == "INBOX"
    assert r(b"* 1 FETCH (UID 4 FLAGS (\\Seen))") == "INBOX"
    assert r(b"* 1 FETCH (UID 4 BODY[HEADER.FIELDS (X)] {2}\r\nab)") is None  # our own fetch
    assert r(b'* STATUS "Old Stuff" (MESSAGES 2)') == "Old Stuff"
    assert r(b"* OK still here") is None
    assert r(b"* SEARCH 1 2") is None
    assert changed_folder(parse_response(b"* 3 EXISTS"), None) == ""


# -- property tests -------------------------------------------------------------------------

_atom = st.binary(min_size=1, max_size=12).filter(
    lambda b: all(0x21 <= c < 0x7F and c not in b'(){%*"\\]' for c in b))
_args = st.lists(st.one_of(_atom.map(Raw), st.binary(max_size=40).map(Literal)), max_size=4)


@settings(max_examples=60, deadline=None)
@given(args=_args, chunk=st.integers(min_value=1, max_value=9))
def test_any_command_round_trips_whatever_the_chunking(args: list[bytes], chunk: int) -> None:
    """Whatever the literals, the bytes sent (command line and every literal released by a
    continuation) are exactly the LITERAL+ form minus the '+': nothing lost, nothing reordered;
    and the server's bytes may arrive split anywhere."""
    core = ready(b"* OK hi\r\n")
    plus = ready()
    tag = core.send_command("APPEND", "INBOX", *args)
    plus.send_command("APPEND", "INBOX", *args)
    sent = bytearray(core.data_to_send())
    expected = plus.data_to_send().replace(b"+}", b"}")
    while core.blocked:
        cont = b"+ ok\r\n"
        for i in range(0, len(cont), chunk):
            core.receive_data(cont[i : i + chunk])
        sent += core.data_to_send()
    assert bytes(sent) == expected
    reply = tag + b" OK done\r\n"
    events = []
    for i in range(0, len(reply), chunk):
        events += core.receive_data(reply[i : i + chunk])
    assert [type(e) for e in events] == [Completed]


_server_lines = st.sampled_from([
    b"* 3 EXISTS\r\n", b"* 1 EXPUNGE\r\n", b"+ go\r\n", b"* OK [UIDVALIDITY 4] x\r\n",
    b"* CAPABILITY IMAP4rev1 IDLE\r\n", b"V1 OK done\r\n", b"V2 NO nope\r\n", b"V9 BAD what\r\n",
    b"* BYE going\r\n", b"* 2 FETCH (FLAGS ())\r\n",
])


@settings(max_examples=80, deadline=None)
@given(lines=st.lists(_server_lines, max_size=12))
def test_server_noise_never_breaks_the_core(lines: list[bytes]) -> None:
    """Any sequence of well-formed server responses, expected or not, gives events (never an
    exception), completes each command at most once, and leaves the core consistent."""
    core = ready()
    core.send_command("SELECT", "INBOX")
    core.send_command("NOOP")
    completed: list[bytes] = []
    for line in lines:
        for e in core.receive_data(line):
            if isinstance(e, Completed):
                completed.append(e.tag)
    assert len(completed) == len(set(completed))
    assert set(core.running) == {b"V1", b"V2"} - set(completed)
    if core.selected is not None:
        assert core.selected.name == "INBOX"
        assert core.state is State.SELECTED
