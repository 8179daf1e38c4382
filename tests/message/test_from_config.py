"""voicemail.conf settings reach the message builder with Asterisk's meaning intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imapvm.audio.core import Audio
from imapvm.config import load
from imapvm.message import Deposit, build_voicemail, parse_message
from imapvm.message.from_config import email_settings


def test_escapes_timezone_share_id_and_formats(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(r"""[general]
format=wav49|gsm|wav
fromstring=Voicemail System
emailsubject=New message ${VM_MSGNUM} for ${VM_NAME}
emailbody=Hello ${VM_NAME},\n\tpath C:\\vm\\${VM_MAILBOX}\n
imapserver=127.0.0.1
authuser=master
authpassword=pw

[zonemessages]
eastern=America/New_York|'vm-received' Q 'digits/at' IMp

[default]
100 => 1234,Alice Example,alice@example.org,,imapuser=alice|tz=eastern|imapvmshareid=shared1
""")
    loaded = load(conf, None)
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    es = email_settings(loaded.voicemail.effective("100@default"), loaded.voicemail)
    assert es.extension == "shared1"
    assert es.tz == "America/New_York"
    assert es.formats[0] == "wav49"
    assert es.global_fromstring == "Voicemail System"
    audio = Audio(np.zeros(8000, dtype=np.int16))
    built = build_voicemail(Deposit(number=3, caller_id_num="555", caller_id_name="Bob"),
                            es, audio)
    text = built.raw.decode("latin-1")
    assert "X-Asterisk-VM-Extension: shared1\r\n" in text
    assert "Hello Alice Example,\r\n\tpath C:\\vm\\100\r\n" in text  # one backslash each
    assert "-0500" in text.split("\r\n", 1)[0] or "-0400" in text.split("\r\n", 1)[0]
    parsed = parse_message(built.raw)
    assert parsed.meta.extension == "shared1"
    assert parsed.meta.caller_id_num == "555"
