"""Give a built voicemail its message number at delivery time.

Asterisk numbers a message "the count of messages in the mailbox, plus one" when the caller
hangs up. With an outbox and several nodes that count is stale by delivery (the store was down:
"number 1"; two nodes counted at once: "New message 14" twice). The number is therefore set
again just before the message is appended, from the mailbox as it is then: this module rewrites
what depends on it (the ``Subject``, ``X-Asterisk-VM-Message-Num`` and the text part) and leaves
every other byte alone (the Message-ID in particular, which the outbox uses to never deliver
twice, and the audio).
"""

from __future__ import annotations

import re
from dataclasses import replace

from imapvm.message.build import HEADER_PARTIAL, subject_and_body
from imapvm.message.encoding import x_header
from imapvm.message.layout import inner_boundary
from imapvm.message.parse import parse_message
from imapvm.message.settings import EmailSettings

_BOUNDARY = re.compile(rb'boundary="([^"]+)"', re.I)
_CHARSET = re.compile(rb"charset=([A-Za-z0-9_.:-]+)", re.I)
_ATTACHMENT = re.compile(rb'((?:file)?name="msg(?:intro)?)(\d{4})(\.)')
_TEXT_PART = re.compile(rb"Content-Type: text/plain; charset=[^\r\n]*\r\n"
                        rb"Content-Transfer-Encoding: 8bit\r\n\r\n")


class CannotRenumber(ValueError):
    """The message is not laid out as imapvm builds voicemail; it is delivered unchanged."""


def _header_blocks(head: bytes) -> list[bytes]:
    """Header fields with their folded continuation lines, each ending in CRLF."""
    blocks: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and blocks:
            blocks[-1] += line + b"\r\n"
        else:
            blocks.append(line + b"\r\n")
    return blocks


def _name(block: bytes) -> bytes:
    return block.split(b":", 1)[0].strip().lower()


def message_number(raw: bytes) -> int:
    """X-Asterisk-VM-Message-Num of a built message (0 when absent or unreadable)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    for block in _header_blocks(head):
        if _name(block) == b"x-asterisk-vm-message-num":
            try:
                return int(block.split(b":", 1)[1].strip())
            except ValueError:
                return 0
    return 0


def renumber(raw: bytes, number: int, settings: EmailSettings) -> bytes:
    """`raw` with message number `number` (0 = unknown: left out of the default subject)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise CannotRenumber("no header/body separator")
    meta = replace(parse_message(raw).meta, number=number)
    blocks = _header_blocks(head)
    partial = any(_name(b) == HEADER_PARTIAL.lower().encode() for b in blocks)
    subject, body = subject_and_body(meta, settings, partial=partial)
    out: list[bytes] = []
    for block in blocks:
        name = _name(block)
        if name == b"subject":
            out.append(subject.encode("ascii"))
        elif name == b"x-asterisk-vm-message-num":
            out.append(x_header("X-Asterisk-VM-Message-Num", str(number)).encode("ascii"))
        else:
            out.append(block)
    ctype = next((b for b in blocks if _name(b) == b"content-type"), b"")
    found = _BOUNDARY.search(ctype)
    if found is None:
        raise CannotRenumber("no multipart boundary")
    outer = found.group(1)
    text = _TEXT_PART.search(rest)
    if text is None:
        raise CannotRenumber("no 8bit text part")
    charset = _CHARSET.search(text.group(0))
    try:
        body_bytes = body.encode(charset.group(1).decode() if charset else "utf-8")
    except (LookupError, UnicodeEncodeError) as exc:
        raise CannotRenumber(f"text not encodable: {exc}") from exc
    ends = [rest.find(b"\r\n--" + marker, text.end())
            for marker in (outer, inner_boundary(outer.decode()).encode())]
    end = min((e for e in ends if e >= 0), default=-1)
    if end < 0:
        raise CannotRenumber("text part not terminated")
    # Both the old and the new text end in CRLF; the delimiter brings its own CRLF.
    body_out = rest[:text.end()] + body_bytes + rest[end:]
    index = f"{meta.file_index:04d}".encode()  # Asterisk names the attachments msgNNNN
    body_out = _ATTACHMENT.sub(lambda m: m.group(1) + index + m.group(3), body_out)
    return b"".join(out) + b"\r\n" + body_out
