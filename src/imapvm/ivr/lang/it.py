"""Italian (Asterisk's vm_intro_it, vm_browse_messages_it, ast_say_number_full_it and
ast_say_date_with_format_it)."""

from __future__ import annotations

from imapvm.ivr.lang.base import Language, signed
from imapvm.ivr.lang.dates import DateWords

#: Tens and units that elide into one word ("ventuno", "ventotto"): one recording each.
_ELIDED = {t + u for t in range(20, 100, 10) for u in (1, 8)}


def number(n: int, gender: str | None = None) -> list[str]:
    """"ventuno", "cento", "duecento", "mille", "duemila", "un milione", "due milioni"."""
    return signed(n, _positive)


def _positive(n: int) -> list[str]:
    out: list[str] = []
    hundred_next = False
    while n or hundred_next:
        if hundred_next:
            out.append("digits/hundred")
            hundred_next = False
        elif n < 20 or n in _ELIDED:
            out.append(f"digits/{n}")
            n = 0
        elif n < 100:
            out.append(f"digits/{n // 10 * 10}")
            n %= 10
        elif n < 1000:
            if n // 100 > 1:
                out.append(f"digits/{n // 100}")
                hundred_next = True
            else:
                out.append("digits/hundred")  # "cento", not "uno cento"
            n %= 100
        elif n < 1_000_000:
            thousands = n // 1000
            if thousands > 1:
                out += _positive(thousands)
            out.append("digits/thousands" if thousands > 1 else "digits/thousand")
            n %= 1000
        else:
            millions = n // 1_000_000
            if millions > 1:
                out += _positive(millions)
            out.append("digits/millions" if millions > 1 else "digits/million")
            n %= 1_000_000
    return out


class _ItalianDates(DateWords):
    full_date = "AdB"

    def year(self, y: int) -> list[str]:
        # Asterisk says the years after 2000 from single recordings and stops being right
        # after 2021; the rest of the year is a number here.
        if y >= 2000:
            return ["digits/ore-2000", *(self.number(y - 2000) if y > 2000 else [])]
        if y > 1900:
            return ["digits/ore-1900", *self.number(y - 1900)]
        return []

    def hour24(self, h: int) -> list[str]:
        if h == 0:
            return ["digits/ore-mezzanotte"]
        if h == 1:
            return ["digits/ore-una"]
        return self.number(h)


class Italian(Language):
    code = "it"
    envelope_format = ("'vm-received' q 'digits/at' 'digits/hours' k 'digits/e' M "
                       "'digits/minutes'")
    extra_prompts = ("vm-nuovo", "vm-nuovi", "vm-vecchio", "vm-vecchi", "digits/un",
                     "digits/thousands", "digits/millions", "digits/ore-2000",
                     "digits/ore-mezzanotte", "digits/ore-una", "digits/hours", "digits/e",
                     "digits/minutes")

    date_words = _ItalianDates

    def number(self, n: int, gender: str | None = None) -> list[str]:
        return number(n, gender)

    def intro(self, urgent: int, new: int, old: int) -> list[str]:
        new += urgent  # Asterisk's Italian intro drops urgent messages; they are new ones
        if not (new or old):
            return ["vm-no", "vm-message"]  # "nessun messaggio"
        return ["vm-youhave", *self.new_and_old(
            new, old, {"new": ["digits/un", "vm-nuovo", "vm-message"],
                       "old": ["digits/un", "vm-vecchio", "vm-message"]},
            {"new": ["vm-nuovi", "vm-messages"], "old": ["vm-vecchi", "vm-messages"]})]

    def folder_name(self, box: str) -> list[str]:
        return ["vm-messages", box]  # "messaggi vecchi"

    def empty_folder(self, box: str) -> list[str]:
        return ["vm-no", "vm-message", box]
