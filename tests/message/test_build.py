"""Builder details: header order and values (reference §2.2), encodings, templates, layout."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imapvm.message import FLAG_PRIORITY, FLAG_URGENT, Deposit, Randomness, build_voicemail
from imapvm.message.encoding import needs_mime, q_words
from imapvm.message.template import expand, substitute_escapes
from tests.message.helpers import FIXED, sawtooth, strict_parse
from tests.message.helpers import settings as vm_settings

ASTERISK_ORDER = [
    "Date", "From", "To", "Subject", "Message-ID",
    "X-Asterisk-VM-Message-Num", "X-Asterisk-VM-Server-Name", "X-Asterisk-VM-Context",
    "X-Asterisk-VM-Extension", "X-Asterisk-VM-Flag", "X-Asterisk-VM-Priority",
    "X-Asterisk-VM-Caller-ID-Num", "X-Asterisk-VM-Caller-ID-Name", "X-Asterisk-VM-Duration",
    "X-Asterisk-VM-Category", "X-Asterisk-VM-Message-Type", "X-Asterisk-VM-Orig-date",
    "X-Asterisk-VM-Orig-time", "X-Asterisk-VM-Message-ID", "X-Asterisk-CallerID",
    "X-Asterisk-CallerIDName",
]


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith(" ")]


def header(raw: bytes, name: str) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    m = re.search(rf"^{re.escape(name)}: ?([^\r\n]*(?:\r\n [^\r\n]*)*)", head, re.MULTILINE)
    assert m, name
    return m.group(1)


def build(deposit: Deposit | None = None, **changes: object) -> bytes:
    return build_voicemail(
        deposit or Deposit(number=1, caller_id_num="5551234", caller_id_name="Andy"),
        vm_settings(**changes),
        sawtooth(1.0),
        randomness=FIXED,
    ).raw


def test_header_order_is_asterisks_then_ours_then_mime() -> None:
    names = header_names(build())
    assert names[: len(ASTERISK_ORDER)] == ASTERISK_ORDER
    assert names[len(ASTERISK_ORDER) :] == [
        "Message-Context", "X-CallingTelephoneNumber", "X-VoiceMessageDuration",
        "X-VoiceMessageSenderName", "X-Imapvm-Mailbox", "MIME-Version", "Content-Type",
    ]


def test_optional_caller_headers_absent_without_caller_id() -> None:
    names = header_names(build(Deposit(number=1)))
    for absent in ("X-Asterisk-CallerID", "X-Asterisk-CallerIDName", "X-CallingTelephoneNumber",
                   "X-VoiceMessageSenderName"):
        assert absent not in names
    raw = build(Deposit(number=1))
    assert b"X-Asterisk-VM-Caller-ID-Num: \r\n" in raw  # empty but present, as Asterisk writes


def test_header_values() -> None:
    raw = build(Deposit(number=3, caller_id_num="555", caller_id_name="A", priority=2,
                        orig_time=1795000000, msg_id="1795000000-0000002a"),
                imapvmshareid="shared-vm", global_fromstring="Shawshank")
    assert header(raw, "Date") == "Thu, 26 Nov 2026 09:30:05 -0500"  # mailbox tz, not UTC
    assert header(raw, "X-Asterisk-VM-Extension") == "shared-vm"
    assert header(raw, "X-Imapvm-Mailbox") == "1234"
    assert header(raw, "X-Asterisk-VM-Server-Name") == "Shawshank"
    assert header(raw, "X-Asterisk-VM-Priority") == "2"
    assert header(raw, "X-Asterisk-VM-Duration") == "1"
    assert header(raw, "X-VoiceMessageDuration") == "1"
    assert header(raw, "Message-Context") == "voice-message"
    assert header(raw, "X-Asterisk-VM-Orig-time") == "1795000000"
    assert header(raw, "X-Asterisk-VM-Orig-date") == "Wednesday, November 18, 2026 at 06:06:40 AM"
    assert header(raw, "X-Asterisk-VM-Message-ID") == "1795000000-0000002a"
    assert header(raw, "Message-ID") == "<Imapvm-3-846930886-1234-4242@pbx.example.org>"
    assert header(raw, "Content-Type") == (
        'multipart/mixed; boundary="----voicemail_3123442421804289383"'
    )


def test_new_msg_id_has_asterisks_shape() -> None:
    raw = build()
    assert header(raw, "X-Asterisk-VM-Message-ID") == f"{int(FIXED.now.timestamp())}-00000001"
    fresh = build_voicemail(Deposit(number=1), vm_settings(), sawtooth(0.1)).meta.msg_id
    assert fresh is not None
    assert re.fullmatch(r"\d{10}-[0-9a-f]{8}", fresh)


@pytest.mark.parametrize(
    ("flag", "pbxskip", "subject"),
    [
        ("", False, "[PBX]: New message 1 in mailbox 1234"),
        (FLAG_URGENT, False, "[PBX]: New Urgent message 1 in mailbox 1234"),
        (FLAG_PRIORITY, True, "New PRIORITY message 1 in mailbox 1234"),
    ],
)
def test_default_subjects(flag: str, pbxskip: bool, subject: str) -> None:
    raw = build(Deposit(number=1, flag=flag), pbxskip=pbxskip)
    assert header(raw, "Subject") == subject  # raw, as Asterisk writes its default


def test_urgent_gets_flagged_on_append_never_seen() -> None:
    urgent = build_voicemail(Deposit(number=1, flag=FLAG_URGENT), vm_settings(), sawtooth(0.1))
    normal = build_voicemail(Deposit(number=1), vm_settings(), sawtooth(0.1))
    assert urgent.flags == ("\\Flagged",)
    assert normal.flags == ()


def test_from_header_forms() -> None:
    assert header(build(), "From") == "Asterisk PBX <asterisk@pbx.example.org>"
    assert header(build(fromstring="Voicemail System"), "From") == (
        '"Voicemail System" <asterisk@pbx.example.org>'
    )
    assert header(build(fromstring="VM ${VM_CIDNAME}", serveremail="vm@example.com"), "From") == (
        '"VM Andy" <vm@example.com>'
    )
    assert header(build(fromstring="Voicemail, Inc."), "From") == (
        "=?ISO-8859-1?Q?Voicemail=2C_Inc=2E?= <asterisk@pbx.example.org>"
    )


def test_to_header_forms() -> None:
    two = build(emails=("a@x.org", "b@y.org"), fullname="Red")
    assert header(two, "To") == '"Red" <a@x.org>,\r\n "Red" <b@y.org>'
    fallback = build(emails=(), fullname="Red")  # §2.1 step 6: imapuser when no email
    assert header(fallback, "To") == '"Red" <eredding>'


def test_custom_subject_and_body_with_variables_and_escapes() -> None:
    raw = build(
        Deposit(number=2, caller_id_num="555", caller_id_name="Andy"),
        emailsubject="Voicemail ${VM_MSGNUM} from ${VM_CIDNAME}",
        emailbody="Hello ${VM_NAME}\\n${VM_CALLERID} left ${VM_DUR}\\r\\n\\tin ${VM_CONTEXT}"
        "/${VM_MAILBOX} ${VM_CATEGORY} ${UNSET}\\\\n",
    )
    assert header(raw, "Subject") == "Voicemail 2 from Andy"  # no specials: not encoded
    body = raw.split(b"Content-Transfer-Encoding: 8bit\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    assert body == (
        b'Hello Ellis Redding\r\n"Andy" <555> left 0:01\r\n\tin default/1234 no category \\n\r\n'
    )
    assert b"\r\r\n" not in raw  # reference §6 #28 (CR CR LF) not repeated


def test_subject_cannot_inject_headers() -> None:
    raw = build(emailsubject="hi\\nBcc: victim@example.com")
    assert b"\r\nBcc:" not in raw
    assert strict_parse(raw)["Subject"] == "hi Bcc: victim@example.com"


def test_latin1_body_and_utf8_fallback() -> None:
    latin = build(emailbody="Grüße ${VM_NAME}", fullname="Zoë")
    assert "Grüße Zoë".encode("latin-1") in latin
    assert b"charset=ISO-8859-1" in latin
    cjk = build(emailbody="留言 ${VM_NAME}", fullname="Zoë")
    assert "留言 Zoë".encode() in cjk
    assert b"Content-Type: text/plain; charset=UTF-8" in cjk
    for raw, text in ((latin, "Grüße Zoë"), (cjk, "留言 Zoë")):
        msg = strict_parse(raw)
        plain = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
        assert plain.get_content().strip() == text


def test_base64_lines_are_72_characters() -> None:
    raw = build()
    blocks = re.findall(rb"\r\n\r\n((?:[A-Za-z0-9+/=]+\r\n)+)", raw)
    assert len(blocks) == 2  # the gsm copy and the WAV message part
    for block in blocks:
        lines = block.split(b"\r\n")[:-1]
        assert all(len(ln) == 72 for ln in lines[:-1])
        assert 0 < len(lines[-1]) <= 72


def test_every_part_has_content_duration_and_name_first() -> None:
    raw = build_voicemail(
        Deposit(number=1), vm_settings(client_formats=("mp3",)), sawtooth(3.2), randomness=FIXED
    ).raw
    msg = strict_parse(raw)
    audio = [p for p in msg.walk() if p.get_content_maintype() == "audio"]
    assert [p.get_filename() for p in audio] == ["msg0000.gsm", "msg0000.mp3", "msg0000.WAV"]
    for p in audio:
        assert p["Content-Duration"] == "3"
        assert p.get_params()[1] == ("name", p.get_filename())  # first parameter is the name


def test_date_uses_system_zone_when_no_tz() -> None:
    raw = build(tz=None)
    local = datetime.fromtimestamp(FIXED.now.timestamp()).astimezone()
    assert header(raw, "Date").endswith(local.strftime("%z"))


@given(st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_q_words_decode_back_and_stay_short(text: str) -> None:
    from email.header import decode_header, make_header

    words = q_words(text, "ISO-8859-1")
    assert all(len(w) <= 75 for w in words)
    assert str(make_header(decode_header(" ".join(words)))) == text


def test_check_mime_trigger_matches_reference() -> None:
    for ch in '()<>@,:;/"[]?.=':
        assert needs_mime(f"a{ch}b")
    assert needs_mime("é")
    assert needs_mime("\x01")
    assert not needs_mime("Plain Name-1 _+*!'")


def test_escapes() -> None:
    assert substitute_escapes(r"a\nb\tc\\d\re\q") == "a\r\nb\tc\\d\re\\q"
    assert expand("${A}${B}$${A}", {"A": "${B}", "B": "x"}) == "${B}x$${B}"


def test_randomness_fresh_differs_between_builds() -> None:
    a, b = Randomness.fresh(), Randomness.fresh()
    assert (a.boundary_token, a.message_id_token) != (b.boundary_token, b.message_id_token)
    assert a.now.tzinfo is UTC


def test_to_header_without_any_address_is_an_empty_group() -> None:
    raw = build(emails=(), imapuser="")
    assert header(raw, "To") == "undisclosed-recipients:;"
    strict_parse(raw)


@pytest.mark.parametrize("formats", [("wav",), ("wav49",), ("gsm",), ("ulaw",), ("alaw",)])
@pytest.mark.parametrize("client_formats", [(), ("mp3", "opus", "ogg")])
@pytest.mark.parametrize("kind", ["plain", "urgent", "forward", "greeting"])
def test_every_variant_reads_cleanly_with_the_modern_email_policy(
    formats: tuple[str, ...], client_formats: tuple[str, ...], kind: str
) -> None:
    from imapvm.message import ForwardInfo, build_greeting, parse_message

    s = vm_settings(formats=formats, client_formats=client_formats)
    audio = sawtooth(1.2)
    if kind == "greeting":
        raw = build_greeting("temp", s, audio, randomness=FIXED).raw
    else:
        raw = build_voicemail(
            Deposit(number=3, caller_id_num="555", flag=FLAG_URGENT if kind == "urgent" else "",
                    forwarded=ForwardInfo("9", "other", 5) if kind == "forward" else None),
            s,
            audio,
            intro=sawtooth(0.4) if kind == "forward" else None,
            randomness=FIXED,
        ).raw
    msg = strict_parse(raw)
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().strip()
    leaves = [p for p in msg.walk() if p.get_content_maintype() in ("audio", "application")]
    assert len(leaves) == len(parse_message(raw).recordings) + (kind == "forward")
