"""Logins and literals on the wire: XOAUTH2 with a token command, SASL without SASL-IR, and
synchronising literals for servers without LITERAL+."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from imapvm.storage.base import MailboxRef, StoreUnavailable
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import AuthenticationFailed, ImapConnection
from imapvm.storage.imap.protocol import Literal, Raw
from imapvm.storage.imap.store import ImapStore
from tests.conftest import make_account
from tests.support import dovecot as dovecot_support
from tests.support.dovecot import DovecotServer
from tests.support.oauth import Introspection
from tests.support.vmmail import voicemail


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "token.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_xoauth2_with_a_token_command(tmp_path: Path, dovecot_oauth: DovecotServer,
                                            introspection: Introspection) -> None:
    introspection.grant("tok-alice-1", "oa1")
    command = (_script(tmp_path, 'test "$1" = oa1 && echo tok-alice-1'), "{user}")
    store = ImapStore(lambda box: ImapSettings(
        host=dovecot_oauth.host, port=dovecot_oauth.port, user="oa1",
        oauth2_token_command=command, vm_tag=box.mailbox))
    try:
        await store.deposit(MailboxRef("1"), voicemail("1"))
        assert (await store.counts(MailboxRef("1"))).new == 1
    finally:
        await store.aclose()


@pytest.mark.parametrize(("body", "match"), [
    ("echo not-a-granted-token", "XOAUTH2 login as 'oa2' refused"),
    ("exit 3", "exited 3 without a token"),
])
async def test_xoauth2_failures_are_clear(tmp_path: Path, dovecot_oauth: DovecotServer,
                                          body: str, match: str) -> None:
    store = ImapStore(lambda box: ImapSettings(
        host=dovecot_oauth.host, port=dovecot_oauth.port, user="oa2",
        oauth2_token_command=(_script(tmp_path, body),), vm_tag=box.mailbox))
    try:
        with pytest.raises(StoreUnavailable, match=match):
            await store.counts(MailboxRef("1"))
    finally:
        await store.aclose()


async def test_plain_without_sasl_ir_and_synchronising_literals(
    dovecot_slash: DovecotServer,
) -> None:
    acct = make_account(dovecot_slash)
    conn = await ImapConnection.open(dovecot_slash.host, dovecot_slash.port)
    try:
        conn.capabilities = conn.capabilities - {"SASL-IR", "LITERAL+"}
        await conn.authenticate_plain(acct.user, dovecot_support.MASTER_USER,
                                      dovecot_support.MASTER_PASSWORD)
        conn.capabilities = conn.capabilities - {"LITERAL+"}
        res = await conn.execute("APPEND", "INBOX", Raw(b"()"), Literal(voicemail("1")),
                                 Raw(b"()"), Literal(voicemail("1")))  # MULTIAPPEND, 2 waits
        assert res.code == "APPENDUID"
        await conn.execute("SELECT", "INBOX")
        res = await conn.execute("UID", "SEARCH", "ALL")
        assert res.named("SEARCH")[0].values == [b"1", b"2"]
    finally:
        await conn.close()
    bad = await ImapConnection.open(dovecot_slash.host, dovecot_slash.port)
    try:
        bad.capabilities = bad.capabilities - {"SASL-IR"}
        with pytest.raises(AuthenticationFailed, match="refused"):
            await bad.authenticate_plain(acct.user, dovecot_support.MASTER_USER, "wrong")
    finally:
        await bad.close()
