"""English saying of numbers, digit strings, dates and durations, as lists of prompt names.

Everything here is pure: it returns the names of the sound files (``digits/5``, ``vm-received``)
a caller would hear, in order, and never touches a channel. The flows play the list; the tests
compare lists. The words follow what English speakers hear from Asterisk's ``digits/`` prompts
("two thousand twenty six", "three oh five p m"), and dates follow Asterisk's say-format letters
(``[zonemessages]``), of which the envelope uses ``'vm-received' q 'digits/at' IMp`` by default.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

#: The envelope's say format when the mailbox's zone gives none (English default).
DEFAULT_ENVELOPE_FORMAT = "'vm-received' q 'digits/at' IMp"

_DIGIT_NAMES = {"*": "digits/star", "#": "digits/pound"}


def number(n: int) -> list[str]:
    """A cardinal number ("one hundred twenty three": no "and", as the prompts expect)."""
    if n < 0:
        return ["digits/minus", *number(-n)]
    if n < 20:
        return [f"digits/{n}"]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [f"digits/{tens * 10}"] + ([f"digits/{ones}"] if ones else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [f"digits/{hundreds}", "digits/hundred"] + (number(rest) if rest else [])
    for size, word in ((10**9, "digits/billion"), (10**6, "digits/million"),
                       (1000, "digits/thousand")):
        if n >= size:
            high, rest = divmod(n, size)
            return [*number(high), word] + (number(rest) if rest else [])
    raise AssertionError("unreachable")


def ordinal(n: int) -> list[str]:
    """An ordinal for days of the month ("twenty first" = ``digits/20 digits/h-1``)."""
    if 1 <= n <= 20 or n == 30:
        return [f"digits/h-{n}"]
    tens, ones = divmod(n, 10)
    if ones == 0:
        return [f"digits/h-{n}"]
    return [f"digits/{tens * 10}", f"digits/h-{ones}"]


def digits(text: str) -> list[str]:
    """Digit by digit (mailbox and phone numbers); letters are spelled from ``letters/``."""
    out = []
    for ch in text:
        if ch.isdigit():
            out.append(f"digits/{ch}")
        elif ch in _DIGIT_NAMES:
            out.append(_DIGIT_NAMES[ch])
        elif ch.isalpha():
            out.append(f"letters/{ch.lower()}")
    return out


def duration_minutes(seconds: int) -> list[str]:
    """``vm-duration N vm-minutes``: how the envelope says a long message's length."""
    return ["vm-duration", *number(seconds // 60), "vm-minutes"]


Number = Callable[[int], list[str]]


def _year(y: int, num: Number) -> list[str]:
    if y >= 2000 or y < 1000:
        return num(y)
    high, low = divmod(y, 100)
    if low == 0:
        return [*num(high), "digits/hundred"]
    if low < 10:
        return [*num(high), "digits/oh", *num(low)]
    return [*num(high), *num(low)]


def _hour12(h: int, num: Number) -> list[str]:
    return num(h % 12 or 12)


def _minute(m: int, zero: str, num: Number) -> list[str]:
    if m == 0:
        return [zero] if zero else []
    if m < 10:
        return ["digits/oh", *num(m)]
    return num(m)


def _tokens(fmt: str) -> list[str]:
    """Split a say format into quoted file names and single letters (spaces ignored)."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "'":
            end = fmt.find("'", i + 1)
            end = len(fmt) if end < 0 else end
            out.append("'" + fmt[i + 1:end])
            i = end + 1
        else:
            if not ch.isspace():
                out.append(ch)
            i += 1
    return out


def date(when: float, fmt: str = DEFAULT_ENVELOPE_FORMAT, *, tz: str | None = None,
         now: float | None = None, number: Number = number) -> list[str]:
    """Say the moment ``when`` (epoch seconds) by an Asterisk say format, in zone ``tz``.

    Supported letters: quoted file names, ``A a`` weekday, ``B b h`` month, ``m`` month as an
    ordinal, ``d e`` day ordinal, ``Y`` year, ``I l`` 12-hour, ``H k`` 24-hour, ``M N`` minutes,
    ``P p`` a.m./p.m., ``Q`` today/yesterday/date, ``q`` nothing/yesterday/weekday/date,
    ``R`` = ``HM``, ``S`` seconds, ``T`` = ``HMS``. Unknown letters are skipped, as Asterisk
    skips them (with a warning in its log). ``number`` says the numbers (English by default;
    Russian dates are English letters over Russian numbers, as in Asterisk).
    """
    zone = ZoneInfo(tz) if tz else None
    t = datetime.fromtimestamp(when, zone) if zone else datetime.fromtimestamp(when).astimezone()
    current = (datetime.fromtimestamp(now, t.tzinfo) if now is not None
               else datetime.now(t.tzinfo))
    out: list[str] = []
    for tok in _tokens(fmt):
        if tok.startswith("'"):
            if tok[1:]:
                out.append(tok[1:])
            continue
        out += _letter(tok, t, current, tz, when, number)
    return out


def _letter(ch: str, t: datetime, current: datetime, tz: str | None, when: float,
            num: Number = number) -> list[str]:
    weekday = (t.weekday() + 1) % 7  # Sunday = 0, as digits/day-N
    if ch in "Aa":
        return [f"digits/day-{weekday}"]
    if ch in "Bbh":
        return [f"digits/mon-{t.month - 1}"]
    if ch == "m":
        return ordinal(t.month)
    if ch in "de":
        return ordinal(t.day)
    if ch == "Y":
        return _year(t.year, num)
    if ch in "Il":
        return _hour12(t.hour, num)
    if ch == "H":
        return (["digits/oh"] if t.hour < 10 else []) + num(t.hour)
    if ch == "k":
        return num(t.hour)
    if ch in "MN":
        return _minute(t.minute, "digits/oclock" if ch == "M" else "", num)
    if ch in "Pp":
        return ["digits/a-m" if t.hour < 12 else "digits/p-m"]
    if ch == "S":
        return num(t.second) if t.second else []
    if ch == "R":
        return _letter("H", t, current, tz, when, num) + _letter("M", t, current, tz, when, num)
    if ch == "T":
        return _letter("R", t, current, tz, when, num) + _letter("S", t, current, tz, when, num)
    if ch in "Qq":
        start_today = current.replace(hour=0, minute=0, second=0, microsecond=0)
        if t >= start_today:
            return ["digits/today"] if ch == "Q" else []
        if t >= start_today - timedelta(days=1):
            return ["digits/yesterday"]
        if ch == "q" and t >= start_today - timedelta(days=6):
            return [f"digits/day-{weekday}"]
        return (_letter("A", t, current, tz, when, num) + _letter("B", t, current, tz, when, num)
                + _letter("d", t, current, tz, when, num) + _letter("Y", t, current, tz, when, num))
    return []
