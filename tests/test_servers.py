"""The test servers themselves: each variant starts, logs in (also through the master user),
advertises exactly what it should, and round-trips a message."""

from __future__ import annotations

import imaplib
import re

import pytest

from tests.conftest import Account, make_account
from tests.support import cyrus as cyrus_support
from tests.support import dovecot as dovecot_support
from tests.support.dovecot import RESTRICTED_CAPABILITY, DovecotServer, unoffered_commands
from tests.support.mailclient import MailClient, simple_message

# What each variant must offer (a subset check) and must not offer.
MUST_OFFER = {
    "slash": {"UIDPLUS", "MOVE", "NOTIFY", "QUOTA", "CONDSTORE", "ESEARCH", "METADATA", "IDLE"},
    "dot": {"UIDPLUS", "MOVE", "NOTIFY", "QUOTA", "CONDSTORE", "ESEARCH", "METADATA", "IDLE"},
    "restricted": set(RESTRICTED_CAPABILITY.upper().split()),
    "cyrus": {"UIDPLUS", "MOVE", "QUOTA", "CONDSTORE", "ESEARCH", "METADATA", "IDLE"},
}
MUST_NOT_OFFER = {
    "slash": set(),
    "dot": set(),
    "restricted": {"UIDPLUS", "MOVE", "NOTIFY", "QUOTA", "CONDSTORE", "QRESYNC", "ESEARCH"},
    "cyrus": {"NOTIFY"},
}


def _capabilities(conn: imaplib.IMAP4) -> set[str]:
    typ, data = conn.capability()
    assert typ == "OK"
    return {c.upper() for c in data[0].decode().split()}


def test_login_capabilities_and_round_trip(account: Account) -> None:
    with MailClient(account.server, account.user, account.password) as client:
        caps = client.capabilities()
        assert MUST_OFFER[account.variant] <= caps
        assert not (MUST_NOT_OFFER[account.variant] & caps)
        if account.variant == "restricted":
            # nothing beyond the restricted list (AUTH= mechanisms aside, pre-login only)
            assert {c for c in caps if not c.startswith("AUTH=")} == MUST_OFFER["restricted"]
        msg = simple_message("round trip", "body text")
        uid = client.append("INBOX", msg)
        client.select("INBOX")
        uids = client.uids()
        assert len(uids) == 1
        if uid is not None:
            assert uids == [uid]
        fetched = client.fetch(uids[0])
        assert fetched.replace(b"\r\n", b"\n") == msg.replace(b"\r\n", b"\n")
        assert "\\Seen" not in client.flags(uids[0])


def test_hierarchy_separator(account: Account) -> None:
    with MailClient(account.server, account.user, account.password) as client:
        client.create(client.folder("Work", "Sub"))
        typ, data = client.conn.list()
        assert typ == "OK"
        seps = {m.group(1).decode() for line in data
                if isinstance(line, bytes) and (m := re.match(rb'\([^)]*\) "(.)"', line))}
        assert seps == {account.separator}
        assert client.folder("Work", "Sub") in client.folders()


def _master_user(account: Account) -> tuple[str, str]:
    if account.variant == "cyrus":
        return cyrus_support.MASTER_USER, cyrus_support.MASTER_PASSWORD
    return dovecot_support.MASTER_USER, dovecot_support.MASTER_PASSWORD


def test_master_user_authenticate_plain_with_authzid(account: Account) -> None:
    """AUTHENTICATE PLAIN authzid\\0authcid\\0pw works on Dovecot and Cyrus alike."""
    with MailClient(account.server, account.user, account.password) as owner:
        owner.append("INBOX", simple_message("for the master"))
    master, master_pw = _master_user(account)
    conn = imaplib.IMAP4(account.host, account.port)
    try:
        blob = f"{account.user}\0{master}\0{master_pw}".encode()
        typ, _ = conn.authenticate("PLAIN", lambda _challenge: blob)
        assert typ == "OK"
        typ, data = conn.select("INBOX")
        assert typ == "OK"
        assert int(data[0]) == 1  # the user's mailbox, not the master's
    finally:
        conn.logout()


