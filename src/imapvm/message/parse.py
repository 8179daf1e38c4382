"""Read a stored voicemail or greeting back: metadata from headers, audio from the MIME parts.

Accepts what imapvm writes and what Asterisk writes, plus what mail servers do to either:
header names in any case (Exchange lowercases them, ASTERISK-24787), folded headers (unfolded here,
unlike Asterisk), optional headers missing (every field has a default), 8-bit header bytes, and the
trailing ``.`` line Asterisk's sendmail path leaves after the closing boundary. Ordinary mail in a
shared folder raises :class:`~imapvm.message.errors.ForeignMessage`; a damaged voicemail raises
:class:`~imapvm.message.errors.MalformedVoicemail`. Nothing else escapes: any other parser
surprise is reported as malformed, never as a crash of the caller.

Audio location follows :mod:`imapvm.message.layout`: top-level part 2 is the message (Asterisk's
rule), part 3 the forward comment, and audio leaves nested in part 1 (or beyond part 3) are the same
recording in other formats. Audio is only base64-decoded here; turning it into samples is
:meth:`StoredAudio.decode`, a separate step because most readers need one format only.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

from imapvm.audio.core import MAX_AUDIO_BYTES, Audio
from imapvm.audio.errors import UnsupportedFormat
from imapvm.audio.formats import AudioFormat, decode, lookup
from imapvm.message.build import (
    HEADER_FWD_COMMENT,
    HEADER_FWD_MAILBOX,
    HEADER_FWD_TIME,
    HEADER_GREETING,
    HEADER_MAILBOX,
)
from imapvm.message.encoding import decode_words
from imapvm.message.errors import (
    ForeignMessage,
    MalformedVoicemail,
    MessageError,
    MessageTooLarge,
    TruncatedAttachment,
)
from imapvm.message.meta import GREETING_NAMES, MESSAGE_TYPE, ForwardInfo, VoicemailMeta

#: Largest stored message we parse: one 128 MiB attachment in base64 (4/3) plus headroom. Larger
#: messages are refused before any parsing work.
MAX_MESSAGE_BYTES = MAX_AUDIO_BYTES * 4 // 3 + 16 * 1024 * 1024


@dataclass(frozen=True)
class StoredAudio:
    """One audio attachment: its name, the format derived from it, and the file's bytes."""

    filename: str
    #: Text after the first ``.`` of the file name: Asterisk's rule for the format.
    format_name: str
    content_type: str
    data: bytes
    #: RFC 3803 Content-Duration in seconds, when the writer gave one.
    duration: int | None

    @property
    def fmt(self) -> AudioFormat | None:
        """The known format, or None for a format imapvm cannot decode."""
        try:
            return lookup(self.format_name)
        except UnsupportedFormat:
            return None

    def decode(self, *, resample: bool = True) -> Audio:
        """Decode to 8 kHz samples (CPU work: call through ``asyncio.to_thread`` when async)."""
        return decode(self.data, self.format_name, resample=resample)


@dataclass(frozen=True)
class StoredMessage:
    """A parsed voicemail or greeting."""

    meta: VoicemailMeta
    #: Top-level part 2: what Asterisk plays.
    message: StoredAudio
    #: The same recording in other formats (the ``.gsm`` copy, client formats).
    alternatives: tuple[StoredAudio, ...]
    #: Forward-with-comment intro (part 3), played before the message.
    intro: StoredAudio | None
    subject: str
    date: datetime | None
    message_id: str | None

    @property
    def recordings(self) -> tuple[StoredAudio, ...]:
        """Every copy of the recording, Asterisk's part first."""
        return (self.message, *self.alternatives)

    def pick(self, preferences: Sequence[str]) -> StoredAudio:
        """The first copy whose format is in ``preferences`` (in that order), else part 2."""
        for want in preferences:
            try:
                wanted = lookup(want).name
            except UnsupportedFormat:
                continue
            for audio in self.recordings:
                if audio.fmt is not None and audio.fmt.name == wanted:
                    return audio
        return self.message


