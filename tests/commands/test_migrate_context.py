"""`imapvm migrate --from spool --to imap` with a spool as Asterisk's file storage really writes
it (issue 17 item 3): the .txt's `context=` is the caller's *dialplan* context (from-internal),
the voicemail context is the spool directory's. Migrated messages must be visible and a second
run must copy nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands.test_migrate import asterisk_spool, imapvm
from tests.conftest import make_account
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient


def test_spool_dialplan_context_is_not_the_voicemail_context(
        tmp_path: Path, dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    asterisk_spool(tmp_path / "spool")
    for txt in (tmp_path / "spool").rglob("msg*.txt"):
        txt.write_text(txt.read_text().replace("context=default", "context=from-internal"))
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"""[general]
format=wav
imapserver=127.0.0.1
imapport={dovecot_slash.port}
imapflags=notls

[default]
1234 => 1,Alice,,,imapuser={acct.user}|imappassword={acct.password}
""")
    cfg = ("--config", conf)
    run = ("migrate", "--from", f"spool:{tmp_path / 'spool'}", "--to", "imap", "--json", *cfg)
    first = imapvm(*run)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["total"] == {"copied": 5, "skipped": 0, "failed": []}
    mwi = json.loads(imapvm("mwi", "1234", "--json", *cfg).stdout)
    assert (mwi["new"], mwi["old"], mwi["urgent"]) == (2, 1, 1)
    with MailClient(dovecot_slash, acct.user, acct.password) as c:
        c.select("INBOX")
        assert all(b"X-Asterisk-VM-Context: default\r\n" in c.fetch(u) for u in c.uids())
    again = imapvm(*run)
    assert json.loads(again.stdout)["total"] == {"copied": 0, "skipped": 5, "failed": []}
    with MailClient(dovecot_slash, acct.user, acct.password) as c:
        c.select("INBOX")
        assert len(c.uids()) == 4  # no duplicates
