"""Read imapvm's messages by Asterisk's rules (tests/message/asterisk_reader.py).

This is the proof of the attachment layout (imapvm.message.layout): whatever formats are attached
for mail clients, Asterisk finds exactly one message part in the preferred format, an intro only
for forward-with-comment, and the metadata it expects.
"""

from __future__ import annotations

import pytest

from imapvm.audio import decode, encode
from imapvm.audio.formats import lookup
from imapvm.message import (
    FLAG_URGENT,
    Deposit,
    VoicemailMeta,
    build_greeting,
    build_voicemail,
    parse_message,
)
from imapvm.message.layout import AudioPart, audio_part
from tests.message import asterisk_reader as ast
from tests.message.helpers import FIXED, sawtooth, settings
from tests.support.speech import speech


@pytest.mark.parametrize(
    ("formats", "attachfmt", "client_formats", "expected"),
    [
        (("wav49", "gsm", "wav"), None, (), "WAV"),
        (("wav",), None, (), "wav"),
        (("gsm", "wav"), None, (), "gsm"),
        (("gsm", "wav"), "wav", ("mp3", "opus"), "wav"),
        (("ulaw",), None, ("mp3",), "ulaw"),
        (("mp3",), None, (), "gsm"),  # Asterisk cannot play mp3: part 2 falls back to gsm
    ],
)
def test_asterisk_sees_one_message_part_in_the_preferred_format(
    formats: tuple[str, ...], attachfmt: str | None, client_formats: tuple[str, ...], expected: str
) -> None:
    audio = speech(3.0)
    built = build_voicemail(
        Deposit(number=4, caller_id_num="5551234", caller_id_name="Andy Dufresne"),
        settings(formats=formats, attachfmt=attachfmt, client_formats=client_formats),
        audio,
        randomness=FIXED,
    )
    view = ast.retrieve(built.raw)
    assert view.filename == f"msg0003.{expected}"
    assert view.fmt == expected
    assert view.intro is None
    assert [name for name, _ in view.playback()] == [f"message.{expected}"]
    assert view.message == encode(audio, expected)
    # mail clients get every format: the preferred one plus gsm plus the client formats
    names = sorted(a.filename for a in parse_message(built.raw).recordings)
    wanted = {expected, "gsm", *client_formats, lookup(formats[0]).name}
    assert names == sorted(f"msg0003.{f}" for f in wanted)


def test_asterisk_plays_comment_first_then_original() -> None:
    original, comment = speech(4.0), sawtooth(1.0)
    meta = VoicemailMeta(number=1, context="default", extension="4324", duration=4)
    built = build_voicemail(
        Deposit.forward_of(meta, number=2, by_mailbox="4324", by_context="default", at=1),
        settings(),
        original,
        intro=comment,
        randomness=FIXED,
    )
    view = ast.retrieve(built.raw)
    assert [name for name, _ in view.playback()] == ["intro.WAV", "message.WAV"]
    assert view.intro == encode(comment, "WAV")
    assert view.message == encode(original, "WAV")
    assert decode(view.intro, view.fmt).frames == comment.frames


def test_asterisk_reads_metadata_by_substring_search() -> None:
    built = build_voicemail(
        Deposit(number=9, caller_id_num="5551234", caller_id_name="Andy Dufresne",
                flag=FLAG_URGENT, orig_time=1795000000, msg_id="1795000000-00000abc"),
        settings(),
        speech(7.5),
        randomness=FIXED,
    )
    meta = ast.retrieve(built.raw).metadata
    assert meta == {
        "Caller-ID-Name": "Andy Dufresne",
        "Caller-ID-Num": "5551234",
        "Context": "default",
        "Orig-time": "1795000000",
        "Duration": "7",
        "Category": "",
        "Flag": "Urgent",
        "Message-ID": "1795000000-00000abc",
    }
    # our additive headers never shadow a tag Asterisk searches for (first hit wins)
    block = ast.header_block(built.raw).decode().lower()
    for tag in ("x-asterisk-vm-duration:", "x-asterisk-vm-context:", "x-asterisk-vm-message-id:"):
        assert block.count(tag) == 1


def test_asterisk_finds_our_greeting_by_part2_name() -> None:
    greet = build_greeting("busy", settings(), speech(2.0), randomness=FIXED).raw
    vm = build_voicemail(Deposit(number=1), settings(), speech(1.0), randomness=FIXED).raw
    assert ast.find_greeting([vm, greet], "busy") == 1
    assert ast.find_greeting([vm, greet], "unavail") is None
    view = ast.retrieve(greet)
    assert view.filename == "busy.WAV"
    assert view.intro is None


# --- the reader is meaningful: it rejects the layouts the module docstring rejects ---------------


def _message(parts: list[str], boundary: str = "B") -> bytes:
    body = "".join(f"--{boundary}\r\n{p}" for p in parts)
    return (
        "X-Asterisk-VM-Context: default\r\nX-Asterisk-VM-Extension: 1234\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n{body}--{boundary}--\r\n'
    ).encode()


def _part(name: str, fmt: str, data: bytes) -> str:
    return audio_part(AudioPart(name, lookup(fmt), data, 1))


def test_naive_third_part_would_be_played_as_an_intro() -> None:
    audio = speech(1.0)
    text = "Content-Type: text/plain\r\n\r\nhello\r\n"
    raw = _message([text, _part("msg0000.wav", "wav", encode(audio, "wav")),
                    _part("msg0000.gsm", "gsm", encode(audio, "gsm"))])
    view = ast.retrieve(raw)
    assert [n for n, _ in view.playback()] == ["intro.wav", "message.wav"]  # heard twice
    assert view.intro == encode(audio, "gsm")  # and GSM bytes played as if they were WAV


def test_alternative_as_part_two_breaks_asterisk() -> None:
    audio = speech(1.0)
    inner = (
        'Content-Type: multipart/alternative; boundary="ALT"\r\n\r\n'
        f"--ALT\r\n{_part('msg0000.wav', 'wav', encode(audio, 'wav'))}"
        f"--ALT\r\n{_part('msg0000.gsm', 'gsm', encode(audio, 'gsm'))}--ALT--\r\n"
    )
    raw = _message(["Content-Type: text/plain\r\n\r\nhello\r\n", inner])
    with pytest.raises(ast.NoFileAttached):  # first parameter is boundary="ALT": no "."
        ast.retrieve(raw)


def test_reader_reads_asterisk_written_messages() -> None:
    from tests.message.asterisk_samples import asterisk_message

    audio, comment = speech(2.0), sawtooth(0.5)
    view = ast.retrieve(asterisk_message(audio, fmt="gsm", intro=comment))
    assert view.filename == "msg0000.gsm"
    assert view.message == encode(audio, "gsm")
    assert view.intro == encode(comment, "gsm")
    assert view.metadata["Duration"] == "2"