def _text(value: object) -> str:
    """A header value as text: unfolded, 8-bit bytes read as UTF-8, encoded-words decoded."""
    if isinstance(value, Header):
        chunks = []
        for data, charset in decode_header(value):
            if isinstance(data, bytes):
                try:
                    chunks.append(data.decode(charset or "utf-8"))
                except (LookupError, UnicodeDecodeError):
                    chunks.append(data.decode("utf-8", errors="replace"))
            else:
                chunks.append(data)
        text = "".join(chunks)
    else:
        text = str(value)
        if any("\udc80" <= ch <= "\udcff" for ch in text):
            text = text.encode("ascii", "surrogateescape").decode("utf-8", errors="replace")
    text = re.sub(r"\r?\n(?=[ \t])", "", text).strip()
    return decode_words(text)


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)  # case-insensitive; the first occurrence wins, as in Asterisk
    return None if value is None else _text(value)


def _int(value: str | None, default: int = 0) -> int:
    if not value:
        return default
    m = re.match(r"\s*([+-]?\d+)", value)
    return int(m.group(1)) if m else default


def _b64(text: str) -> bytes:
    cleaned = re.sub(r"\s+", "", text)
    if len(cleaned) * 3 // 4 > MAX_AUDIO_BYTES:
        raise MessageTooLarge(f"attachment decodes to more than {MAX_AUDIO_BYTES} bytes")
    if len(cleaned) % 4:
        raise TruncatedAttachment(
            f"base64 attachment is truncated ({len(cleaned)} characters, not a multiple of 4)"
        )
    try:
        return binascii.a2b_base64(cleaned, strict_mode=True)
    except binascii.Error as exc:
        raise MalformedVoicemail(f"attachment is not valid base64: {exc}") from exc


def _filename(part: Message) -> str | None:
    name = part.get_param("name") or part.get_filename()
    if name is None:
        params = part.get_params() or []
        name = params[1][1] if len(params) > 1 else None
    if isinstance(name, tuple):  # RFC 2231 continuation
        name = str(name[2])
    return _text(name) if name else None


def _audio(part: Message) -> StoredAudio | None:
    """The attachment of a leaf part, or None when it carries no named file."""
    if part.is_multipart():
        return None
    filename = _filename(part)
    if not filename or "." not in filename:
        return None
    if part.get_content_maintype() == "text" and not part.get_param("name"):
        return None
    cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    payload = part.get_payload()
    if cte == "base64" and isinstance(payload, str):
        data = _b64(payload)
    else:
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
    duration = part.get("Content-Duration")
    return StoredAudio(
        filename=filename,
        format_name=filename.split(".", 1)[1],
        content_type=part.get_content_type(),
        data=data,
        duration=_int(str(duration), 0) if duration is not None else None,
    )


def _is_audio(attachment: StoredAudio) -> bool:
    """Outside part 2 (where Asterisk takes anything), only audio counts as another copy."""
    return attachment.content_type.startswith("audio/") or attachment.fmt is not None


def _leaves(part: Message) -> list[Message]:
    if not part.is_multipart():
        return [part]
    out: list[Message] = []
    for sub in part.get_payload():
        if isinstance(sub, Message):
            out.extend(_leaves(sub))
    return out


def _locate(msg: Message) -> tuple[StoredAudio, list[StoredAudio], StoredAudio | None]:
    if not msg.is_multipart():
        raise MalformedVoicemail("voicemail headers but no attachment (not multipart)")
    parts = [p for p in msg.get_payload() if isinstance(p, Message)]
    main = _audio(parts[1]) if len(parts) > 1 else None
    intro = _audio(parts[2]) if len(parts) > 2 else None
    if intro is not None and (not intro.data or not _is_audio(intro)):
        intro = None  # Asterisk ignores an empty part 3 too; a text part 3 is nobody's intro
    others = [parts[0], *parts[3:]] if main is not None else parts
    alternatives = [
        a for p in others for leaf in _leaves(p) if (a := _audio(leaf)) is not None and _is_audio(a)
    ]
    if main is None:
        # Not Asterisk's layout; still give the user their recording if there is one.
        if not alternatives:
            raise MalformedVoicemail("voicemail has no audio attachment")
        main, alternatives = alternatives[0], alternatives[1:]
    if not main.data:
        raise MalformedVoicemail(f"attachment {main.filename} is empty")
    return main, alternatives, intro


def _forwarded(msg: Message) -> ForwardInfo | None:
    origin = _header(msg, HEADER_FWD_MAILBOX)
    if not origin:
        return None
    mailbox, _, context = origin.partition("@")
    comment = _header(msg, HEADER_FWD_COMMENT)
    return ForwardInfo(
        mailbox=mailbox,
        context=context,
        time=_int(_header(msg, HEADER_FWD_TIME)),
        comment_duration=_int(comment) if comment else None,
    )


