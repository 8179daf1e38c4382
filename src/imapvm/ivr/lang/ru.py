"""Russian (Asterisk's vm_intro_multilang with neuter gender, ast_say_number_full_ru and the
counted noun/adjective endings of ast_say_counted_noun/adjective).

Russian inflects the words after a number: "1 новое сообщение", "2 новых сообщения",
"5 новых сообщений". Asterisk's Russian set records each form with a suffix: the adjective
singular with the gender letter (``vm-newn``) or the genitive plural ``x`` (``vm-newx``); the
noun bare (1), ``x1`` (2-4) or ``x2`` (5-20, 0). Dates use English letters over Russian numbers,
as Asterisk's default formatter does.
"""

from __future__ import annotations

from imapvm.ivr.lang.base import Language, signed


def _last(n: int) -> int:
    """The part of ``n`` that decides the inflection (Asterisk's get_lastdigits_ru)."""
    if n < 20:
        return n
    if n < 100:
        return _last(n % 10)
    if n < 1000:
        return _last(n % 100)
    return 0


def number(n: int, gender: str | None = None) -> list[str]:
    """``gender`` (one letter: ``n``, ``f``) picks the recordings of one and two
    (``digits/1n``); thousands take the feminine (тысяча: одна, две)."""
    return signed(n, lambda m: _positive(m, gender))


def _positive(n: int, gender: str | None) -> list[str]:
    out: list[str] = []
    while n:
        if n < 20:
            suffix = gender if gender and len(gender) == 1 and n < 3 else ""
            out.append(f"digits/{n}{suffix}")
            n = 0
        elif n < 100:
            out.append(f"digits/{n - n % 10}")
            n %= 10
        elif n < 1000:
            out.append(f"digits/{n - n % 100}")
            n %= 100
        elif n < 1_000_000:
            last = _last(n // 1000)
            out += _positive(n // 1000, "f" if last < 3 else None)
            out.append("digits/thousand" if last == 1 else
                       "digits/thousands-i" if 1 < last < 5 else "digits/thousands")
            n %= 1000
        else:
            last = _last(n // 1_000_000)
            out += _positive(n // 1_000_000, None)
            out.append("digits/million" if last == 1 else
                       "digits/million-a" if 1 < last < 5 else "digits/millions")
            n %= 1_000_000
    return out


def _tail(n: int) -> int:
    n = abs(n) % 100
    return n % 10 if n >= 20 else n


def counted_noun(n: int, noun: str) -> str:
    """``vm-message`` (1), ``vm-messagex1`` (2-4), ``vm-messagex2`` (0, 5-20)."""
    t = _tail(n)
    return noun if t == 1 else f"{noun}x1" if 0 < t < 5 else f"{noun}x2"


def counted_adjective(n: int, adjective: str, gender: str) -> str:
    """``vm-newn`` (1, neuter) or ``vm-newx`` (genitive plural)."""
    return f"{adjective}{gender}" if _tail(n) == 1 else f"{adjective}x"


class Russian(Language):
    code = "ru"
    extra_prompts = ("vm-newn", "vm-newx", "vm-oldn", "vm-oldx", "vm-messagex1",
                     "vm-messagex2", "digits/1n", "digits/2n")

    def number(self, n: int, gender: str | None = None) -> list[str]:
        return number(n, gender)

    def intro(self, urgent: int, new: int, old: int) -> list[str]:
        new += urgent  # as Asterisk's multilang intro counts them: with the new ones
        out = ["vm-youhave"]
        last = 0
        if new:
            last = new
            out += [*self.number(new, "n"), counted_adjective(new, "vm-new", "n")]
            if old:
                out.append("vm-and")
        if old:
            last = old
            out += [*self.number(old, "n"), counted_adjective(old, "vm-old", "n")]
        if last == 0:
            out.append("vm-no")
        out.append(counted_noun(last, "vm-message"))
        return out
