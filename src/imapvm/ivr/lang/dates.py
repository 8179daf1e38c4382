"""Say-format interpretation for languages whose letters differ from English.

Asterisk's ``ast_say_date_with_format_<lang>`` functions share the letter set (``A B d Y I H M
P Q q R S T`` and quoted file names) but each says the letters its own way. ``DateWords`` holds
the shared part (tokens, zones, today/yesterday/last-week logic) and the letters every
language says alike; a language subclass overrides the letters it says differently.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from imapvm.ivr import say

Number = Callable[[int], list[str]]


class DateWords:
    #: What ``Q``/``q`` say for a date that is neither today, yesterday nor (``q``) this week.
    full_date = "AdBY"
    #: Whether ``q`` says "today" for today (Spanish does; the others say nothing).
    q_says_today = False

    def __init__(self, number: Number) -> None:
        self.number = number

    def say(self, when: float, fmt: str, *, tz: str | None = None,
            now: float | None = None) -> list[str]:
        zone = ZoneInfo(tz) if tz else None
        t = (datetime.fromtimestamp(when, zone) if zone
             else datetime.fromtimestamp(when).astimezone())
        current = (datetime.fromtimestamp(now, t.tzinfo) if now is not None
                   else datetime.now(t.tzinfo))
        return self._format(fmt, t, current)

    def _format(self, fmt: str, t: datetime, current: datetime) -> list[str]:
        out: list[str] = []
        for tok in say._tokens(fmt):
            if tok.startswith("'"):
                if tok[1:]:
                    out.append(tok[1:])
            else:
                out += self.letter(tok, t, current)
        return out

    def letter(self, ch: str, t: datetime, current: datetime) -> list[str]:
        if ch in "Aa":
            return [f"digits/day-{(t.weekday() + 1) % 7}"]
        if ch in "Bbh":
            return [f"digits/mon-{t.month - 1}"]
        if ch == "m":
            return [f"digits/h-{t.month}"]
        if ch in "de":
            return self.day(t.day)
        if ch == "Y":
            return self.year(t.year)
        if ch in "Il":
            return self.hour12(t.hour)
        if ch in "Hk":
            return self.hour24(t.hour)
        if ch in "MN":
            return self.minute(t.minute)
        if ch in "Pp":
            return self.ampm(t.hour)
        if ch in "Qq":
            return self._relative(ch, t, current)
        if ch == "R":
            return self._format(self.r_format, t, current)
        if ch == "S":
            return self.seconds(t.second)
        if ch == "T":
            return self._format("HMS", t, current)
        return []

    def _relative(self, ch: str, t: datetime, current: datetime) -> list[str]:
        start_today = current.replace(hour=0, minute=0, second=0, microsecond=0)
        if t >= start_today:
            return ["digits/today"] if (ch == "Q" or self.q_says_today) else []
        if t >= start_today - timedelta(days=1):
            return ["digits/yesterday"]
        if ch == "q" and t >= start_today - timedelta(days=6):
            return self.letter("A", t, current)
        return self._format(self.full_date, t, current)

    # -- letters a language says its own way ----------------------------------------------
    r_format = "HM"

    def day(self, d: int) -> list[str]:
        return ["digits/h-1"] if d == 1 else self.number(d)

    def year(self, y: int) -> list[str]:
        return self.number(y)

    def hour12(self, h: int) -> list[str]:
        return [f"digits/{h - 12 if h > 12 else (h or 12)}"]

    def hour24(self, h: int) -> list[str]:
        return self.number(h)

    def minute(self, m: int) -> list[str]:
        return self.number(m)

    def ampm(self, h: int) -> list[str]:
        return ["digits/p-m" if h > 11 else "digits/a-m"]

    def seconds(self, s: int) -> list[str]:
        """Seconds as the Spanish and Italian formatters say them ("oh five", "fifty")."""
        if s == 0:
            return ["digits/0"]
        if s < 10:
            return ["digits/oh", f"digits/{s}"]
        if s < 21 or s % 10 == 0:
            return [f"digits/{s}"]
        return [f"digits/{s // 10 * 10}", f"digits/{s % 10}"]
