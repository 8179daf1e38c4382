"""`imapvm rm/mv/export` with ids that are not (or no longer) a voicemail of the mailbox (issue 17,
items 1 and 17): refused with a one-line error and exit 1, nothing touched, on Dovecot and spool."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from imapvm.storage.base import MailboxRef
from imapvm.storage.spool import SpoolStore
from tests.conftest import make_account
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient, simple_message
from tests.support.vmmail import voicemail


def imapvm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imapvm", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _line(stderr: str) -> str:
    return " ".join(stderr.split())  # however the terminal wrapped it


def test_rm_mv_export_refuse_foreign_and_gone_ids_on_imap(tmp_path: Path,
                                                          dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"""[general]
imapserver=127.0.0.1
imapport={dovecot_slash.port}
imapflags=notls

[default]
1234 => 4242,Alice,,,imapuser={acct.user}|imappassword={acct.password}
123 => 4243,Bob,,,imapuser={acct.user}|imappassword={acct.password}
""")
    cfg = ("--config", conf)
    with MailClient(dovecot_slash, acct.user, acct.password) as c:
        plain = c.append("INBOX", simple_message("my own mail"))
        trash = c.append("INBOX", simple_message("trash"), flags="\\Deleted")
        sibling = c.append("INBOX", voicemail("123"))
        mine = c.append("INBOX", voicemail("1234"))
        c.select("INBOX")
        _, data = c.conn.status("INBOX", "(UIDVALIDITY)")
        validity = int(data[0].split(b"UIDVALIDITY ")[1].rstrip(b")"))
        before = {u: (c.fetch(u), c.flags(u) - {"\\Recent"}) for u in c.uids()}
    for uid, command in ((plain, "rm"), (trash, "rm"), (sibling, "rm"), (sibling, "mv"),
                         (plain, "export")):
        ref = f"INBOX:{validity}:{uid}"
        args = {"rm": ("rm", "1234", ref), "mv": ("mv", "1234", ref, "Old"),
                "export": ("export", "1234", ref, "--out", tmp_path / "x.eml")}[command]
        res = imapvm(*args, *cfg)
        assert res.returncode == 1, (args, res.stdout)
        assert f"{ref}: not a voicemail of 1234@default" in _line(res.stderr)
    assert not (tmp_path / "x.eml").exists()
    with MailClient(dovecot_slash, acct.user, acct.password) as c:
        c.select("INBOX")
        assert {u: (c.fetch(u), c.flags(u) - {"\\Recent"}) for u in c.uids()} == before
    [listed] = json.loads(imapvm("ls", "1234", "--json", *cfg).stdout)["messages"]
    assert listed["id"] == f"INBOX:{validity}:{mine}"
    assert imapvm("rm", "1234", listed["id"], *cfg).returncode == 0
    again = imapvm("rm", "1234", listed["id"], *cfg)  # item 17: an expunged id is not found
    assert again.returncode == 1
    assert "no such message" in again.stderr
    assert "deleted" not in again.stdout


def test_rm_of_a_gone_id_on_the_spool(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\nformat=wav\n\n[default]\n100 => 1,Carol\n10 => 2,Dave\n")
    cfg = ("--config", conf, "--set", f"paths.spool={tmp_path / 'spool'}")
    spool = SpoolStore(tmp_path / "spool")
    ref = asyncio.run(spool.deposit(MailboxRef("100"), voicemail("100")))
    other = asyncio.run(spool.deposit(MailboxRef("10"), voicemail("10")))
    refused = imapvm("rm", "100", str(other), *cfg)
    assert refused.returncode == 1
    assert "not a voicemail of 100@default" in _line(refused.stderr)
    assert imapvm("rm", "100", str(ref), *cfg).returncode == 0
    gone = imapvm("rm", "100", str(ref), *cfg)
    assert gone.returncode == 1
    assert "no such message" in gone.stderr
    assert json.loads(imapvm("mwi", "10", "--json", *cfg).stdout)["new"] == 1
