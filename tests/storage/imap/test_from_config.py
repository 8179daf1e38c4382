"""voicemail.conf, as an Asterisk user writes it, drives the IMAP store against Dovecot."""

from __future__ import annotations

from pathlib import Path

from imapvm.config import load
from imapvm.config.imapflags import TlsMode
from imapvm.storage.base import MailboxRef
from imapvm.storage.imap.settings import imap_settings
from imapvm.storage.imap.store import ImapStore
from tests.conftest import make_account
from tests.support import dovecot as dovecot_support
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient
from tests.support.vmmail import voicemail


async def test_voicemail_conf_to_a_working_store(tmp_path: Path,
                                                 dovecot_slash: DovecotServer) -> None:
    alice = make_account(dovecot_slash)
    bob = make_account(dovecot_slash)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"""[general]
format=wav49|gsm|wav
imapserver=127.0.0.1
imapport={dovecot_slash.port}
imapflags=notls
authuser={dovecot_support.MASTER_USER}
authpassword={dovecot_support.MASTER_PASSWORD}
expungeonhangup=yes
maxmsg=50

[default]
100 => 1234,Alice,alice@example.org,,imapuser={alice.user}
101 => 4321,Bob,bob@example.org,,imapuser={bob.user}|imapvmshareid=bob-share
""")
    loaded = load(conf, None)
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    s100 = imap_settings(loaded.voicemail.effective("100@default"))
    assert (s100.user, s100.authuser, s100.tls) == (alice.user, "vmadmin", TlsMode.NONE)
    assert s100.password is None
    assert s100.authpassword == dovecot_support.MASTER_PASSWORD
    assert s100.maxmsg == 50
    store = ImapStore(lambda box: imap_settings(loaded.voicemail.effective(str(box))))
    try:
        await store.deposit(MailboxRef("100"), voicemail("100"))
        await store.deposit(MailboxRef("101"), voicemail("bob-share"))
        assert (await store.counts(MailboxRef("100"))).new == 1
        assert (await store.counts(MailboxRef("101"))).new == 1
    finally:
        await store.aclose()
    with MailClient(dovecot_slash, alice.user, alice.password) as c:
        c.select("INBOX")
        assert len(c.uids()) == 1
    with MailClient(dovecot_slash, bob.user, bob.password) as c:
        c.select("INBOX")
        [uid] = c.uids()
        assert b"X-Asterisk-VM-Extension: bob-share" in c.fetch(uid)
