"""English numbers, digits, durations and dates as prompt lists."""

from __future__ import annotations

import pytest

from imapvm.audio import prompts
from imapvm.ivr import say

NOW = 1_764_000_000  # Monday 24 November 2025, 16:00:00 UTC


@pytest.mark.parametrize(("n", "words"), [
    (0, ["digits/0"]),
    (7, ["digits/7"]),
    (19, ["digits/19"]),
    (20, ["digits/20"]),
    (42, ["digits/40", "digits/2"]),
    (100, ["digits/1", "digits/hundred"]),
    (115, ["digits/1", "digits/hundred", "digits/15"]),
    (2026, ["digits/2", "digits/thousand", "digits/20", "digits/6"]),
    (1_000_000, ["digits/1", "digits/million"]),
    (-3, ["digits/minus", "digits/3"]),
])
def test_number(n: int, words: list[str]) -> None:
    assert say.number(n) == words


def test_ordinals_digits_duration() -> None:
    assert say.ordinal(3) == ["digits/h-3"]
    assert say.ordinal(21) == ["digits/20", "digits/h-1"]
    assert say.ordinal(30) == ["digits/h-30"]
    assert say.digits("12*#") == ["digits/1", "digits/2", "digits/star", "digits/pound"]
    assert say.duration_minutes(185) == ["vm-duration", "digits/3", "vm-minutes"]


@pytest.mark.parametrize(("when", "words"), [
    (NOW - 3600, ["vm-received", "digits/at", "digits/3", "digits/oclock", "digits/p-m"]),
    (NOW - 86400 + 5 * 60, ["vm-received", "digits/yesterday", "digits/at", "digits/4",
                            "digits/oh", "digits/5", "digits/p-m"]),
    (NOW - 3 * 86400 - 16 * 3600 + 30 * 60, ["vm-received", "digits/day-5", "digits/at",
                                              "digits/12", "digits/30", "digits/a-m"]),
    (NOW - 40 * 86400, ["vm-received", "digits/day-3", "digits/mon-9", "digits/h-15",
                        "digits/2", "digits/thousand", "digits/20", "digits/5", "digits/at",
                        "digits/4", "digits/oclock", "digits/p-m"]),
])
def test_default_envelope(when: int, words: list[str]) -> None:
    assert say.date(when, tz="UTC", now=NOW) == words


def test_zone_format_and_time_zone() -> None:
    # 16:00 UTC is 11:00 in New York; Q says "today"; H pads with "oh"; R = H M
    words = say.date(NOW, "'vm-received' Q 'digits/at' R", tz="America/New_York", now=NOW)
    assert words == ["vm-received", "digits/today", "digits/at", "digits/11", "digits/oclock"]
    assert say.date(NOW - 9 * 3600, "H", tz="UTC", now=NOW) == ["digits/oh", "digits/7"]
    assert say.date(NOW, "A B d Y", tz="UTC", now=NOW) == [
        "digits/day-1", "digits/mon-10", "digits/20", "digits/h-4",
        "digits/2", "digits/thousand", "digits/20", "digits/5"]


def test_every_prompt_the_flows_say_exists() -> None:
    """The flows only use names from the installed Asterisk set (or the required list)."""
    names = [*say.number(1_234_567), *say.date(NOW - 40 * 86400, tz="UTC", now=NOW),
             *say.digits("0123456789*#"), *say.duration_minutes(600)]
    missing = [n for n in names if prompts.find(prompts.DEFAULT_SOUNDS, n) is None]
    assert missing == []


def test_every_prompt_named_in_the_flows_is_required() -> None:
    """`imapvm doctor` checks REQUIRED: it must list every prompt the menus can play."""
    import re
    from pathlib import Path

    import imapvm.ivr

    source = "".join(p.read_text() for p in Path(imapvm.ivr.__file__).parent.glob("*.py"))
    named = set(re.findall(r'"((?:vm|pbx)-[A-Za-z0-9-]+|beep|transfer|digits/[a-z0-9-]+)"',
                           source))
    named |= {f"vm-{t}" for t in ("Cust1", "Cust2", "Cust3", "Cust4", "Cust5")}
    named |= set(say.number(1_234_567_891)) | set(say.digits("*#")) | set(say.number(-1))
    assert sorted(named - set(prompts.REQUIRED)) == []
