"""Voicemail to e-mail as an operator sees it: `imapvm deposit` on a spool mailbox with
`mailcmd` set to a script that captures what it is given (the issue's "Show it")."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest
import soundfile

from imapvm.audio import formats

CAPTURE = """#!/bin/sh
# A stand-in for sendmail: keeps the message and the arguments it was run with.
n=$(ls "{out}" | wc -l)
printf '%s\\n' "$@" > "{out}/$n.args"
cat > "{out}/$n.eml"
"""


def imapvm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imapvm", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "captured"
    out.mkdir()
    script = tmp_path / "capture-mail"
    script.write_text(CAPTURE.format(out=out))
    script.chmod(0o755)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"""[general]
format=wav|gsm
serveremail=voicemail@pbx.example.com
fromstring=The PBX
mailcmd={script} -t
emaildateformat=%Y-%m-%d %H:%M

[default]
1234 => 4242,Alice,alice@example.com,alice-pager@example.com
5678 => 1111,Bob,bob@example.com,,delete=yes|attach=yes
""")
    toml = tmp_path / "imapvm.toml"
    toml.write_text(f'[paths]\nspool = "{tmp_path / "spool"}"\noutbox = "{tmp_path / "outbox"}"\n')
    t = np.arange(3 * 8000) / 8000
    wav = tmp_path / "x.wav"
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16), 8000)
    return {"conf": conf, "toml": toml, "out": out, "wav": wav, "spool": tmp_path / "spool",
            "outbox": tmp_path / "outbox"}


def _captured(out: Path) -> list[tuple[list[str], EmailMessage]]:
    found = []
    for eml in sorted(out.glob("*.eml"), key=lambda p: int(p.stem)):
        args = (out / f"{eml.stem}.args").read_text().split()
        raw = eml.read_bytes()
        assert b"\r\n" not in raw  # piped with LF line ends, as Asterisk does
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append((args, msg))
    return found


def test_deposit_sends_the_email_with_the_attachment_and_the_pager_notice(
        site: dict[str, Path]) -> None:
    cfg = ("--config", site["conf"], "--settings", site["toml"])
    dep = imapvm("deposit", "1234", "--audio", site["wav"], "--caller", "Carol <5550001>", *cfg)
    assert dep.returncode == 0, dep.stderr
    assert "e-mail sent to alice@example.com" in dep.stdout
    assert "pager notice sent to alice-pager@example.com" in dep.stdout
    [(args, mail), (pager_args, pager)] = _captured(site["out"])
    assert args == pager_args == ["-t"]
    # the owner's e-mail: Asterisk's headers, minus the X-Asterisk-VM-* ones
    assert mail["To"] == "Alice <alice@example.com>"
    assert mail["From"] == "The PBX <voicemail@pbx.example.com>"
    assert mail["Subject"] == "[PBX]: New message 1 in mailbox 1234"
    assert not [k for k in mail if k.lower().startswith(("x-asterisk", "x-imapvm"))]
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert text.startswith("Dear Alice:")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", text)  # emaildateformat
    assert "0:03" in text
    assert '"Carol" <5550001>' in text
    [wav] = [p for p in mail.iter_attachments() if p.get_filename() == "msg0000.wav"]
    payload = wav.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert formats.decode(payload, "wav").whole_seconds == 3
    # the pager notice: short, text only
    assert pager["To"] == "Alice <alice-pager@example.com>"
    assert pager["Subject"] == "New VM"
    assert pager.get_content_type() == "text/plain"
    notice = pager.get_content()
    assert notice.startswith("New 0:03 long msg in box 1234")
    assert '"Carol" <5550001>' in notice
    # the voicemail itself is in the mailbox
    listed = json.loads(imapvm("ls", "1234", "--json", *cfg).stdout)
    assert len(listed["messages"]) == 1
    assert not list((site["outbox"] / "mail").glob("*.json"))


def test_delete_yes_is_emailed_and_leaves_the_mailbox_empty(site: dict[str, Path]) -> None:
    cfg = ("--config", site["conf"], "--settings", site["toml"])
    dep = imapvm("deposit", "5678", "--audio", site["wav"], *cfg)
    assert dep.returncode == 0, dep.stderr
    assert "delete=yes" in dep.stdout
    [(_, mail)] = _captured(site["out"])
    assert mail["To"] == "Bob <bob@example.com>"
    names = [p.get_filename() for p in mail.walk() if p.get_filename()]
    assert names == ["msg0000.gsm", "msg0000.wav"]  # the GSM copy stays, as in the stored one
    listed = json.loads(imapvm("ls", "5678", "--json", *cfg).stdout)
    assert listed["messages"] == []
    inbox = site["spool"] / "default" / "5678" / "INBOX"
    assert list(inbox.glob("msg*")) == []


def test_a_failed_send_is_kept_and_the_voicemail_too(site: dict[str, Path]) -> None:
    """mailcmd fails: the voicemail is stored, delete=yes does not delete it, and the e-mail
    waits in the outbox's mail queue for the server to retry."""
    broken = site["conf"].read_text().replace(f"mailcmd={site['out'].parent}/capture-mail -t",
                                              "mailcmd=/bin/false")
    site["conf"].write_text(broken)
    cfg = ("--config", site["conf"], "--settings", site["toml"])
    dep = imapvm("deposit", "5678", "--audio", site["wav"], *cfg)
    assert dep.returncode == 0, dep.stderr
    assert "not sent yet" in dep.stdout
    assert "/bin/false exited with status 1" in dep.stdout
    listed = json.loads(imapvm("ls", "5678", "--json", *cfg).stdout)
    assert len(listed["messages"]) == 1
    [item] = [json.loads(p.read_text()) for p in (site["outbox"] / "mail").glob("*.json")]
    assert item["delete_ref"]
    assert not item["sent"]
    assert item["attempts"] == 1
    assert os.path.exists(site["outbox"] / "mail" / f"{item['id']}.eml")
