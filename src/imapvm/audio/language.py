"""Which language a call speaks, and where that language's prompts live.

A call's language is a ``ContextVar``: the voice menus set it once they know it (the call's own
language, then, in VoiceMailMain, the mailbox's ``language=`` as Asterisk does after login), and
everything below them that resolves prompt names (the prompt loader, a test's scripted channel)
reads it. Each call runs in its own asyncio task, so one call's language never leaks into
another's, and no interface between the menus and the front end has to carry it.

Prompts are looked up as Asterisk does: in the language's directory first, then in the default
(English) one, so a prompt a language set lacks is still heard, in English.

Language codes are Asterisk's: ``en``, ``es``, ``fr``, ``it``, ``ru``; a region (``es_MX``,
``fr-CA``) is accepted and the menus follow the language's grammar. Debian installs each set
under its voice's name (``/usr/share/asterisk/sounds/es_MX_f_Allison``); an operator's own set
may be a plain ``<sounds root>/es`` directory. Both are found.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

DEFAULT = "en"
#: Languages whose grammar the menus implement (``imapvm.ivr.lang``); any other code speaks
#: with English grammar, over that language's prompts when they exist.
SUPPORTED = ("en", "es", "fr", "it", "ru")

_current: ContextVar[str] = ContextVar("imapvm_language", default=DEFAULT)


def normalize(code: str | None) -> str:
    """``es_MX`` / ``es-mx`` / ``ES`` → ``es``; empty or None → the default (``en``)."""
    if not code:
        return DEFAULT
    base = code.strip().replace("-", "_").split("_")[0].lower()
    return base if base.isalpha() and 2 <= len(base) <= 3 else DEFAULT


def current() -> str:
    """The language of the call running in this task."""
    return _current.get()


def set_current(code: str | None) -> None:
    """Make ``code`` the language of the rest of this call (this task and what it awaits)."""
    _current.set(normalize(code))


@contextmanager
def speaking(code: str | None) -> Iterator[None]:
    """Speak ``code`` inside the block only (tests, one-off prompts)."""
    token = _current.set(normalize(code))
    try:
        yield
    finally:
        _current.reset(token)


def sounds_dir(default: Path, code: str) -> Path:
    """The prompt directory of language ``code``, beside the default (English) one.

    ``default`` is the configured sounds directory; its parent is searched for ``<code>`` and
    then for Debian's ``<code>_<REGION>_<voice>`` directories. English, or a language with no
    directory, is ``default`` itself.
    """
    code = normalize(code)
    if code == DEFAULT:
        return default
    root = default.parent
    plain = root / code
    if plain.is_dir():
        return plain
    try:
        found = sorted(p for p in root.glob(f"{code}_*") if p.is_dir())
    except OSError:
        found = []
    return found[0] if found else default


def search_path(default: Path, code: str, synth: Path | None = None) -> tuple[Path, ...]:
    """Where a prompt of ``code`` is looked for, in order: its directory, the prompts
    synthesised for it (``synth/<code>``, for the few its set lacks), then English and the
    English synthesised ones."""
    own = sounds_dir(default, code)
    english = (default,) if synth is None else (default, synth)
    if own == default:
        return english
    return (own, *((synth / normalize(code),) if synth is not None else ()), *english)
