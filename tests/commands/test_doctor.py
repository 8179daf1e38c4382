"""`imapvm doctor` against the real servers: what it reports for a modern server, an old one
and a broken login."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from imapvm.commands.doctor import strategies
from tests.conftest import make_account
from tests.support.cyrus import CyrusServer
from tests.support.dovecot import DovecotServer
from tests.support.net import free_port


def doctor(conf: Path, *extra: str) -> tuple[int, dict[str, object]]:
    res = subprocess.run([sys.executable, "-m", "imapvm", "doctor", "--json", "--config",
                          str(conf), *extra], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def _checks(report: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    return {(c["subject"], c["item"]): c for c in report["checks"]}  # type: ignore[index,union-attr]


def test_doctor_reports_strategies_per_server(tmp_path: Path, dovecot_slash: DovecotServer,
                                              dovecot_restricted: DovecotServer,
                                              cyrus: CyrusServer) -> None:
    a, b, c = (make_account(s) for s in (dovecot_slash, dovecot_restricted, cyrus))
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"""[general]
imapserver=127.0.0.1
imapflags=notls

[default]
1 => 1,A,,,imapuser={a.user}|imappassword={a.password}|imapport={dovecot_slash.port}
2 => 1,B,,,imapuser={b.user}|imappassword={b.password}|imapport={dovecot_restricted.port}
3 => 1,C,,,imapuser={c.user}|imappassword={c.password}|imapport={cyrus.port}
4 => 1,D,,,imapuser=ghost|imappassword=wrong|imapport={dovecot_slash.port}
""")
    port = free_port(kind=socket.SOCK_DGRAM)  # outside the ephemeral range: nothing takes it
    rc, report = doctor(conf, "--set", f'sip.listen=["127.0.0.1:{port}"]',
                        "--set", "paths.sounds=/usr/share/asterisk/sounds/en_US_f_Allison")
    checks = _checks(report)
    assert rc == 1  # mailbox 4 cannot log in
    modern = f"imap {a.user}@127.0.0.1:{dovecot_slash.port}"
    old = f"imap {b.user}@127.0.0.1:{dovecot_restricted.port}"
    cy = f"imap {c.user}@127.0.0.1:{cyrus.port}"
    assert checks[(modern, "expunge")]["detail"].startswith("UID EXPUNGE")  # type: ignore[union-attr]
    assert checks[(modern, "watch")]["detail"] == "NOTIFY on one connection"
    assert "no UIDPLUS" in checks[(old, "expunge")]["detail"]  # type: ignore[operator]
    assert checks[(old, "watch")]["detail"].startswith("IDLE")  # type: ignore[union-attr]
    assert checks[(cy, "watch")]["detail"].startswith("IDLE")  # type: ignore[union-attr]
    assert checks[(old, "hierarchy")]["ok"]
    assert checks[("mailbox 1@default", "counts")]["ok"]
    failed = [c for c in report["checks"] if not c["ok"]]  # type: ignore[union-attr]
    assert len(failed) == 1
    assert "refused" in failed[0]["detail"]
    assert checks[("sip", f"listen 127.0.0.1:{port}")]["ok"]
    assert checks[("prompts", "/usr/share/asterisk/sounds/en_US_f_Allison")]["ok"]


def test_doctor_reports_busy_sip_port_and_missing_prompts(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[default]\n100 => 1,Carol\n")
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        port = busy.getsockname()[1]
        rc, report = doctor(conf, "--set", f'sip.listen=["127.0.0.1:{port}"]',
                            "--set", f"paths.sounds={tmp_path}",
                            "--set", f"paths.spool={tmp_path / 'spool'}")
    finally:
        busy.close()
    checks = _checks(report)
    assert rc == 1
    assert not checks[("sip", f"listen 127.0.0.1:{port}")]["ok"]
    assert "missing" in checks[("prompts", str(tmp_path))]["detail"]  # type: ignore[operator]
    assert checks[("mailbox 100@default", "counts")]["ok"]


def test_strategies_without_extensions() -> None:
    s = strategies(frozenset({"IMAP4REV1"}), 30)
    assert s["watch"] == "polling every 30 s"
    assert s["move"].startswith("COPY")
    assert "user*master" in s["master login"]
