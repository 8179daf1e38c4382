"""Spanish (Asterisk's vm_intro_es, vm_browse_messages_es, ast_say_number_full_es and
ast_say_date_with_format_es)."""

from __future__ import annotations

from imapvm.ivr.lang.base import Language
from imapvm.ivr.lang.dates import DateWords


def number(n: int, gender: str | None = None) -> list[str]:
    """"veintiuno", "ciento uno", "mil", "dos mil", "un millón", "dos millones".

    ``gender`` ``f`` says one as "una" (``digits/1F``), ``m`` as "un" (``digits/1M``)."""
    if n == 0:
        return ["digits/0"]
    out: list[str] = []
    if n < 0:
        out.append("digits/minus")
        n = -n
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
            out += [*number(n // 1000, gender), "digits/thousand"]
            n %= 1000
        else:
            millions = n // 1_000_000
            if millions == 1:
                out += [*number(1, "m"), "digits/million"]
            else:
                out += [*number(millions, gender), "digits/millions"]
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

    def number(self, n: int, gender: str | None = None) -> list[str]:
        return number(n, gender)

    def date(self, when: float, fmt: str | None = None, *, tz: str | None = None,
             now: float | None = None) -> list[str]:
        return _SpanishDates(self.number).say(when, fmt or self.envelope_format, tz=tz,
                                                now=now)

    def intro(self, urgent: int, new: int, old: int) -> list[str]:
        # Asterisk's Spanish intro never says urgent messages, so a mailbox holding only
        # urgent ones heard "usted tiene" and nothing: they are counted with the new ones.
        new += urgent
        if not (new or old):
            return ["vm-youhaveno", "vm-messages"]
        out = ["vm-youhave"]
        if new:
            out += (["digits/1M", "vm-message", "vm-INBOXs"] if new == 1
                    else [*self.number(new), "vm-messages", "vm-INBOX"])
            if old:
                out.append("vm-and")
        if old:
            out += (["digits/1M", "vm-message", "vm-Olds"] if old == 1
                    else [*self.number(old), "vm-messages", "vm-Old"])
        return out

    def folder_name(self, box: str) -> list[str]:
        return ["vm-messages", box]  # "mensajes antiguos"

    def empty_folder(self, box: str) -> list[str]:
        return ["vm-youhaveno", "vm-messages", box]
