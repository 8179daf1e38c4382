"""`imapvm migrate` between an Asterisk-written spool and Dovecot, both ways, idempotently."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from tests.conftest import make_account
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient


def imapvm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imapvm", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _wav(seconds: float, freq: float) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    buf = io.BytesIO()
    soundfile.write(buf, (0.2 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16), 8000,
                    format="WAV", subtype="PCM_16")
    return buf.getvalue()


def asterisk_spool(root: Path) -> dict[str, list[str]]:
    """A spool as Asterisk's file storage writes it; returns folder -> msg_ids."""
    layout = {"INBOX": 2, "Old": 1, "Urgent": 1, "Work": 1}
    ids: dict[str, list[str]] = {}
    n = 0
    for folder, count in layout.items():
        d = root / "default" / "1234" / folder
        d.mkdir(parents=True)
        for i in range(count):
            n += 1
            msg_id = f"179568{n:04d}-{n:08x}"
            ids.setdefault(folder, []).append(msg_id)
            (d / f"msg{i:04d}.txt").write_text(
                ";\n; Message Information file\n;\n[message]\norigmailbox=1234\n"
                "context=default\nmacrocontext=\nexten=s\nrdnis=unknown\npriority=2\n"
                f'callerchan=SIP/x\ncallerid="Caller {n}" <555000{n}>\norigdate=x\n'
                f"origtime={1795680000 + n}\ncategory=\nmsg_id={msg_id}\n"
                f"flag={'Urgent' if folder == 'Urgent' else ''}\nduration=1\n")
            (d / f"msg{i:04d}.wav").write_bytes(_wav(1.0, 300 + 50 * n))
    return ids


def test_spool_to_imap_and_back(tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    ids = asterisk_spool(tmp_path / "spool")
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"""[general]
format=wav
imapserver=127.0.0.1
imapport={dovecot_slash.port}
imapflags=notls

[default]
1234 => 1,Alice,,,imapuser={acct.user}|imappassword={acct.password}|imapvmshareid=alice-vm
""")
    cfg = ("--config", conf)
    first = imapvm("migrate", "--from", f"spool:{tmp_path / 'spool'}", "--to", "imap",
                   "--json", *cfg)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["total"] == {"copied": 5, "skipped": 0, "failed": []}
    mwi = json.loads(imapvm("mwi", "1234", "--json", *cfg).stdout)
    assert (mwi["new"], mwi["old"], mwi["urgent"]) == (2, 1, 1)
    work = json.loads(imapvm("ls", "1234", "--folder", "Work", "--json", *cfg).stdout)
    assert [m["caller_name"] for m in work["messages"]] == ["Caller 5"]
    with MailClient(dovecot_slash, acct.user, acct.password) as c:
        c.select("INBOX")
        assert len(c.uids()) == 4
        assert all(b"X-Asterisk-VM-Extension: alice-vm" in c.fetch(u) for u in c.uids())
    # run again: nothing copied twice
    again = imapvm("migrate", "--from", f"spool:{tmp_path / 'spool'}", "--to", "imap",
                   "--json", *cfg)
    assert json.loads(again.stdout)["total"] == {"copied": 0, "skipped": 5, "failed": []}
    # and back into an empty spool
    back = imapvm("migrate", "--from", "imap", "--to", f"spool:{tmp_path / 'back'}",
                  "--json", *cfg)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["total"]["copied"] == 5
    for folder, msg_ids in ids.items():
        d = tmp_path / "back" / "default" / "1234" / folder
        got = sorted(line.split("=", 1)[1] for p in d.glob("msg*.txt")
                     for line in p.read_text().splitlines() if line.startswith("msg_id="))
        assert got == sorted(msg_ids), folder
        original = tmp_path / "spool" / "default" / "1234" / folder / "msg0000.wav"
        assert (d / "msg0000.wav").read_bytes() == original.read_bytes()


def test_migrate_refuses_nonsense(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[default]\n100 => 1,Carol\n")
    res = imapvm("migrate", "--from", "imap", "--to", "imap", "--config", conf)
    assert res.returncode == 1
    assert "one side of each" in res.stderr
    res = imapvm("migrate", "--from", "spool", "--to", "imap", "--mailbox", "100",
                 "--config", conf)
    assert res.returncode == 1
    assert "not configured for IMAP" in res.stderr
