"""Greeting messages: build, parse, and keys that separate mailboxes and contexts (§6 #22)."""

from __future__ import annotations

import pytest

from imapvm.message import (
    ForeignMessage,
    GreetingKey,
    build_greeting,
    build_voicemail,
    greeting_key,
    is_greeting_for,
    parse_greeting,
    parse_message,
)
from imapvm.message.build import Deposit
from tests.message import asterisk_reader as ast
from tests.message.asterisk_samples import asterisk_message
from tests.message.helpers import FIXED, settings, strict_parse
from tests.support.speech import speech


@pytest.mark.parametrize("name", ["unavail", "busy", "greet", "temp"])
def test_greeting_round_trip(name: str) -> None:
    audio = speech(2.5)
    built = build_greeting(name, settings(), audio, randomness=FIXED)
    strict_parse(built.raw)
    key, stored = parse_greeting(built.raw)
    assert key == GreetingKey(context="default", mailbox="1234", name=name)
    assert stored.meta.is_greeting
    assert stored.meta.number == 0
    assert stored.meta.duration == 2
    assert stored.message.filename == f"{name}.WAV"
    assert [a.filename for a in stored.alternatives] == [f"{name}.gsm"]
    assert stored.message.decode().frames == audio.frames
    assert stored.subject.startswith(f"New greeting '{name}' on ")
    assert built.flags == ()
    assert b"Message-Context" not in built.raw  # not a message for the user to hear
    assert ast.find_greeting([built.raw], name) == 0


def test_unknown_greeting_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown greeting"):
        build_greeting("vacation", settings(), speech(1.0))


def test_greetings_of_shared_account_mailboxes_are_kept_apart() -> None:
    # Two mailboxes share one IMAP account and one imapvmshareid, as in §1.2.
    a = build_greeting("unavail", settings(mailbox="100", imapvmshareid="team"), speech(1.0)).raw
    b = build_greeting("unavail", settings(mailbox="101", imapvmshareid="team"), speech(1.0)).raw
    c = build_greeting("unavail", settings(mailbox="100", context="sales"), speech(1.0)).raw
    folder = [a, b, c]
    # Asterisk's rule takes the first 'unavail' in the folder for everyone:
    assert ast.find_greeting(folder, "unavail") == 0
    # imapvm's keys pick the right one for each mailbox and context:
    parsed = [parse_message(raw) for raw in folder]
    for i, (ctx, mbox) in enumerate([("default", "100"), ("default", "101"), ("sales", "100")]):
        hits = [j for j, p in enumerate(parsed)
                if is_greeting_for(p, context=ctx, mailbox=mbox, name="unavail")]
        assert hits == [i]
    assert greeting_key(parsed[0]) != greeting_key(parsed[1])


def test_asterisk_written_greeting_is_keyed_by_extension() -> None:
    raw = asterisk_message(speech(1.0), message_type=b"busy", attachment_name="busy.wav", msgnum=-1)
    key, stored = parse_greeting(raw)
    assert key == GreetingKey(context="default", mailbox="1234", name="busy")
    assert stored.meta.mailbox is None


def test_asterisk_greeting_without_type_header_is_recognised_by_name() -> None:
    raw = asterisk_message(speech(1.0), attachment_name="temp.wav", msgnum=-1)
    raw = raw.replace(b"X-Asterisk-VM-Message-Type: Message\r\n", b"")
    key, _ = parse_greeting(raw)
    assert key.name == "temp"


def test_a_voicemail_is_not_a_greeting() -> None:
    vm = build_voicemail(Deposit(number=1), settings(), speech(1.0)).raw
    assert greeting_key(parse_message(vm)) is None
    with pytest.raises(ForeignMessage, match="not a greeting"):
        parse_greeting(vm)
