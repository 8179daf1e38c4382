"""Header encoding: Asterisk's "does this need MIME?" rule and RFC 2047 Q encoded-words.

Asterisk Q-encodes a display name or subject whenever it holds a byte above 126 or below 32, or
any of ``()<>@,:;/"[]?.=`` (reference §2.2, ``check_mime``); we apply the same trigger so headers
look the same to filters written against Asterisk's mail. Where Asterisk labels UTF-8 bytes with a
charset that cannot hold them, we fall back to UTF-8, so the label is always true.

The encoder is ours rather than :mod:`email.header` because we need Asterisk's exact trigger and
byte-stable output for golden tests; it follows RFC 2047 §4.2/§5(3): each encoded-word at most
75 characters, never splitting a multi-byte character, space as ``_``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from email.header import decode_header, make_header

from imapvm.message.meta import strip_controls

CRLF = "\r\n"

_MIME_SPECIALS = frozenset('()<>@,:;/"[]?.=')
#: Characters that may stand for themselves inside a Q encoded-word in a phrase (RFC 2047 §5(3)).
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_MAX_WORD = 75


def needs_mime(text: str) -> bool:
    """Asterisk's ``check_mime`` trigger: control or non-ASCII characters, or a MIME special."""
    return any(ord(ch) < 32 or ord(ch) > 126 or ch in _MIME_SPECIALS for ch in text)


def _usable_charset(text: str, charset: str) -> str:
    try:
        codecs.lookup(charset)
        text.encode(charset)
    except (LookupError, UnicodeEncodeError):
        return "UTF-8"
    return charset


def q_words(text: str, charset: str) -> list[str]:
    """``text`` as RFC 2047 Q encoded-words in ``charset`` (UTF-8 if it cannot hold the text)."""
    cs = _usable_charset(text, charset)
    prefix, suffix = f"=?{cs}?Q?", "?="
    room = _MAX_WORD - len(prefix) - len(suffix)
    words: list[str] = []
    cur = ""
    for ch in text:
        if ch == " ":
            piece = "_"
        elif ch in _Q_SAFE:
            piece = ch
        else:
            piece = "".join(f"={b:02X}" for b in ch.encode(cs))
        if cur and len(cur) + len(piece) > room:
            words.append(prefix + cur + suffix)
            cur = ""
        cur += piece
    if cur or not words:
        words.append(prefix + cur + suffix)
    return words


def fold(name: str, words: Iterable[str], tail: str = "") -> str:
    """``Name: w1`` + CRLF-SP continuation per further word, then `` tail``; ends with CRLF."""
    ws = list(words)
    value = (CRLF + " ").join(ws)
    if tail:
        value = f"{value} {tail}" if value else tail
    return f"{name}: {value}{CRLF}"


def one_line(text: str) -> str:
    """CR/LF become spaces (a template can never inject a header line); other controls go."""
    return strip_controls(re.sub(r"[\r\n]+", " ", text))


def phrase_header(name: str, display: str, addr: str, charset: str) -> str:
    """A From/To style header: ``"display" <addr>``, Q-encoded when Asterisk's rule says so."""
    display = one_line(display)
    if not display:
        return f"{name}: {addr}{CRLF}"
    if needs_mime(display):
        return fold(name, q_words(display, charset), f"<{addr}>")
    return f'{name}: "{display}" <{addr}>{CRLF}'


def address_list_header(name: str, display: str, addrs: tuple[str, ...], charset: str) -> str:
    """One header naming several addresses with the same display name, one per folded line.

    With no address at all (no ``email`` and no ``imapuser``) it writes the RFC 5322 empty group
    ``undisclosed-recipients:;`` rather than an empty, invalid ``To:``.
    """
    if not addrs:
        return f"{name}: undisclosed-recipients:;{CRLF}"
    prefix = f"{name}: "
    values = [phrase_header(name, display, a, charset)[len(prefix) : -len(CRLF)] for a in addrs]
    return f"{prefix}{(',' + CRLF + ' ').join(values)}{CRLF}"


def text_header(name: str, text: str, charset: str) -> str:
    """An unstructured header (Subject), Q-encoded when Asterisk's rule says so."""
    text = one_line(text)
    if needs_mime(text):
        return fold(name, q_words(text, charset))
    return f"{name}: {text}{CRLF}"


def x_header(name: str, text: str) -> str:
    """An X-Asterisk-VM-* style header: raw ASCII like Asterisk, UTF-8 encoded-words otherwise.

    Asterisk writes these raw and reads them by substring search; ASCII values therefore stay
    byte-identical, and only non-ASCII values (which Asterisk would write as 8-bit bytes that
    RFC 5322 forbids) become encoded-words. ``Name: `` keeps its trailing space when empty, as
    Asterisk writes it, because Asterisk's reader takes the value from one character after the
    colon.
    """
    text = strip_controls(text)
    if text.isascii():
        return f"{name}: {text}{CRLF}"
    return fold(name, q_words(text, "UTF-8"))


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words in a header value; plain text passes through."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (UnicodeDecodeError, LookupError, ValueError):
        return value
