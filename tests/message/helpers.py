"""Shared fixtures for message tests: fixed settings, fixed randomness, integer-exact audio."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import numpy as np

from imapvm.audio import Audio
from imapvm.message import EmailSettings, Randomness

#: 2026-11-26 14:30:05 UTC, a Thursday.
NOW = datetime(2026, 11, 26, 14, 30, 5, tzinfo=UTC)
FIXED = Randomness(
    now=NOW, boundary_token="1804289383", message_id_token="846930886",
    msg_id_token=0x0001, pid=4242,
)

SETTINGS = EmailSettings(
    context="default",
    mailbox="1234",
    fullname="Ellis Redding",
    emails=("red@buxton.us",),
    imapuser="eredding",
    hostname="pbx.example.org",
    tz="America/New_York",
    formats=("wav49", "gsm", "wav"),
)


def settings(**changes: object) -> EmailSettings:
    return replace(SETTINGS, **changes)  # type: ignore[arg-type]


def sawtooth(seconds: float, step: int = 37) -> Audio:
    """Integer-only test signal: identical bytes on every platform (no libm rounding)."""
    n = round(seconds * 8000)
    return Audio((((np.arange(n) * step) % 2000 - 1000) * 8).astype(np.int16))


def strict_parse(raw: bytes) -> EmailMessage:
    """Parse with the modern policy and fail on any defect anywhere in the tree."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
        for name, value in part.items():
            assert not getattr(value, "defects", ()), (name, value.defects)
    return msg