def test_master_user_wrong_password_is_refused(account: Account) -> None:
    master, _ = _master_user(account)
    conn = imaplib.IMAP4(account.host, account.port)
    try:
        blob = f"{account.user}\0{master}\0wrong".encode()
        with pytest.raises(imaplib.IMAP4.error):
            conn.authenticate("PLAIN", lambda _challenge: blob)
    finally:
        conn.shutdown()


def test_dovecot_master_login_with_separator(dovecot_slash: DovecotServer) -> None:
    """Dovecot's `user*master` LOGIN, the fallback for clients without AUTHENTICATE PLAIN."""
    acct = make_account(dovecot_slash)
    conn = imaplib.IMAP4(acct.host, acct.port)
    try:
        typ, _ = conn.login(f"{acct.user}*{dovecot_support.MASTER_USER}",
                            dovecot_support.MASTER_PASSWORD)
        assert typ == "OK"
    finally:
        conn.logout()


@pytest.mark.parametrize("server_name", ["dovecot_slash", "cyrus"])
def test_quota_refuses_oversized_append(server_name: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(server_name)
    acct = make_account(server)
    with MailClient(acct.server, acct.user, acct.password) as client:
        client.select("INBOX")  # Cyrus creates the mailbox (and its quota) at first login
        typ, data = client.conn.getquotaroot("INBOX")
        assert typ == "OK"
        assert re.search(rb"STORAGE \d+ 300\)", b" ".join(x for d in data for x in d))
        big = simple_message("big", "x" * (400 * 1024))
        typ, data = client.conn.append("INBOX", None, None, big)
        assert typ == "NO"
        assert b"quota" in data[0].lower()


def test_restricted_server_records_commands_and_catches_unoffered_ones(
    dovecot_restricted: DovecotServer,
) -> None:
    acct = make_account(dovecot_restricted)
    mark = dovecot_restricted.command_mark()
    with MailClient(acct.server, acct.user, acct.password) as client:
        client.append("INBOX", simple_message())
        client.select("INBOX")
        client.uids()
    # a well-behaved client passes
    dovecot_restricted.assert_only_offered(since=mark)
    assert any(c.startswith("UID SEARCH") for c in dovecot_restricted.commands(since=mark))

    mark = dovecot_restricted.command_mark()
    with MailClient(acct.server, acct.user, acct.password) as client:
        client.select("INBOX")
        client.conn.uid("SEARCH", "RETURN", "(COUNT)", "ALL")  # ESEARCH, not offered
        client.conn.uid("EXPUNGE", "1")  # UIDPLUS, not offered (imaplib sends it regardless)
    with pytest.raises(AssertionError, match=r"needs (ESEARCH|UIDPLUS)"):
        dovecot_restricted.assert_only_offered(since=mark)


def test_unoffered_commands_recognises_extensions() -> None:
    caps = "IMAP4rev1 IDLE"
    assert unoffered_commands(["UID MOVE 1 Work"], caps) == ["'UID MOVE 1 Work' needs MOVE"]
    assert unoffered_commands(["SELECT INBOX (CONDSTORE)"], caps)
    assert unoffered_commands(["UID FETCH 1:* (FLAGS) (CHANGEDSINCE 4)"], caps)
    assert unoffered_commands(["STATUS INBOX (MESSAGES HIGHESTMODSEQ)"], caps)
    assert unoffered_commands(["GETQUOTAROOT INBOX"], caps)
    assert unoffered_commands(["NOTIFY SET (selected (MessageNew))"], caps)
    assert unoffered_commands(["UID SEARCH UNSEEN", "UID STORE 1 +FLAGS (\\Seen)", "IDLE"],
                              caps) == []
    assert unoffered_commands(["UID MOVE 1 Work"], "IMAP4rev1 MOVE") == []