def _meta(msg: Message, context: str, extension: str, message_type: str) -> VoicemailMeta:
    msg_id = _header(msg, "X-Asterisk-VM-Message-ID")
    return VoicemailMeta(
        number=_int(_header(msg, "X-Asterisk-VM-Message-Num")),
        context=context,
        extension=extension,
        mailbox=_header(msg, HEADER_MAILBOX) or None,
        flag=_header(msg, "X-Asterisk-VM-Flag") or "",
        priority=_int(_header(msg, "X-Asterisk-VM-Priority")),
        caller_id_num=_header(msg, "X-Asterisk-VM-Caller-ID-Num")
        or _header(msg, "X-Asterisk-CallerID")
        or "",
        caller_id_name=_header(msg, "X-Asterisk-VM-Caller-ID-Name")
        or _header(msg, "X-Asterisk-CallerIDName")
        or "",
        duration=_int(_header(msg, "X-Asterisk-VM-Duration")),
        orig_time=_int(_header(msg, "X-Asterisk-VM-Orig-time")),
        orig_date=_header(msg, "X-Asterisk-VM-Orig-date") or "",
        category=_header(msg, "X-Asterisk-VM-Category") or "",
        message_type=message_type,
        msg_id=None if msg_id in (None, "", "(null)") else msg_id,
        server_name=_header(msg, "X-Asterisk-VM-Server-Name") or "",
        forwarded=_forwarded(msg),
    )


def parse_meta(raw: bytes) -> VoicemailMeta:
    """The metadata of a stored voicemail from its header block only (no MIME walk, no base64:
    cheap for multi-megabyte messages). Raises :class:`ForeignMessage` like parse_message."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(head + b"\r\n\r\n")
    context = _header(msg, "X-Asterisk-VM-Context")
    extension = _header(msg, "X-Asterisk-VM-Extension")
    if context is None or extension is None:
        raise ForeignMessage("no X-Asterisk-VM-Context/X-Asterisk-VM-Extension header")
    message_type = (_header(msg, "X-Asterisk-VM-Message-Type") or _header(msg, HEADER_GREETING)
                    or MESSAGE_TYPE)
    return _meta(msg, context, extension, message_type)


def parse_message(raw: bytes) -> StoredMessage:
    """Parse the RFC 822 bytes of a stored voicemail or greeting.

    Raises :class:`ForeignMessage` for mail that is not voicemail, :class:`MalformedVoicemail`
    (or its :class:`TruncatedAttachment` subclass) for damaged voicemail, and
    :class:`MessageTooLarge` above :data:`MAX_MESSAGE_BYTES`.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        msg = message_from_bytes(raw, policy=policy.compat32)
        context = _header(msg, "X-Asterisk-VM-Context")
        extension = _header(msg, "X-Asterisk-VM-Extension")
        if context is None or extension is None:
            raise ForeignMessage("no X-Asterisk-VM-Context/X-Asterisk-VM-Extension header")
        main, alternatives, intro = _locate(msg)
        return _assemble(msg, context, extension, main, alternatives, intro)
    except MessageError:
        raise
    except Exception as exc:  # a parser surprise must not take a mailbox scan down
        raise MalformedVoicemail(f"unreadable message: {exc!r}") from exc


def _assemble(
    msg: Message,
    context: str,
    extension: str,
    main: StoredAudio,
    alternatives: list[StoredAudio],
    intro: StoredAudio | None,
) -> StoredMessage:
    base = main.filename.split(".", 1)[0]
    message_type = (
        _header(msg, "X-Asterisk-VM-Message-Type")
        or _header(msg, HEADER_GREETING)
        or (base if base in GREETING_NAMES else MESSAGE_TYPE)
    )
    meta = _meta(msg, context, extension, message_type)
    date_text = _header(msg, "Date")
    try:
        date = parsedate_to_datetime(date_text) if date_text else None
    except (TypeError, ValueError):
        date = None
    return StoredMessage(
        meta=meta,
        message=main,
        alternatives=tuple(alternatives),
        intro=intro,
        subject=_header(msg, "Subject") or "",
        date=date,
        message_id=_header(msg, "Message-ID"),
    )
