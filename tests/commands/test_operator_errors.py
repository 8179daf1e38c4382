"""The operator commands when something is wrong or unusual (issue 17, items 8-11): one clear
line per error, ids and caller ids shown whole, the embedded default found as `serve` finds it."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from rich.console import Console

from imapvm.cli import main
from imapvm.commands.ls import print_table, received_text
from imapvm.config import embedded
from imapvm.storage.base import MessageRef, QuotaInfo
from tests.conftest import make_account
from tests.support.dovecot import DovecotServer


def imapvm(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imapvm", *map(str, args)],
                          capture_output=True, text=True, timeout=90, cwd=cwd)


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    t = np.arange(2 * 8000) / 8000
    path = tmp_path / "note.wav"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16), 8000)
    return path


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word (a firewall's tarpit, a wrong port)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for c in accepted:
        c.close()
    listener.close()


def test_silent_imap_server_gives_one_clear_line(tmp_path: Path, silent_server: int) -> None:
    """Item 8: not an empty `imapvm mwi: ` and no "Future exception was never retrieved"."""
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"[general]\nimapserver=127.0.0.1\nimapport={silent_server}\n"
                    "imapflags=notls\n[default]\n1234 => 1,A,,,imapuser=a|imappassword=pw\n")
    res = imapvm("mwi", "1234", "--config", conf, "--timeout", "1")
    assert res.returncode == 1
    line = one_line(res.stderr)
    assert line == (f"imapvm mwi: a@127.0.0.1:{silent_server}: accepted the connection but sent "
                    "no IMAP greeting within 1 s (is it an IMAP server?)")
    bad = imapvm("mwi", "1234", "--config", conf, "--timeout", "soon")
    assert bad.returncode == 2
    assert "'soon' is not a number of seconds" in bad.stderr


def test_garbage_id_says_the_format(tmp_path: Path) -> None:
    """Item 9: not `not enough values to unpack (expected 3, got 1)`."""
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\n[default]\n100 => 1,Carol\n")
    cfg = ("--config", conf, "--set", f"paths.spool={tmp_path / 'spool'}")
    for command in (("export", "100", "garbage", "--out", tmp_path / "x.eml"),
                    ("rm", "100", "INBOX:x:1"), ("mv", "100", "::", "Old")):
        res = imapvm(*command, *cfg)
        assert res.returncode == 1
        line = one_line(res.stderr)
        assert "is not a message id (expected FOLDER:UIDVALIDITY:UID" in line, line
    assert MessageRef.parse("INBOX:17:42") == MessageRef("INBOX", 17, 42)
    assert str(MessageRef.parse("Old:0:3:msg-abc")) == "Old:0:3:msg-abc"


def test_errors_never_wrap_at_80_columns(tmp_path: Path) -> None:
    """Item 9: a long error stays one line even where rich would wrap at 80 columns."""
    conf = tmp_path / ("a-rather-long-directory-name-" * 4) / "voicemail.conf"
    conf.parent.mkdir()
    conf.write_text("[general]\n[default]\n1 => 1\n")
    res = subprocess.run([sys.executable, "-m", "imapvm", "ls", "999", "--config",
                          str(conf)], capture_output=True, text=True,
                         timeout=60, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 1
    assert len(one_line(res.stderr)) > 80


def test_maxmsg_refusal_without_quota_names_only_the_message_limit(
    tmp_path: Path, dovecot_restricted: DovecotServer, recording: Path,
) -> None:
    """Item 9: the restricted server has no QUOTA: not `None of None KiB`."""
    acct = make_account(dovecot_restricted)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"[general]\nimapserver=127.0.0.1\nimapport={dovecot_restricted.port}\n"
                    f"imapflags=notls\nmaxmsg=1\n[default]\n"
                    f"1234 => 1,A,,,imapuser={acct.user}|imappassword={acct.password}\n")
    assert imapvm("deposit", "1234", "--audio", recording, "--config", conf).returncode == 0
    res = imapvm("deposit", "1234", "--audio", recording, "--config", conf)
    assert res.returncode == 1
    assert one_line(res.stderr) == "imapvm deposit: 1234@default: mailbox full (1 of 1 messages)"
    assert QuotaInfo(100, 100, messages=0).describe(5) == "100 of 100 KiB used, the message " \
        "needs 5 KiB"


def test_ls_keeps_caller_brackets_and_whole_ids_in_a_pipe(tmp_path: Path,
                                                         recording: Path) -> None:
    """Item 10: `Bob <5551234>` keeps its `>`; ids in a pipe are whole (copyable into rm)."""
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\n[a-long-context-name-for-long-ids]\n100 => 1,Carol\n")
    cfg = ("--config", conf, "--set", f"paths.spool={tmp_path / 'spool'}")
    box = "100@a-long-context-name-for-long-ids"
    for _ in range(2):
        dep = imapvm("deposit", box, "--audio", recording, "--caller", "Bob <5551234>", *cfg)
        assert dep.returncode == 0, dep.stderr
    ids = [m["id"] for m in json.loads(imapvm("ls", box, "--json", *cfg).stdout)["messages"]]
    table = imapvm("ls", box, *cfg)
    assert table.returncode == 0
    assert "Bob <5551234>" in table.stdout
    for i in ids:
        assert i in table.stdout
    assert imapvm("rm", box, ids[0], *cfg).returncode == 0


def test_ls_table_at_80_columns_keeps_ids_whole() -> None:
    """Item 10: on an 80-column terminal the other columns give way, never the id."""
    ids = [f"INBOX:1712345678:{n}" for n in (7, 123456)] + ["Old:0:3:" + "k" * 40]
    rows: list[dict[str, object]] = [
        {"id": i, "folder": "INBOX", "received": 1_700_000_000, "caller_name": "Bob Example",
         "caller_number": "+4930123456789", "duration": 12, "state": "new"} for i in ids]
    out = io.StringIO()
    print_table(Console(file=out, width=80), "1234@default  (imap://example)", rows)
    text = out.getvalue()
    for i in ids:
        assert i in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_received_time_beyond_any_clock_is_shown_not_a_crash() -> None:
    """Item 15 (ls side): `X-Asterisk-VM-Orig-time: 99999999999999999999999`."""
    assert received_text(99999999999999999999999) == "? (99999999999999999999999)"
    assert received_text(0).startswith("1970-01-01") or received_text(0).startswith("1969-12-31")


def test_commands_use_the_embedded_default_as_serve_does(
    tmp_path: Path, recording: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Item 11: with no voicemail.conf, `ls 1234` / `mwi 1234` in serve's directory see the
    embedded default's mailbox in ./var/spool (what serve announces), and a wrong number says
    what to pass."""
    monkeypatch.setattr(embedded, "DEFAULT_VOICEMAIL_PATH", tmp_path / "absent.conf")
    monkeypatch.chdir(tmp_path)
    assert main(["deposit", "1234", "--audio", str(recording)]) == 0
    assert list((tmp_path / "var/spool/default/1234/INBOX").glob("msg0000.*"))
    capsys.readouterr()
    assert main(["mwi", "1234", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new"] == 1
    assert main(["ls", "1234", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["messages"]) == 1
    assert main(["ls", "99"]) == 1
    err = capsys.readouterr().err
    assert "no mailbox 99 in the embedded default" in err
    assert "mailbox 1234@default" in err
    assert "pass --config VOICEMAIL_CONF" in err
