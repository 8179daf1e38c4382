"""The operator commands when something is wrong or unusual (issue 17, items 8-11): one clear
line per error, ids and caller ids shown whole, the embedded default found as `serve` finds it."""

from __future__ import annotations

import io
import json
import re
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
from tests.support.dropproxy import DroppingProxy
from tests.support.mailclient import MailClient


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


def _spool_conf(tmp_path: Path, general: str) -> tuple[str | Path, ...]:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"[general]\n{general}\n[default]\n100 => 1,Carol\n")
    return ("--config", conf, "--set", f"paths.spool={tmp_path / 'spool'}")


def _stored(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool/default/100/INBOX").glob("msg*.txt"))


def _tone(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16), rate)
    return path


def test_deposit_honours_minsecs_and_maxsecs(tmp_path: Path) -> None:
    """Item 7: too short is refused with a clear line; too long is cut to maxsecs, with a
    warning, as a caller is cut off."""
    cfg = _spool_conf(tmp_path, "format=wav\nminsecs=2\nmaxsecs=4")
    short = imapvm("deposit", "100", "--audio", _tone(tmp_path / "short.wav", 1.5), *cfg)
    assert short.returncode == 1
    assert one_line(short.stderr) == (
        f"imapvm deposit: {tmp_path / 'short.wav'} is 1.5 s, shorter than minsecs=2 of "
        "100@default: a caller's message that short is discarded")
    assert _stored(tmp_path) == []
    long = imapvm("deposit", "100", "--audio", _tone(tmp_path / "long.wav", 9), *cfg)
    assert long.returncode == 0, long.stderr
    assert "warning: " in one_line(long.stderr)
    assert "is 9 s; kept the first 4 s (maxsecs=4 of 100@default)" in long.stderr
    assert "(4 s from" in long.stdout
    [txt] = _stored(tmp_path)
    assert "duration=4" in txt.read_text()
    helptext = " ".join(imapvm("deposit", "--help").stdout.split())
    assert "A file shorter than minsecs is refused" in helptext
    assert "one longer than maxsecs is cut there, with a warning" in helptext
    ok = imapvm("deposit", "100", "--audio", _tone(tmp_path / "ok.wav", 3), *cfg)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert len(_stored(tmp_path)) == 2


