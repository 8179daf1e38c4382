"""Where each audio attachment goes in the MIME tree, and how a part is written.

The problem
-----------
Mail clients want a format they can play (WAV), imapvm promises a ``.gsm`` on every message, and
Asterisk's reader (reference §2.5) is rigid: it reads the BODYSTRUCTURE, takes **top-level part 2**
as the message (file name = the *first* Content-Type parameter, format = the text after its first
``.``), base64-decodes ``BODY[2]``, and treats a non-empty ``BODY[3]`` as a forward-with-comment
intro in part 2's format, played first. Parts 4 and above are never read.

Rejected layouts
----------------
* Second format as top-level part 3: Asterisk plays it as an intro, so the message plays twice.
* ``multipart/alternative`` as part 2: the first parameter of part 2 becomes ``boundary=...``, so
  the derived "format" is garbage, and ``BODY[2]`` of a multipart is MIME text, not base64 audio.
* Extra formats as parts 4+: fine when an intro exists, but without one part 3 would have to be an
  empty placeholder that clients show as a bogus attachment.

The layout we write
-------------------
::

    multipart/mixed
    ├─ 1  text/plain                               (no extra formats)
    │     or multipart/mixed                       (extra formats present)
    │        ├─ 1.1 text/plain                     the notice, still the first thing clients show
    │        ├─ 1.2 audio/x-gsm   msg0000.gsm      the always-present GSM copy
    │        └─ 1.3 audio/mpeg    msg0000.mp3      optional client-only formats (mp3, opus)
    ├─ 2  audio/x-<fmt> msg0000.<fmt>              THE message: preferred format, leaf, base64
    └─ 3  audio/x-<fmt> msgintro0000.<fmt>         only for forward-with-comment, same format

Asterisk never looks inside part 1, so it sees exactly Asterisk's own layout: one message part and
an intro only when there is a comment. Mail clients list every leaf attachment wherever it is
nested, so they offer both formats. When the preferred format already is ``gsm`` and no client
formats are configured, part 1 is a plain text/plain leaf: byte-for-byte Asterisk's shape.
``tests/message/asterisk_reader.py`` reads messages by Asterisk's rules to prove this.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from imapvm.audio.formats import AudioFormat
from imapvm.message.encoding import CRLF

BASE64_LINE = 72
DESCRIPTION = "Voicemail sound attachment."


@dataclass(frozen=True)
class AudioPart:
    """One encoded audio attachment ready to be written."""

    filename: str
    fmt: AudioFormat
    data: bytes
    #: Whole seconds, written as RFC 3803 Content-Duration.
    duration: int


def base64_lines(data: bytes) -> str:
    """Base64 in 72-character lines, each ending in CRLF (Asterisk's BASELINELEN)."""
    text = base64.b64encode(data).decode("ascii")
    return "".join(text[i : i + BASE64_LINE] + CRLF for i in range(0, len(text), BASE64_LINE))


def audio_part(part: AudioPart) -> str:
    """Headers and body of one attachment; ``name=`` stays the first Content-Type parameter."""
    return (
        f'Content-Type: {part.fmt.mime_type}; name="{part.filename}"{CRLF}'
        f"Content-Transfer-Encoding: base64{CRLF}"
        f"Content-Description: {DESCRIPTION}{CRLF}"
        f'Content-Disposition: attachment; filename="{part.filename}"{CRLF}'
        f"Content-Duration: {part.duration}{CRLF}"
        f"{CRLF}"
        f"{base64_lines(part.data)}"
    )


def text_part(body: str, charset: str) -> str:
    """The text/plain part's headers and body (body already CRLF-normalised, ends in CRLF)."""
    return (
        f"Content-Type: text/plain; charset={charset}{CRLF}"
        f"Content-Transfer-Encoding: 8bit{CRLF}"
        f"{CRLF}"
        f"{body}"
    )


def inner_boundary(outer: str) -> str:
    """Boundary of the nested part-1 group: neither a prefix of the outer one nor prefixed by it."""
    return "=_imapvm_formats_" + outer.strip("-")


def mime_body(
    boundary: str, text: str, message: AudioPart, extras: list[AudioPart], intro: AudioPart | None
) -> str:
    """Everything after the top-level headers, following the layout in the module docstring."""
    out = [CRLF, "This is a multi-part message in MIME format.", CRLF, CRLF, f"--{boundary}{CRLF}"]
    if extras:
        inner = inner_boundary(boundary)
        out.append(f'Content-Type: multipart/mixed; boundary="{inner}"{CRLF}{CRLF}')
        out.append(f"--{inner}{CRLF}{text}{CRLF}")
        for extra in extras:
            out.append(f"--{inner}{CRLF}{audio_part(extra)}")
        out.append(f"{CRLF}--{inner}--{CRLF}{CRLF}")
    else:
        out.append(f"{text}{CRLF}")
    out.append(f"--{boundary}{CRLF}{audio_part(message)}")
    if intro is not None:
        out.append(f"--{boundary}{CRLF}{audio_part(intro)}")
    out.append(f"{CRLF}{CRLF}--{boundary}--{CRLF}")
    return "".join(out)
