"""Build the e-mail stored in IMAP for a new voicemail, a forwarded copy or a greeting.

Headers follow reference §2.2 in Asterisk's order and spelling (every line CRLF, ``Date`` in the
mailbox's zone), so Asterisk and filters written for it read our messages unchanged. Our additions
come after Asterisk's last X- header and before ``MIME-Version``:

* ``Message-Context: voice-message`` (RFC 3458) and ``Content-Duration`` on each audio part
  (RFC 3803), which standard clients and servers understand;
* ``X-CallingTelephoneNumber``, ``X-VoiceMessageDuration``, ``X-VoiceMessageSenderName``, the
  headers Exchange unified messaging writes and Outlook shows;
* ``X-Imapvm-Mailbox`` (the real mailbox behind an ``imapvmshareid``, which keys greetings by
  mailbox *and* context, fixing §6 #22), ``X-Imapvm-Greeting`` on greetings, and
  ``X-Imapvm-Forwarded-*`` on forwarded copies.

Random parts (boundary, Message-ID, msg_id) and the clock are injectable, so the output is
byte-stable in tests. Building encodes audio (milliseconds per minute of speech): async callers
run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from imapvm.audio.core import Audio
from imapvm.audio.formats import encode, lookup
from imapvm.message.encoding import (
    CRLF,
    address_list_header,
    phrase_header,
    text_header,
    x_header,
)
from imapvm.message.layout import AudioPart, mime_body, text_part
from imapvm.message.meta import (
    FLAG_NONE,
    GREETING_NAMES,
    Deposit,
    ForwardInfo,
    VoicemailMeta,
    new_msg_id,
    strip_controls,
)
from imapvm.message.settings import EmailSettings
from imapvm.message.template import duration_text, expand, normalise_lines, vm_variables

DEFAULT_FROM_NAME = "Asterisk PBX"
HEADER_MAILBOX = "X-Imapvm-Mailbox"
HEADER_GREETING = "X-Imapvm-Greeting"
HEADER_FWD_MAILBOX = "X-Imapvm-Forwarded-From"
HEADER_FWD_TIME = "X-Imapvm-Forwarded-Time"
HEADER_FWD_COMMENT = "X-Imapvm-Comment-Duration"
HEADER_PARTIAL = "X-Imapvm-Partial"
PARTIAL_SENTENCE = (
    "This message is incomplete: the voicemail server stopped while the caller was still "
    "speaking, and this is everything recorded up to then."
)


@dataclass(frozen=True)
class BuiltMessage:
    """A ready-to-APPEND message: the bytes, its metadata and the IMAP flags to append with."""

    raw: bytes
    meta: VoicemailMeta
    #: ``("\\Flagged",)`` for urgent messages (Asterisk's APPEND flags), else empty: never \\Seen.
    flags: tuple[str, ...]
    #: Name of the Asterisk-visible attachment (part 2), e.g. ``msg0000.wav`` or ``unavail.wav``.
    filename: str


@dataclass(frozen=True)
class Randomness:
    """The non-deterministic inputs of a build, injectable for byte-exact tests."""

    now: datetime
    boundary_token: str
    message_id_token: str
    msg_id_token: int
    pid: int

    @classmethod
    def fresh(cls, now: datetime | None = None) -> Randomness:
        """Real clock and random tokens."""
        return cls(
            now=now or datetime.now(UTC),
            boundary_token=str(secrets.randbelow(10**10)),
            message_id_token=str(secrets.randbelow(10**10)),
            msg_id_token=secrets.randbits(32),
            pid=os.getpid(),
        )


def _zone_time(epoch: float, tz: str | None) -> datetime:
    if tz:
        return datetime.fromtimestamp(epoch, ZoneInfo(tz))
    return datetime.fromtimestamp(epoch).astimezone()


def _token(text: str) -> str:
    """Keep only characters safe inside a Message-ID or boundary."""
    return re.sub(r"[^A-Za-z0-9._-]", "", text)


def _encode_text(body: str, charset: str) -> tuple[bytes, str]:
    try:
        return body.encode(charset), charset
    except (LookupError, UnicodeEncodeError):
        return body.encode("utf-8"), "UTF-8"


def _audio_parts(
    settings: EmailSettings, audio: Audio, stem: str
) -> tuple[AudioPart, list[AudioPart]]:
    """The part-2 attachment in the preferred format, plus the extras for part 1."""
    seconds = audio.whole_seconds
    main_fmt = lookup(settings.preferred_format)
    main = AudioPart(f"{stem}.{main_fmt.extension}", main_fmt, encode(audio, main_fmt), seconds)
    extras = [
        AudioPart(f"{stem}.{fmt.extension}", fmt, encode(audio, fmt), seconds)
        for fmt in map(lookup, settings.extra_formats)
    ]
    return main, extras


def text_header_raw(subject: str) -> str:
    """Asterisk writes its default subjects raw even though ``[`` and ``:`` are MIME specials."""
    return f"Subject: {subject}{CRLF}"


def _default_body(meta: VoicemailMeta, fullname: str, date_text: str) -> str:
    dur = duration_text(meta.duration)
    number = f" (number {meta.number})" if meta.number else ""
    lines = [
        f"Dear {fullname}:",
        "",
        f"\tYou have a new voicemail, {dur} long{number}, in mailbox {meta.owner}",
        f"from {meta.callerid}, left on {date_text}.",
    ]
    if meta.forwarded is not None:
        fwd = meta.forwarded
        lines.append(f"It was forwarded to you by mailbox {fwd.mailbox}@{fwd.context}.")
    lines += ["", "\t\t\t\t--imapvm", ""]
    return CRLF.join(lines)


def _headers(
    settings: EmailSettings,
    meta: VoicemailMeta,
    subject_line: str,
    from_name: str,
    rnd: Randomness,
    boundary: str,
    extra: list[str],
    message_id: str | None = None,
) -> str:
    date = format_datetime(_zone_time(rnd.now.timestamp(), settings.tz))
    mid = message_id or (
        f"<Imapvm-{meta.number}-{rnd.message_id_token}-{_token(settings.mailbox)}-{rnd.pid}"
        f"@{_token(settings.hostname) or 'localhost'}>"
    )
    h = [
        f"Date: {date}{CRLF}",
        phrase_header("From", from_name, settings.sender, settings.charset)
        if from_name
        else f"From: {DEFAULT_FROM_NAME} <{settings.sender}>{CRLF}",
        address_list_header("To", settings.fullname, settings.recipients, settings.charset),
        subject_line,
        f"Message-ID: {mid}{CRLF}",
        x_header("X-Asterisk-VM-Message-Num", str(meta.number)),
        x_header("X-Asterisk-VM-Server-Name", meta.server_name),
        x_header("X-Asterisk-VM-Context", meta.context),
        x_header("X-Asterisk-VM-Extension", meta.extension),
        x_header("X-Asterisk-VM-Flag", meta.flag),
        x_header("X-Asterisk-VM-Priority", str(meta.priority)),
        x_header("X-Asterisk-VM-Caller-ID-Num", meta.caller_id_num),
        x_header("X-Asterisk-VM-Caller-ID-Name", meta.caller_id_name),
        x_header("X-Asterisk-VM-Duration", str(meta.duration)),
        x_header("X-Asterisk-VM-Category", meta.category),
        x_header("X-Asterisk-VM-Message-Type", meta.message_type),
        x_header("X-Asterisk-VM-Orig-date", meta.orig_date),
        x_header("X-Asterisk-VM-Orig-time", str(meta.orig_time)),
        x_header("X-Asterisk-VM-Message-ID", meta.msg_id or "(null)"),
    ]
    if meta.caller_id_num:
        h.append(x_header("X-Asterisk-CallerID", meta.caller_id_num))
    if meta.caller_id_name:
        h.append(x_header("X-Asterisk-CallerIDName", meta.caller_id_name))
    h += extra
    h.append(f"MIME-Version: 1.0{CRLF}")
    h.append(f'Content-Type: multipart/mixed; boundary="{boundary}"{CRLF}')
    return "".join(h)


def _boundary(number: int, settings: EmailSettings, rnd: Randomness) -> str:
    return f"----voicemail_{number}{_token(settings.mailbox)}{rnd.pid}{_token(rnd.boundary_token)}"


def _assemble(
    headers: str,
    body_text: str,
    charset: str,
    boundary: str,
    parts: tuple[AudioPart, list[AudioPart], AudioPart | None],
) -> bytes:
    """Join headers and MIME body; the text part is encoded in its own charset (8bit)."""
    main, extras, intro = parts
    body_bytes, used_charset = _encode_text(body_text, charset)
    marker = "\x00TEXT\x00"
    skeleton = mime_body(boundary, text_part(marker, used_charset), main, extras, intro)
    before, after = skeleton.split(marker)
    return (
        headers.encode("ascii")
        + CRLF.encode()
        + before.encode("ascii")
        + body_bytes
        + after.encode("ascii")
    )


def build_voicemail(
    deposit: Deposit,
    settings: EmailSettings,
    recording: Audio,
    *,
    intro: Audio | None = None,
    randomness: Randomness | None = None,
) -> BuiltMessage:
    """The stored e-mail for a new voicemail, or a forwarded copy when ``intro``/``forwarded``.

    ``recording`` is the caller's message (for a forward: the original message's audio).
    ``intro`` is the forwarder's spoken comment, written as part 3 in part 2's format so Asterisk
    plays it first; the headers keep the *original* caller, time, id and duration.
    """
    rnd = randomness or Randomness.fresh()
    now_epoch = int(rnd.now.timestamp())
    orig_time = deposit.orig_time if deposit.orig_time is not None else now_epoch
    orig_dt = _zone_time(orig_time, settings.tz)
    orig_date = orig_dt.strftime(settings.emaildateformat)
    forwarded = deposit.forwarded
    if forwarded is not None and intro is not None:
        forwarded = replace(forwarded, comment_duration=intro.whole_seconds)
    meta = VoicemailMeta(
        number=deposit.number,
        context=settings.context,
        extension=settings.extension,
        mailbox=settings.mailbox,
        flag=deposit.flag,
        priority=deposit.priority,
        caller_id_num=strip_controls(deposit.caller_id_num).strip(),
        caller_id_name=strip_controls(deposit.caller_id_name).strip(),
        duration=deposit.duration if deposit.duration is not None else recording.whole_seconds,
        orig_time=orig_time,
        orig_date=orig_date,
        category=deposit.category,
        msg_id=deposit.msg_id or new_msg_id(now_epoch, rnd.msg_id_token),
        server_name=settings.global_fromstring,
        forwarded=forwarded,
    )
    variables = vm_variables(meta, settings.fullname, orig_date)
    subject, body = subject_and_body(meta, settings, partial=deposit.partial)
    from_name = expand(settings.fromstring, variables) if settings.fromstring else ""

    stem = f"msg{meta.file_index:04d}"
    main, extras = _audio_parts(settings, recording, stem)
    intro_part = None
    if intro is not None:
        intro_part = AudioPart(
            f"msgintro{meta.file_index:04d}.{main.fmt.extension}",
            main.fmt,
            encode(intro, main.fmt),
            intro.whole_seconds,
        )
    extra_headers = [*_standard_headers(meta), x_header(HEADER_MAILBOX, settings.mailbox)]
    if forwarded is not None:
        extra_headers.append(
            x_header(HEADER_FWD_MAILBOX, f"{forwarded.mailbox}@{forwarded.context}")
        )
        extra_headers.append(x_header(HEADER_FWD_TIME, str(forwarded.time)))
        if forwarded.comment_duration is not None:
            extra_headers.append(x_header(HEADER_FWD_COMMENT, str(forwarded.comment_duration)))
    if deposit.partial:
        extra_headers.append(x_header(HEADER_PARTIAL, "yes"))
    boundary = _boundary(meta.number, settings, rnd)
    headers = _headers(settings, meta, subject, from_name, rnd, boundary, extra_headers,
                       deposit.message_id)
    raw = _assemble(headers, body, settings.charset, boundary, (main, extras, intro_part))
    flags = ("\\Flagged",) if meta.is_urgent else ()
    return BuiltMessage(raw=raw, meta=meta, flags=flags, filename=main.filename)


def subject_and_body(meta: VoicemailMeta, settings: EmailSettings, *,
                     partial: bool = False) -> tuple[str, str]:
    """The Subject header line and the text part of a voicemail; number 0 = not known, left
    out of the default subject and text (``message/renumber`` fills it in at delivery)."""
    variables = vm_variables(meta, settings.fullname, meta.orig_date)
    if settings.emailsubject:
        subject = text_header("Subject", expand(settings.emailsubject, variables), settings.charset)
    else:
        flag = f"{meta.flag} " if meta.flag != FLAG_NONE else ""
        prefix = "" if settings.pbxskip else "[PBX]: "
        number = f"{meta.number} " if meta.number else ""
        subject = text_header_raw(f"{prefix}New {flag}message {number}in mailbox {meta.owner}")
    if settings.emailbody:
        body = normalise_lines(expand(settings.emailbody, variables))
    else:
        body = _default_body(meta, settings.fullname, meta.orig_date)
    if not body.endswith(CRLF):
        body += CRLF
    if partial:
        body += CRLF + PARTIAL_SENTENCE + CRLF
    return subject, body


def _standard_headers(meta: VoicemailMeta) -> list[str]:
    h = [f"Message-Context: voice-message{CRLF}"]
    if meta.caller_id_num:
        h.append(x_header("X-CallingTelephoneNumber", meta.caller_id_num))
    h.append(x_header("X-VoiceMessageDuration", str(meta.duration)))
    if meta.caller_id_name:
        h.append(x_header("X-VoiceMessageSenderName", meta.caller_id_name))
    return h


def build_greeting(
    name: str,
    settings: EmailSettings,
    audio: Audio,
    *,
    randomness: Randomness | None = None,
) -> BuiltMessage:
    """A greeting message (``unavail``, ``busy``, ``greet`` = recorded name, ``temp``).

    Asterisk-readable (Message-Type = name, part 2 named ``<name>.<fmt>``) and keyed to this
    mailbox *and* context by ``X-Imapvm-Mailbox``, ``X-Asterisk-VM-Context`` and
    ``X-Imapvm-Greeting`` (Asterisk keys greetings by attachment name only, §6 #22). No
    Message-Context header: a greeting is not a message for the user to listen to.
    """
    if name not in GREETING_NAMES:
        raise ValueError(f"unknown greeting {name!r}; expected one of {GREETING_NAMES}")
    rnd = randomness or Randomness.fresh()
    now_epoch = int(rnd.now.timestamp())
    date_text = _zone_time(now_epoch, settings.tz).strftime(settings.emaildateformat)
    meta = VoicemailMeta(
        number=0,
        context=settings.context,
        extension=settings.extension,
        mailbox=settings.mailbox,
        duration=audio.whole_seconds,
        orig_time=now_epoch,
        orig_date=date_text,
        message_type=name,
        msg_id=new_msg_id(now_epoch, rnd.msg_id_token),
        server_name=settings.global_fromstring,
    )
    subject = text_header_raw(f"New greeting '{name}' on {date_text}.")
    body = (
        f"This message holds the '{name}' greeting of mailbox {settings.mailbox}"
        f"@{settings.context}, changed on {date_text}.{CRLF}"
        f"Please do not delete it: deleting this message deletes the greeting.{CRLF}"
    )
    from_name = expand(settings.fromstring, vm_variables(meta, settings.fullname, date_text))
    main, extras = _audio_parts(settings, audio, name)
    extra_headers = [
        x_header(HEADER_MAILBOX, settings.mailbox),
        x_header(HEADER_GREETING, name),
    ]
    boundary = _boundary(0, settings, rnd)
    headers = _headers(settings, meta, subject, from_name, rnd, boundary, extra_headers)
    raw = _assemble(headers, body, settings.charset, boundary, (main, extras, None))
    return BuiltMessage(raw=raw, meta=meta, flags=(), filename=main.filename)


__all__ = [
    "BuiltMessage",
    "Deposit",
    "ForwardInfo",
    "Randomness",
    "build_greeting",
    "build_voicemail",
]
