"""Finding the recording and the forward intro in emails of either layout."""

from __future__ import annotations

import pytest

from imapvm.storage.audio_parts import AudioMissing, extract_audio
from tests.support.vmmail import voicemail


def _mime(parts: list[tuple[str, str, bytes]], nested: bool = False) -> bytes:
    import base64

    def part(ctype: str, name: str, data: bytes) -> str:
        return (f"Content-Type: {ctype}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n"
                f"Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
                f"{base64.b64encode(data).decode()}\r\n")

    body = "--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    leaves = [part(*p) for p in parts]
    if nested:
        inner = "".join(f"--A\r\n{leaf}" for leaf in leaves) + "--A--\r\n"
        body += f"--B\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n{inner}"
    else:
        body += "".join(f"--B\r\n{leaf}" for leaf in leaves)
    body += "--B--\r\n"
    return (b"Message-ID: <x@y>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n" + body.encode())


def test_asterisk_layout_with_intro() -> None:
    raw = _mime([("audio/x-gsm", "msg0003.gsm", b"GSMDATA"),
                 ("audio/x-gsm", "msgintro0003.gsm", b"INTRO")])
    audio = extract_audio(raw)
    assert (audio.message.data, audio.message.fmt) == (b"GSMDATA", "gsm")
    assert audio.intro is not None
    assert audio.intro.data == b"INTRO"


def test_nested_alternatives_and_preference() -> None:
    raw = _mime([("audio/x-gsm", "msg0000.gsm", b"G"), ("audio/x-wav", "msg0000.wav", b"W")],
                nested=True)
    assert extract_audio(raw).message.fmt == "wav"
    assert extract_audio(raw, prefer=("gsm",)).message.data == b"G"
    assert [p.fmt for p in extract_audio(raw).alternatives] == ["wav", "gsm"]


def test_wav49_is_named_WAV() -> None:
    raw = _mime([("audio/x-WAV", "msg0000.WAV", b"W49")])
    assert extract_audio(raw).message.fmt == "wav49"


def test_no_audio_is_a_clear_error() -> None:
    with pytest.raises(AudioMissing):
        extract_audio(b"Subject: plain mail\r\n\r\nno attachments\r\n")


def test_test_voicemails_have_audio() -> None:
    assert extract_audio(voicemail("1")).message.filename == "msg0000.wav"
