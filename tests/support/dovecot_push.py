"""Dovecot with imapvm's push script (contrib/dovecot/): the very snippet and Lua script the
README tells operators to install, with the test's URL, token and bounds filled in."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "dovecot"


def push_config(url: str, token: str, *, timeout_msecs: int = 300, pause_secs: int = 30) -> str:
    """`extra_config` for `DovecotServer`: contrib/dovecot/imapvm-push.conf with the Lua script
    copied where Dovecot's mail processes (running as other uids) can read it."""
    where = Path(tempfile.mkdtemp(prefix="dvpush", dir="/tmp"))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    where.chmod(0o755)
    script = where / "imapvm-push.lua"
    shutil.copyfile(CONTRIB / "imapvm-push.lua", script)
    script.chmod(0o644)
    conf = (CONTRIB / "imapvm-push.conf").read_text()
    replaced = {
        "lua:file=/etc/dovecot/imapvm-push.lua": f"lua:file={script}",
        "imapvm_push_url = http://127.0.0.1:9180/mwi/push": f"imapvm_push_url = {url}",
        "imapvm_push_token = CHANGE-ME": f"imapvm_push_token = {token}",
        "imapvm_push_timeout_msecs = 300": f"imapvm_push_timeout_msecs = {timeout_msecs}",
        "imapvm_push_pause_secs = 30": f"imapvm_push_pause_secs = {pause_secs}",
    }
    for old, new in replaced.items():
        assert old in conf, f"contrib/dovecot/imapvm-push.conf no longer says {old!r}"
        conf = conf.replace(old, new)
    return conf
