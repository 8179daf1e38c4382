"""Parsing stored messages: imapvm round trips, Asterisk-written messages, foreign mail, damage."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapvm.audio import MAX_AUDIO_BYTES, decode
from imapvm.message import (
    FLAG_URGENT,
    Deposit,
    ForeignMessage,
    MalformedVoicemail,
    MessageError,
    MessageTooLarge,
    TruncatedAttachment,
    build_voicemail,
    parse_message,
)
from imapvm.message.meta import strip_controls
from tests.message import asterisk_reader as ast
from tests.message.asterisk_samples import asterisk_message
from tests.message.helpers import FIXED, sawtooth, strict_parse
from tests.message.helpers import settings as vm_settings
from tests.support.speech import snr_db, speech

# --- imapvm → imapvm ----------------------------------------------------------------------------


def test_round_trip_metadata_and_every_format() -> None:
    audio = speech(6.0)
    built = build_voicemail(
        Deposit(number=12, caller_id_num="5551234", caller_id_name="Andy Dufresne",
                flag=FLAG_URGENT, priority=4, orig_time=1795000000),
        vm_settings(client_formats=("wav", "mp3")),
        audio,
        randomness=FIXED,
    )
    stored = parse_message(built.raw)
    assert stored.meta == built.meta
    assert stored.meta.is_urgent
    assert built.flags == ("\\Flagged",)
    assert stored.message.filename == "msg0011.WAV"
    assert [a.format_name for a in stored.recordings] == ["WAV", "gsm", "wav", "mp3"]
    assert stored.pick(["mp3"]).format_name == "mp3"
    assert stored.pick(["opus", "wav49"]).format_name == "WAV"
    assert stored.pick(["flac"]) is stored.message
    for copy in stored.recordings:
        assert copy.duration == 6
        back = copy.decode()
        assert back.frames == audio.frames
        assert snr_db(audio, back) > 9.0
    assert stored.pick(["wav"]).decode().same_as(audio)
    assert stored.intro is None
    assert stored.subject == "[PBX]: New Urgent message 12 in mailbox 1234"
    assert stored.date is not None
    assert stored.date.timestamp() == FIXED.now.timestamp()


@given(
    name=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    num=st.text("0123456789+*#", max_size=20),
    fullname=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_any_caller_and_owner_names(name: str, num: str, fullname: str) -> None:
    built = build_voicemail(
        Deposit(number=1, caller_id_num=num, caller_id_name=name),
        vm_settings(fullname=fullname, formats=("gsm",)),
        sawtooth(0.1),
        randomness=FIXED,
    )
    strict_parse(built.raw)  # the email package finds no defect, whatever the names
    stored = parse_message(built.raw)
    assert stored.meta == built.meta
    assert stored.meta.caller_id_name == strip_controls(name).strip()
    assert stored.meta.caller_id_num == num
    assert ast.retrieve(built.raw).fmt == "gsm"


# --- Asterisk → imapvm --------------------------------------------------------------------------


def test_reads_asterisk_written_message() -> None:
    audio = speech(5.0)
    raw = asterisk_message(audio, fmt="wav", msgnum=2)
    assert raw.endswith(b"--\r\n.\r\n")  # the sendmail artifact Asterisk leaves in IMAP
    stored = parse_message(raw)
    m = stored.meta
    assert (m.number, m.context, m.extension, m.mailbox) == (3, "default", "1234", None)
    assert (m.caller_id_num, m.caller_id_name, m.duration) == ("5551234", "Andy Dufresne", 5)
    assert (m.orig_time, m.msg_id, m.priority, m.flag) == (1687276784, "1687276784-00000001", 2, "")
    assert m.owner == "1234"
    assert stored.message.filename == "msg0002.wav"
    assert stored.message.duration is None
    assert stored.alternatives == ()
    assert stored.message.decode().same_as(audio)


def test_reads_asterisk_forward_with_comment_and_null_id() -> None:
    raw = asterisk_message(speech(3.0), fmt="gsm", intro=sawtooth(1.0), msg_id=b"(null)")
    stored = parse_message(raw)
    assert stored.meta.msg_id is None
    assert stored.intro is not None
    assert stored.intro.filename == "msgintro0000.gsm"
    assert stored.intro.decode().frames == 8000


def test_reads_exchange_lowercased_and_folded_headers() -> None:
    raw = asterisk_message(speech(2.0), fmt="WAV", lowercase_headers=True)
    raw = raw.replace(
        b"x-asterisk-vm-caller-id-name: Andy Dufresne",
        b"x-asterisk-vm-caller-id-name: Andy\r\n  Dufresne",
    )
    stored = parse_message(raw)
    assert stored.meta.caller_id_name == "Andy  Dufresne"
    assert stored.meta.context == "default"
    assert stored.message.format_name == "WAV"
    assert stored.message.decode().frames == 16000


def test_optional_headers_missing_get_defaults() -> None:
    raw = asterisk_message(speech(1.0))
    keep = (b"x-asterisk-vm-context", b"x-asterisk-vm-extension", b"mime-version", b"content-type")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if ln.split(b":")[0].lower() in keep]
    stored = parse_message(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    m = stored.meta
    assert (m.number, m.duration, m.orig_time, m.msg_id) == (0, 0, 0, None)
    assert m.message_type == "Message"
    assert (m.caller_id_num, m.caller_id_name, m.flag, m.category) == ("", "", "", "")
    assert stored.date is None
    assert stored.subject == ""


def test_eight_bit_caller_name_from_asterisk() -> None:
    raw = asterisk_message(speech(1.0), cid_name="Jörg Müller".encode())
    assert parse_message(raw).meta.caller_id_name == "Jörg Müller"


def test_lf_only_line_ends_are_accepted() -> None:
    raw = asterisk_message(speech(1.0)).replace(b"\r\n", b"\n")
    assert parse_message(raw).message.decode().frames == 8000


# --- foreign and damaged mail -------------------------------------------------------------------

FOREIGN = {
    "plain": b"From: a@b.c\r\nTo: d@e.f\r\nSubject: lunch?\r\n\r\nNoon at the usual place.\r\n",
    "multipart_with_attachment": (
        b'From: a@b.c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n'
        b"--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b'--x\r\nContent-Type: audio/x-wav; name="song.wav"\r\nContent-Transfer-Encoding: base64'
        b"\r\n\r\nUklGRg==\r\n--x--\r\n"
    ),
    "only_context_header": b"X-Asterisk-VM-Context: default\r\n\r\nhello\r\n",
    "empty": b"",
    "garbage": b"\x00\xff\xfe not mail at all \r\n\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_mail_is_recognised(name: str) -> None:
    with pytest.raises(ForeignMessage):
        parse_message(FOREIGN[name])


def test_voicemail_without_audio_is_malformed() -> None:
    raw = b"X-Asterisk-VM-Context: default\r\nX-Asterisk-VM-Extension: 1234\r\n\r\nhello\r\n"
    with pytest.raises(MalformedVoicemail, match="not multipart"):
        parse_message(raw)


def test_truncated_base64_is_reported() -> None:
    raw = asterisk_message(speech(1.0))
    cut = raw[: raw.rindex(b"\r\n\r\n--")][:-7]  # cut inside the last base64 line
    cut += b"\r\n--" + re.search(rb'boundary="([^"]+)"', raw).group(1) + b"--\r\n"  # type: ignore[union-attr]
    with pytest.raises(TruncatedAttachment, match="truncated"):
        parse_message(cut)


def test_invalid_base64_is_reported() -> None:
    raw = asterisk_message(speech(1.0)).replace(b"UklGR", b"Uk!GR", 1)
    with pytest.raises(MalformedVoicemail, match="not valid base64"):
        parse_message(raw)


def test_message_over_limit_is_refused_before_parsing() -> None:
    from imapvm.message.parse import MAX_MESSAGE_BYTES

    with pytest.raises(MessageTooLarge):
        parse_message(b"X" * (MAX_MESSAGE_BYTES + 1))


def test_attachment_over_128_mib_is_refused() -> None:
    head = asterisk_message(speech(0.1))
    start = head.index(b"UklGR")
    end = head.index(b"\r\n\r\n--", start)
    huge = b"A" * (MAX_AUDIO_BYTES // 3 * 4 + 8)
    with pytest.raises(MessageTooLarge, match="more than 134217728 bytes"):
        parse_message(head[:start] + huge + head[end:])


def test_damaged_audio_surfaces_as_audio_error_on_decode() -> None:
    from imapvm.audio import AudioFormatError

    raw = asterisk_message(speech(1.0), fmt="gsm")
    stored = parse_message(raw)
    bad = type(stored.message)(**{**stored.message.__dict__, "data": stored.message.data[:-1]})
    with pytest.raises(AudioFormatError, match="truncated frame"):
        bad.decode()
    assert decode(stored.message.data, "gsm").frames == 8000


@given(st.binary(max_size=600))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_crash(data: bytes) -> None:
    prefix = b"X-Asterisk-VM-Context: default\r\nX-Asterisk-VM-Extension: 1\r\n"
    for raw in (data, prefix + data):
        with contextlib.suppress(MessageError):
            parse_message(raw)


@given(st.integers(0, 3000))
@settings(max_examples=60, deadline=None)
def test_any_truncation_of_a_real_message_is_a_message_error_or_a_valid_read(cut: int) -> None:
    raw = asterisk_message(sawtooth(0.2), fmt="gsm")
    try:
        stored = parse_message(raw[:cut])
    except MessageError:
        return
    assert stored.message.data


def test_non_audio_attachments_are_not_recordings() -> None:
    raw = asterisk_message(speech(1.0))
    boundary = re.search(rb'boundary="([^"]+)"', raw).group(1)  # type: ignore[union-attr]
    note = (
        b"--" + boundary + b"\r\nContent-Type: text/plain; name=\"notes.txt\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
    )
    # a 4th top-level part added by some client: not a recording, not an intro
    closing = b"\r\n\r\n--" + boundary + b"--"
    extra = raw.replace(closing, b"\r\n" + note.replace(b"notes.txt", b"b.txt") + closing)
    stored = parse_message(extra)
    assert stored.alternatives == ()
    assert stored.message.filename == "msg0000.wav"


def test_parsing_and_building_are_thread_safe() -> None:
    from concurrent.futures import ThreadPoolExecutor

    audio = speech(2.0)

    def job(i: int) -> tuple[bytes, int]:
        built = build_voicemail(Deposit(number=i), vm_settings(), audio, randomness=FIXED)
        return built.raw, parse_message(built.raw).message.decode().frames

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(job, range(1, 17)))
    for i, (raw, frames) in enumerate(results, start=1):
        assert raw == build_voicemail(Deposit(number=i), vm_settings(), audio, randomness=FIXED).raw
        assert frames == audio.frames