def test_deposit_refuses_what_is_not_a_recording(tmp_path: Path) -> None:
    """Item 18: header-only and truncated WAVs (0-second voicemails), a text file, no
    libsndfile traceback or `<_io.BytesIO object at 0x…>` in the error."""
    cfg = _spool_conf(tmp_path, "format=wav")
    whole = _tone(tmp_path / "whole.wav", 2).read_bytes()
    (tmp_path / "header.wav").write_bytes(whole[:44])
    (tmp_path / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.txt").write_text("not audio at all\n")
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    expected = {
        "header.wav": "a WAV header with no audio (0 s)",
        "truncated.wav": "truncated WAV: its data chunk declares 64000 bytes but the file "
                         f"holds {len(whole) // 2 - 44}",
        "text.txt": "not an audio file imapvm can read",
        "garbage.wav": "",
        "missing.wav": "no such file",
    }
    for name, words in expected.items():
        res = imapvm("deposit", "100", "--audio", tmp_path / name, *cfg)
        assert res.returncode == 1, name
        line = one_line(res.stderr)
        assert line.startswith(f"imapvm deposit: {tmp_path / name}"), line
        assert words in line, line
        for leak in ("<_io.", "invalid literal", "Error opening", "LibsndfileError"):
            assert leak not in line, line
    assert _stored(tmp_path) == []


def test_two_hour_file_is_cut_or_refused_for_its_real_reason(tmp_path: Path) -> None:
    """Item 20: a 2-hour file is cut to maxsecs (only those seconds decoded); with maxsecs=0
    it is refused for its size before decoding, not as "mailbox full"."""
    path = tmp_path / "two-hours.flac"
    with soundfile.SoundFile(path, "w", samplerate=8000, channels=1, format="FLAC") as f:
        block = np.zeros(600 * 8000, dtype=np.int16)
        for _ in range(12):
            f.write(block)
    cut = imapvm("deposit", "100", "--audio", path,
                 *_spool_conf(tmp_path, "format=wav\nmaxsecs=5"))
    assert cut.returncode == 0, cut.stderr
    assert "is 7200 s; kept the first 5 s (maxsecs=5" in cut.stderr
    refused = imapvm("deposit", "100", "--audio", path,
                     *_spool_conf(tmp_path, "format=wav\nmaxsecs=0"))
    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert "7200 s would make a message of about 146 MiB (format=wav), above the 128 MiB" in line
    assert "mailbox full" not in line


@pytest.mark.parametrize("server", ["dovecot_slash", "dovecot_restricted"])
def test_deposit_settles_a_lost_append_answer_by_message_id(
    tmp_path: Path, recording: Path, server: str, request: pytest.FixtureRequest,
) -> None:
    """Item 14: the connection dies after the APPEND reached Dovecot (the proxy eats the
    tagged OK): the deposit is reported stored, and stored once, with or without UIDPLUS."""
    dovecot: DovecotServer = request.getfixturevalue(server)
    acct = make_account(dovecot)
    proxy = DroppingProxy("127.0.0.1", dovecot.port, rb"^\S+ OK .*append completed",
                          times=1).start()
    try:
        conf = tmp_path / "voicemail.conf"
        conf.write_text(f"[general]\nimapserver=127.0.0.1\nimapport={proxy.port}\n"
                        f"imapflags=notls\n[default]\n"
                        f"1234 => 1,A,,,imapuser={acct.user}|imappassword={acct.password}\n")
        res = imapvm("deposit", "1234", "--audio", recording, "--caller", "Bob <555>",
                     "--config", conf)
        assert proxy.dropped == 1
        assert res.returncode == 0, res.stderr
        assert "(2 s from Bob)" in res.stdout
        with MailClient(dovecot, acct.user, acct.password) as client:
            client.select("INBOX")
            [uid] = client.uids()
            assert res.stdout.startswith("INBOX:")
            assert res.stdout.split()[0].endswith(f":{uid}")
    finally:
        proxy.stop()


def test_a_lost_connection_names_the_account_once(tmp_path: Path,
                                                  dovecot_slash: DovecotServer) -> None:
    """Item 18: not `u1@host: u1@host: connection closed by server` when a retried command
    loses its connection every time."""
    acct = make_account(dovecot_slash)
    proxy = DroppingProxy("127.0.0.1", dovecot_slash.port,
                          rb"(list|select|examine|status|search) completed", times=100).start()
    try:
        conf = tmp_path / "voicemail.conf"
        conf.write_text(f"[general]\nimapserver=127.0.0.1\nimapport={proxy.port}\n"
                        f"imapflags=notls\n[default]\n"
                        f"1234 => 1,A,,,imapuser={acct.user}|imappassword={acct.password}\n")
        res = imapvm("mwi", "1234", "--config", conf)
        assert proxy.dropped >= 2  # the first try and its retry
        assert res.returncode == 1
        line = one_line(res.stderr)
        label = f"{acct.user}@127.0.0.1:{proxy.port}:"
        assert line.count(label) == 1, line
    finally:
        proxy.stop()


def test_ls_lists_a_message_whose_time_no_clock_holds(tmp_path: Path, recording: Path) -> None:
    """Item 15 (ls side), through the command: the spool's `origtime=` as the hostile header."""
    cfg = _spool_conf(tmp_path, "format=wav")
    assert imapvm("deposit", "100", "--audio", recording, *cfg).returncode == 0
    [txt] = _stored(tmp_path)
    txt.write_text(re.sub(r"origtime=\d+", "origtime=99999999999999999999999", txt.read_text()))
    table = imapvm("ls", "100", *cfg)
    assert table.returncode == 0, table.stderr
    assert "? (99999999999999999999999)" in table.stdout
    listed = json.loads(imapvm("ls", "100", "--json", *cfg).stdout)
    assert listed["messages"][0]["received"] == 99999999999999999999999


def test_an_unexpected_error_is_still_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's promise, for bugs too: one line and exit 1, the traceback on request."""
    import argparse

    from imapvm.commands._runtime import run_async

    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\n[default]\n1 => 1\n")
    args = argparse.Namespace(command="ls", config=str(conf), settings=None, set=[],
                              timeout=1.0)

    async def broken(*_: object) -> int:
        return 1 // 0

    assert run_async(args, broken) == 1
    assert one_line(capsys.readouterr().err).startswith(
        "imapvm ls: unexpected ZeroDivisionError: integer division or modulo by zero (a bug;")
    monkeypatch.setenv("IMAPVM_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        run_async(args, broken)
