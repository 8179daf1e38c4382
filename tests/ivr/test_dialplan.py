"""Asterisk's VoiceMail()/VoiceMailMain() option letters as the SIP convention carries them."""

from __future__ import annotations

import pytest

from imapvm.ivr.dialplan import leave_options, main_options, parse_letters
from imapvm.ivr.leave import LeaveOptions
from imapvm.ivr.main import MainOptions
from imapvm.storage.base import Folder


def test_letters_with_arguments_and_commas() -> None:
    assert parse_letters("U,s d(sales)g(6)") == [("U", None), ("s", None), ("d", "sales"),
                                                  ("g", "6")]
    with pytest.raises(ValueError, match="closing parenthesis"):
        parse_letters("d(sales")
    with pytest.raises(ValueError, match="not a letter"):
        parse_letters("U;s")


@pytest.mark.parametrize(
    ("text", "cause", "default", "expected"),
    [
        ("", None, "unavailable", LeaveOptions(greeting="unavailable")),
        ("", None, None, LeaveOptions(greeting=None)),
        ("", "busy", None, LeaveOptions(greeting="busy")),
        ("u", "busy", None, LeaveOptions(greeting="unavailable")),
        ("bUsP", None, None, LeaveOptions(greeting="busy", urgent=True, skip_instructions=True,
                                          priority=True)),
        ("Sd", None, None, LeaveOptions(greeting=None, skip_instructions_after_greeting=True,
                                        exit_context="home")),
        ("d(sales)g(-3)t", None, None, LeaveOptions(greeting=None, exit_context="sales",
                                                    gain_db=-3.0, beep=None)),
    ],
)
def test_leave_options(text: str, cause: str | None, default: str | None,
                       expected: LeaveOptions) -> None:
    options, problems = leave_options(text, cause, default, "home")  # type: ignore[arg-type]
    assert problems == []
    assert options == expected


def test_bad_leave_options_are_named_and_the_rest_kept() -> None:
    options, problems = leave_options("Ug(loud)x", None, "unavailable")
    assert options == LeaveOptions(greeting="unavailable", urgent=True)
    assert problems == ["vm-opts option g: g(loud) needs a number of decibels",
                        "vm-opts option x: not a VoiceMail() option (b d e g P s S t u U)"]


def test_main_options() -> None:
    assert main_options("s", "1234") == (MainOptions(skip_password=True), "1234", [])
    assert main_options("pa(1)r", "12") == (
        MainOptions(prefix="12", autoplay=Folder.OLD, read_only=True), None, [])
    options, box, problems = main_options("sq", "1234")
    assert box == "1234"
    assert options == MainOptions(skip_password=True)
    assert problems == ["vm-opts option q: not a VoiceMailMain() option (a g p r s)"]
