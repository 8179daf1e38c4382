"""Spanish (Asterisk's vm_intro_es, vm_browse_messages_es, ast_say_number_full_es and
ast_say_date_with_format_es)."""

from __future__ import annotations

from imapvm.ivr.lang.base import Language, signed
from imapvm.ivr.lang.dates import DateWords


def number(n: int, gender: str | None = None) -> list[str]:
    """"veintiuno", "ciento uno", "mil", "dos mil", "un millón", "dos millones".

    ``gender`` ``f`` says one as "una" (``digits/1F``), ``m`` as "un" (``digits/1M``)."""
    return signed(n, lambda m: _positive(m, gender))


def _positive(n: int, gender: str | None) -> list[str]:
    out: list[str] = []
    and_next = False
    while n:
        if and_next:
            out.append("digits/and")
            and_next = False
        elif n == 1:
            suffix = {"f": "F", "m": "M"}.get((gender or "")[:1].lower(), "")
            out.append(f"digits/1{suffix}")
            n = 0
        elif n < 31:
            out.append(f"digits/{n}")
            n = 0
        elif n < 100:
            out.append(f"digits/{n // 10 * 10}")
            n %= 10
            and_next = n != 0
        elif n == 100:
            out.append("digits/100")
            n = 0
        elif n < 200:
            out.append("digits/100-and")
            n -= 100
        elif n < 1000:
            out.append(f"digits/{n // 100 * 100}")
            n %= 100
        elif n < 2000:
            out.append("digits/thousand")
            n %= 1000
        elif n < 1_000_000:
            out += [*_positive(n // 1000, gender), "digits/thousand"]
            n %= 1000
        else:
            millions = n // 1_000_000
            if millions == 1:
                out += [*_positive(1, "m"), "digits/million"]
            else:
                out += [*_positive(millions, gender), "digits/millions"]
            n %= 1_000_000
    return out


class _SpanishDates(DateWords):
    full_date = "'digits/es-el' Ad 'digits/es-de' B 'digits/es-de' Y"
    q_says_today = True
    r_format = "H 'digits/y' M"

    def day(self, d: int) -> list[str]:
        return self.number(d)

    def hour12(self, h: int) -> list[str]:
        if h in (1, 13):
            return ["digits/1F"]  # "la una"
        return super().hour12(h)

    def ampm(self, h: int) -> list[str]:
        if h > 18:
            return ["digits/p-m"]  # de la noche
        if h > 12:
            return ["digits/afternoon"]  # de la tarde
        return ["digits/a-m"] if h else []


class Spanish(Language):
    code = "es"
    extra_prompts = ("vm-youhaveno", "vm-INBOXs", "vm-Olds", "digits/1M", "digits/and",
                     "digits/100-and", "digits/millions", "digits/afternoon", "digits/es-el",
                     "digits/es-de")

    date_words = _SpanishDates

    def number(self, n: int, gender: str | None = None) -> list[str]:
        return number(n, gender)

    def intro(self, urgent: int, new: int, old: int) -> list[str]:
        # Asterisk's Spanish intro never says urgent messages, so a mailbox holding only
        # urgent ones heard "usted tiene" and nothing: they are counted with the new ones.
        new += urgent
        if not (new or old):
            return ["vm-youhaveno", "vm-messages"]
        return ["vm-youhave", *self.new_and_old(
            new, old, {"new": ["digits/1M", "vm-message", "vm-INBOXs"],
                       "old": ["digits/1M", "vm-message", "vm-Olds"]},
            {"new": ["vm-messages", "vm-INBOX"], "old": ["vm-messages", "vm-Old"]})]

    def folder_name(self, box: str) -> list[str]:
        return ["vm-messages", box]  # "mensajes antiguos"

    def empty_folder(self, box: str) -> list[str]:
        return ["vm-youhaveno", "vm-messages", box]
