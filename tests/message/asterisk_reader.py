"""A small reader that reads stored messages the way Asterisk's IMAP voicemail does.

Written from reference/asterisk-imap.md §2.5 and §4.8 (no Asterisk code), it stands in for
Asterisk in tests: if this reader gets exactly one message part, in the right format, and an intro
only when there is a comment, so does Asterisk.

Rules modelled:

* Headers: ``get_header_by_tag`` is a case-insensitive substring search over the raw top-level
  header block; the value starts one character after ``Tag:`` and runs to CR or LF (no unfolding,
  first hit wins).
* BODYSTRUCTURE: the second top-level part's **first Content-Type parameter value** is the file
  name; the format is the text after its first ``.``. No such value: "no file attached".
* ``BODY[2]`` (the part's raw encoded body, as IMAP returns it: for a multipart part that is its
  MIME text) is decoded with a lenient base64 decoder (c-client's ``rfc822_base64`` skips
  characters outside the alphabet) and saved as ``msgNNNN.<fmt>``.
* ``BODY[3]``, if non-empty, is decoded the same way and saved as the intro, in part 2's format,
  and played before the message.
* Greetings (``imap_retrieve_greeting``): the first message whose part-2 file name, up to the first
  ``.``, equals the greeting name.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

_B64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/=]")


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 2]


def get_header_by_tag(raw: bytes, tag: str) -> str | None:
    block = header_block(raw)
    pos = block.lower().find(tag.lower().encode())
    if pos < 0:
        return None
    start = pos + len(tag) + 1
    end = start
    while end < len(block) and block[end : end + 1] not in (b"\r", b"\n"):
        end += 1
    return block[start:end].decode("latin-1")


@dataclass
class RawPart:
    """A MIME part as IMAP BODYSTRUCTURE + BODY[n] present it."""

    content_type: str
    params: list[tuple[str, str]]
    body: bytes  # raw, still transfer-encoded


def _split_headers(entity: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = entity.find(sep)
        if idx >= 0:
            return entity[:idx], entity[idx + len(sep) :]
    return entity, b""


def _content_type(headers: bytes) -> tuple[str, list[tuple[str, str]]]:
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", headers).decode("latin-1")
    for line in unfolded.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            pieces = [p.strip() for p in value.split(";")]
            params = []
            for p in pieces[1:]:
                k, _, v = p.partition("=")
                params.append((k.strip().lower(), v.strip().strip('"')))
            return pieces[0].lower(), params
    return "text/plain", []


def top_level_parts(raw: bytes) -> list[RawPart]:
    """The top-level parts of a multipart message, in order (IMAP part numbers 1, 2, 3...)."""
    headers, body = _split_headers(raw)
    ctype, params = _content_type(headers)
    if not ctype.startswith("multipart/"):
        return []
    boundary = dict(params)["boundary"].encode()
    delim = re.compile(rb"(?:\r?\n)?--" + re.escape(boundary) + rb"(--)?[ \t]*\r?\n?")
    pieces = delim.split(body)
    # split() yields: preamble, (close-marker, chunk)*; chunks after a "--" close are epilogue
    parts: list[RawPart] = []
    i = 1
    while i + 1 < len(pieces):
        closing, chunk = pieces[i], pieces[i + 1]
        if closing:
            break
        ph, pb = _split_headers(chunk)
        pctype, pparams = _content_type(ph)
        parts.append(RawPart(pctype, pparams, pb))
        i += 2
    return parts


def lenient_b64(data: bytes) -> bytes:
    cleaned = _B64_ALPHABET.sub(b"", data)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
    return base64.b64decode(cleaned)


@dataclass
class AsteriskView:
    """What Asterisk ends up with after retrieving a message."""

    filename: str
    fmt: str
    message: bytes
    intro: bytes | None
    metadata: dict[str, str | None]

    def playback(self) -> list[tuple[str, bytes]]:
        """Files in the order Asterisk plays them: intro first, then the message."""
        order = []
        if self.intro is not None:
            order.append((f"intro.{self.fmt}", self.intro))
        order.append((f"message.{self.fmt}", self.message))
        return order


class NoFileAttached(Exception):
    pass


def retrieve(raw: bytes) -> AsteriskView:
    parts = top_level_parts(raw)
    if len(parts) < 2 or not parts[1].params or not parts[1].params[0][1]:
        raise NoFileAttached("There is no file attached to this IMAP message.")
    filename = parts[1].params[0][1]
    if "." not in filename:
        raise NoFileAttached("File format could not be obtained from IMAP message attachment")
    fmt = filename.split(".", 1)[1]
    message = lenient_b64(parts[1].body)
    intro = None
    if len(parts) > 2 and parts[2].body.strip():
        intro = lenient_b64(parts[2].body)
    tags = ("Caller-ID-Name", "Caller-ID-Num", "Context", "Orig-time", "Duration", "Category",
            "Flag", "Message-ID")
    metadata = {t: get_header_by_tag(raw, f"X-Asterisk-VM-{t}:") for t in tags}
    return AsteriskView(filename, fmt, message, intro, metadata)


def find_greeting(messages: list[bytes], name: str) -> int | None:
    """Index of the first message Asterisk would take as greeting ``name``."""
    for i, raw in enumerate(messages):
        parts = top_level_parts(raw)
        if len(parts) < 2 or not parts[1].params:
            continue
        if parts[1].params[0][1].split(".", 1)[0] == name:
            return i
    return None
