"""The notifications built from a stored voicemail (pure functions over bytes)."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import numpy as np

from imapvm.audio.core import Audio
from imapvm.config.loader import load
from imapvm.config.model import MailboxSettings
from imapvm.message import Deposit, build_voicemail, parse_message
from imapvm.message.from_config import email_settings
from imapvm.message.parse import parse_meta
from imapvm.notify.compose import owner_email, pager_email


def _stored(tmp_path: Path, general: str = "") -> tuple[bytes, MailboxSettings]:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"[general]\nformat=wav|gsm\n{general}\n[default]\n"
                    "1234 => 4242,Zoë Ünicode,zoe@example.com,zoe-pager@example.com\n")
    loaded = load(conf, None)
    ms = loaded.voicemail.effective("1234", "default")
    t = np.arange(8000) / 8000
    raw = build_voicemail(Deposit(number=3, caller_id_num="5550001", caller_id_name="Ça va",
                                  flag="Urgent", category="dictate/record"),
                          email_settings(ms, loaded.voicemail),
                          Audio((np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16))).raw
    return raw, ms


def test_owner_email_changes_the_header_block_only(tmp_path: Path) -> None:
    raw, ms = _stored(tmp_path, "emailsubject=A very long subject for ${VM_NAME} that the "
                      "builder has to fold over several lines because of its length: ${VM_DUR}")
    out = owner_email(raw, ms, hostname="pbx.test")
    assert out.partition(b"\r\n\r\n")[2] == raw.partition(b"\r\n\r\n")[2]
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert not [k for k in msg if k.lower().startswith(("x-asterisk", "x-imapvm"))]
    assert msg["Subject"].startswith("A very long subject for Zoë Ünicode")
    assert msg["Message-ID"].startswith("<Imapvm-Notify-")
    assert msg["Message-ID"] != email.message_from_bytes(raw)["Message-ID"]
    assert msg["Content-Type"].startswith("multipart/mixed")


def test_pager_notice_from_the_header_block(tmp_path: Path) -> None:
    raw, ms = _stored(tmp_path, "pagerdateformat=%d.%m.%Y")
    assert parse_meta(raw) == parse_message(raw).meta
    out = pager_email(raw, ms, hostname="pbx.test")
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert str(msg["To"]) == "Zoë Ünicode <zoe-pager@example.com>"
    text = msg.get_content()
    assert text.startswith("New 0:01 long urgent msg in box 1234")
    assert '"Ça va" <5550001>' in text
    assert re.search(r", on \d\d\.\d\d\.\d{4}$", text.strip())  # pagerdateformat
    assert msg.get_content_charset() == "iso-8859-1"
