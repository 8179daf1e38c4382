"""The voice menus' grammar per language: what is said, in which order, as prompt names.

Asterisk has one ``vm_intro_<lang>``, ``vm_browse_messages_<lang>``, ``vm_play_folder_name``
branch and ``ast_say_number_full_<lang>`` / ``ast_say_date_with_format_<lang>`` per language,
spread over two large C files. Here a language is one module holding one ``Language`` subclass
that overrides only what its grammar changes (English is the base), so adding a language is one
module plus its prompts, and ``for_code`` is the only registry.

Everything here is pure: methods return the prompt names a caller hears, in order. Which
*directory* those names are read from is the prompt loader's business (``imapvm.audio.language``).
"""

from __future__ import annotations

from imapvm.audio import language as _language
from imapvm.ivr.lang.base import Language
from imapvm.ivr.lang.es import Spanish
from imapvm.ivr.lang.fr import French
from imapvm.ivr.lang.it import Italian
from imapvm.ivr.lang.ru import Russian

_BY_CODE: dict[str, Language] = {
    lang.code: lang for lang in (Language(), Spanish(), French(), Italian(), Russian())
}


def for_code(code: str | None) -> Language:
    """The grammar of ``code`` (``es``, ``es_MX``...); English for any language without one."""
    return _BY_CODE.get(_language.normalize(code), _BY_CODE["en"])


def current() -> Language:
    """The grammar of the call running in this task."""
    return for_code(_language.current())


def codes() -> tuple[str, ...]:
    return tuple(_BY_CODE)


__all__ = ["Language", "codes", "current", "for_code"]
