"""The two notifications of a new voicemail (reference §2.6), built from the stored e-mail.

* The **owner's e-mail** (``email=``): Asterisk's ``make_email_file`` without the IMAP headers.
  The stored e-mail already has the owner's ``To:``, the ``emailsubject``/``emailbody``/
  ``fromstring`` texts and the attachment in ``attachfmt``; the notification is that e-mail
  minus every ``X-Asterisk-*``/``X-Imapvm-*`` header (a mail client filing it in the same IMAP
  account must not count it as a second voicemail), with a Message-ID of its own, and without
  the recordings when ``attach=no`` (then only the text part is left).
* The **pager notice** (``pager=``): a short text mail, ``pagersubject``/``pagerbody``/
  ``pagerfromstring``/``pagerdateformat``; by default the subject ``New VM`` and a two-line body
  with the duration, the mailbox, the caller and the date, as Asterisk's ``sendpage`` writes.

Deriving both from the stored bytes (rather than from the call) means every path that stores a
voicemail (a call, a forward, ``imapvm deposit``) notifies the same way, and the outbox needs to
keep nothing else.
"""

from __future__ import annotations

import secrets
import socket
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.generator import BytesGenerator
from email.utils import format_datetime
from io import BytesIO
from zoneinfo import ZoneInfo

from imapvm.config.model import MailboxSettings
from imapvm.message.build import DEFAULT_FROM_NAME
from imapvm.message.encoding import CRLF, address_list_header, phrase_header, text_header
from imapvm.message.meta import FLAG_NONE, VoicemailMeta
from imapvm.message.parse import parse_meta
from imapvm.message.template import duration_text, expand, normalise_lines, vm_variables

#: Headers of the stored copy that the notification leaves out (Asterisk's imap=0 build).
DROPPED_PREFIXES = ("x-asterisk-", "x-imapvm-")


def _template(text: str) -> str:
    """voicemail.conf's texts have had their escapes applied already; ``expand`` applies them
    again, so literal backslashes must reach it escaped."""
    return text.replace("\\", "\\\\")


def sender_address(ms: MailboxSettings, hostname: str | None = None) -> str:
    """``serveremail``, qualified with the host name when it has no ``@`` (as Asterisk)."""
    if "@" in ms.serveremail:
        return ms.serveremail
    return f"{ms.serveremail}@{hostname or socket.gethostname()}"


def recipients(ms: MailboxSettings) -> tuple[str, ...]:
    """The owner's addresses (``email``, ``|``-separated), empty when none is configured."""
    return tuple(a.strip() for a in ms.emails if a.strip())


def _message_id(kind: str, ms: MailboxSettings, hostname: str | None) -> str:
    host = hostname or socket.gethostname() or "localhost"
    return f"<Imapvm-{kind}-{secrets.token_hex(8)}-{ms.mailbox}@{host}>"


def owner_email(stored: bytes, ms: MailboxSettings, *, hostname: str | None = None) -> bytes:
    """The e-mail for ``email=``: the stored message without the voicemail headers (and without
    the recordings when ``attach=no``); CRLF line ends."""
    head, sep, body = stored.partition(b"\r\n\r\n")
    if ms.attach and sep:
        # Only the header block changes: the (multi-megabyte) body is passed on byte for byte.
        return _rewrite_headers(head, _message_id("Notify", ms, hostname)) + sep + body
    msg = message_from_bytes(stored, policy=policy.compat32)
    for name in {k.lower() for k in msg}:
        if name.startswith(DROPPED_PREFIXES):
            del msg[name]
    if "Message-ID" in msg:
        msg.replace_header("Message-ID", _message_id("Notify", ms, hostname))
    else:
        msg["Message-ID"] = _message_id("Notify", ms, hostname)
    if not ms.attach and msg.is_multipart():
        text = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
        msg.set_payload([text] if text is not None else [])
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=policy.compat32.clone(linesep=CRLF)).flatten(msg)
    return out.getvalue()


def _rewrite_headers(head: bytes, message_id: str) -> bytes:
    """A CRLF header block without the voicemail headers, with ``message_id`` as Message-ID."""
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)  # a folded continuation
        else:
            fields.append([line])
    kept: list[bytes] = []
    replaced = False
    for field in fields:
        name = field[0].split(b":", 1)[0].strip().lower().decode("ascii", "replace")
        if name.startswith(DROPPED_PREFIXES):
            continue
        if name == "message-id":
            kept.append(f"Message-ID: {message_id}".encode())
            replaced = True
            continue
        kept.extend(field)
    if not replaced:
        kept.append(f"Message-ID: {message_id}".encode())
    return b"\r\n".join(kept)


def _date_text(meta: VoicemailMeta, ms: MailboxSettings, fmt: str) -> str:
    tz = ZoneInfo(ms.zone.timezone) if ms.zone else None
    when = datetime.fromtimestamp(meta.orig_time, tz) if tz else \
        datetime.fromtimestamp(meta.orig_time).astimezone()
    return when.strftime(fmt)


def pager_email(stored: bytes, ms: MailboxSettings, *, hostname: str | None = None,
                now: datetime | None = None) -> bytes:
    """The short notice for ``pager=`` (Asterisk's ``sendpage``); CRLF line ends."""
    meta = parse_meta(stored)
    date_text = _date_text(meta, ms, ms.pagerdateformat)
    variables = vm_variables(meta, ms.fullname, date_text)
    charset = ms.charset
    if ms.pagersubject:
        subject = text_header("Subject", expand(_template(ms.pagersubject), variables), charset)
    else:
        subject = f"Subject: New VM{CRLF}"
    if ms.pagerbody:
        body = normalise_lines(expand(_template(ms.pagerbody), variables))
    else:
        flag = f"{meta.flag.lower()} " if meta.flag != FLAG_NONE else ""
        body = (f"New {duration_text(meta.duration)} long {flag}msg in box {meta.owner}{CRLF}"
                f"from {meta.callerid}, on {date_text}")
    if not body.endswith(CRLF):
        body += CRLF
    sender = sender_address(ms, hostname)
    from_name = expand(_template(ms.pagerfromstring), variables) if ms.pagerfromstring else ""
    when = now or datetime.now(UTC)
    tz = ZoneInfo(ms.zone.timezone) if ms.zone else None
    headers = [
        f"Date: {format_datetime(when.astimezone(tz) if tz else when.astimezone())}{CRLF}",
        phrase_header("From", from_name, sender, charset) if from_name
        else f"From: {DEFAULT_FROM_NAME} <{sender}>{CRLF}",
        address_list_header("To", ms.fullname, (ms.pager.strip(),), charset),
        subject,
        f"Message-ID: {_message_id('Pager', ms, hostname)}{CRLF}",
        f"MIME-Version: 1.0{CRLF}",
        f"Content-Type: text/plain; charset={charset}{CRLF}",
        f"Content-Transfer-Encoding: 8bit{CRLF}",
    ]
    try:
        encoded = body.encode(charset)
    except (LookupError, UnicodeEncodeError):
        encoded = body.encode("utf-8")
        headers[-2] = f"Content-Type: text/plain; charset=UTF-8{CRLF}"
    return "".join(headers).encode("ascii") + CRLF.encode() + encoded

