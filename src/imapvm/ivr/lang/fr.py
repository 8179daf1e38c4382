"""French (Asterisk's vm_intro_fr, ast_say_number_full_fr and ast_say_date_with_format_fr)."""

from __future__ import annotations

from imapvm.ivr.lang.base import Language, signed
from imapvm.ivr.lang.dates import DateWords


def number(n: int, gender: str | None = None) -> list[str]:
    """"vingt et un", "soixante et onze", "quatre-vingt-douze", "deux cent", "deux mille".

    ``gender`` ``f`` says one as "une" (``digits/1F``)."""
    return signed(n, lambda m: _positive(m, gender))


def _positive(n: int, gender: str | None) -> list[str]:
    out: list[str] = []
    hundred_next = et_next = False
    while n or hundred_next or et_next:
        if hundred_next:
            out.append("digits/hundred")
            hundred_next = False
        elif et_next:
            out.append("digits/et")
            et_next = False
        elif n == 1:
            out.append("digits/1F" if (gender or "")[:1].lower() == "f" else "digits/1")
            n = 0
        elif n < 21:
            out.append(f"digits/{n}")
            n = 0
        elif n < 70:
            out.append(f"digits/{n // 10 * 10}")
            et_next = n % 10 == 1
            n %= 10
        elif n < 80:
            out.append("digits/60")
            et_next = n % 10 == 1
            n -= 60
        elif n < 100:
            out.append("digits/80")
            n -= 80
        elif n < 200:
            out.append("digits/hundred")
            n -= 100
        elif n < 1000:
            out.append(f"digits/{n // 100}")
            hundred_next = True
            n %= 100
        elif n < 2000:
            out.append("digits/thousand")
            n -= 1000
        elif n < 1_000_000:
            out += [*_positive(n // 1000, gender), "digits/thousand"]
            n %= 1000
        else:
            out += [*_positive(n // 1_000_000, gender), "digits/million"]
            n %= 1_000_000
    return out


class _FrenchDates(DateWords):
    def year(self, y: int) -> list[str]:
        if y >= 2000:
            return ["digits/2", "digits/thousand", *(self.number(y - 2000) if y > 2000 else [])]
        if y > 1900:
            return ["digits/thousand", "digits/9", "digits/hundred", *self.number(y - 1900)]
        return []  # as Asterisk: no year before 1901

    def hour12(self, h: int) -> list[str]:
        return [*super().hour12(h), "digits/oclock"]  # "heure"

    def hour24(self, h: int) -> list[str]:
        return [*self.number(h), "digits/oclock"]

    def minute(self, m: int) -> list[str]:
        return self.number(m) if m else []

    def seconds(self, s: int) -> list[str]:
        return [*self.number(s), "second"]


class French(Language):
    code = "fr"
    extra_prompts = ("digits/et",)

    date_words = _FrenchDates

    def number(self, n: int, gender: str | None = None) -> list[str]:
        return number(n, gender)

    def intro(self, urgent: int, new: int, old: int) -> list[str]:
        new += urgent  # as in Spanish: Asterisk's French intro drops urgent messages
        out = ["vm-youhave"]
        if new:
            out += [*self.number(new), "vm-INBOX"]
            out.append("vm-and" if old else ("vm-message" if new == 1 else "vm-messages"))
        if old:
            out += [*self.number(old), "vm-Old", "vm-message" if old == 1 else "vm-messages"]
        if not (new or old):
            out += ["vm-no", "vm-messages"]
        return out
