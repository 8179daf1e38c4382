"""The operator's commands (deposit, ls, mwi, export, mv, rm) on Dovecot and on the file spool,
run as a user runs them: `python -m imapvm ...` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from imapvm.audio import formats
from tests.conftest import make_account
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient


def imapvm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imapvm", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """3 s of a 440 Hz tone at 16 kHz stereo: the command must convert it."""
    t = np.arange(3 * 16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    path = tmp_path / "note.wav"
    soundfile.write(path, np.stack([tone, tone], axis=1), 16000)
    return path


def _conf(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "voicemail.conf"
    path.write_text(body)
    return path


def test_imap_round_trip(tmp_path: Path, dovecot_slash: DovecotServer, recording: Path) -> None:
    acct = make_account(dovecot_slash)
    conf = _conf(tmp_path, f"""[general]
format=wav|gsm
imapserver=127.0.0.1
imapport={dovecot_slash.port}
imapflags=notls

[default]
1234 => 4242,Alice Example,alice@example.org,,imapuser={acct.user}|imappassword={acct.password}
""")
    cfg = ("--config", conf)
    dep = imapvm("deposit", "1234", "--audio", recording, "--caller", "Bob <5551234>", *cfg)
    assert dep.returncode == 0, dep.stderr
    assert "3 s from Bob" in dep.stdout
    listed = json.loads(imapvm("ls", "1234@default", "--json", *cfg).stdout)
    [msg] = listed["messages"]
    assert (msg["caller_name"], msg["caller_number"], msg["duration"], msg["state"]) == (
        "Bob", "5551234", 3, "new")
    assert listed["where"].startswith("imap://127.0.0.1")
    mwi = json.loads(imapvm("mwi", "1234", "--json", *cfg).stdout)
    assert (mwi["new"], mwi["old"], mwi["messages_waiting"]) == (1, 0, True)
    # export never marks read; the audio comes back as 3 s at 8 kHz
    out = tmp_path / "out.wav"
    assert imapvm("export", "1234", msg["id"], "--out", out, *cfg).returncode == 0
    audio = formats.read_file(out)
    assert audio.whole_seconds == 3
    eml = tmp_path / "out.eml"
    assert imapvm("export", "1234", msg["id"], "--out", eml, *cfg).returncode == 0
    assert b"X-Asterisk-VM-Caller-ID-Num: 5551234" in eml.read_bytes()
    gsm = tmp_path / "out.gsm"
    assert imapvm("export", "1234", msg["id"], "--out", gsm, *cfg).returncode == 0
    assert len(gsm.read_bytes()) % 33 == 0
    with MailClient(dovecot_slash, acct.user, acct.password) as c:
        c.select("INBOX")
        [uid] = c.uids()
        assert "\\Seen" not in c.flags(uid)
    moved = imapvm("mv", "1234", msg["id"], "Work", *cfg)
    assert moved.returncode == 0, moved.stderr
    work = json.loads(imapvm("ls", "1234", "--folder", "Work", "--json", *cfg).stdout)
    assert [m["id"] for m in work["messages"]] == [moved.stdout.strip()]
    rm = imapvm("rm", "1234", moved.stdout.strip(), *cfg)
    assert rm.returncode == 0, rm.stderr
    assert json.loads(imapvm("ls", "1234", "--json", *cfg).stdout)["messages"] == []


def test_spool_round_trip_and_errors(tmp_path: Path, recording: Path) -> None:
    conf = _conf(tmp_path, "[general]\nformat=wav\n\n[default]\n100 => 1,Carol\n")
    cfg = ("--config", conf, "--set", f"paths.spool={tmp_path / 'spool'}")
    dep = imapvm("deposit", "100", "--audio", recording, "--urgent", *cfg)
    assert dep.returncode == 0, dep.stderr
    assert list((tmp_path / "spool/default/100/Urgent").glob("msg0000.*"))
    mwi = json.loads(imapvm("mwi", "100", "--json", *cfg).stdout)
    assert (mwi["urgent"], mwi["voice_message"]) == (1, "1/0 (1/0)")
    table = imapvm("ls", "100", *cfg)
    assert table.returncode == 0
    assert "urgent" in table.stdout
    missing = imapvm("ls", "999", *cfg)
    assert missing.returncode == 1
    assert "no mailbox 999" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_id = imapvm("rm", "100", "not-an-id", *cfg)
    assert bad_id.returncode == 1
    assert "Traceback" not in bad_id.stderr
    bad_audio = tmp_path / "x.wav"
    bad_audio.write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    res = imapvm("deposit", "100", "--audio", bad_audio, *cfg)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
