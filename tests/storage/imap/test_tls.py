"""TLS policies from imapflags against a Dovecot with a self-signed certificate."""

from __future__ import annotations

import pytest

from imapvm.config.imapflags import TlsMode
from imapvm.storage.base import MailboxRef, StoreUnavailable
from imapvm.storage.imap.account import Account as ImapAccount
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from tests.conftest import make_account
from tests.support.dovecot import DovecotServer
from tests.support.vmmail import voicemail

BOX = MailboxRef("1234")


def _settings(server: DovecotServer, user: str, **kw: object) -> ImapSettings:
    base: dict[str, object] = dict(host=server.host, port=server.port, user=user,
                                   password=f"{user}-pw", vm_tag="1234")
    base.update(kw)
    return ImapSettings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "implicit"), [(TlsMode.IMPLICIT, True),
                                                (TlsMode.STARTTLS_REQUIRED, False),
                                                (TlsMode.STARTTLS_IF_OFFERED, False)])
async def test_encrypted_connections_work(dovecot_tls: DovecotServer, mode: TlsMode,
                                          implicit: bool) -> None:
    user = make_account(dovecot_tls).user
    port = dovecot_tls.tls_port if implicit else dovecot_tls.port
    settings = _settings(dovecot_tls, user, port=port, tls=mode, verify_certificate=False,
                         secure_auth=True)
    conn = await ImapAccount(settings).open_connection()
    try:
        assert conn.encrypted
        assert "STARTTLS" not in conn.capabilities  # post-TLS capabilities were re-read
    finally:
        await conn.close()
    store = ImapStore(lambda _box: settings)
    try:
        await store.deposit(BOX, voicemail("1234"))
        assert (await store.counts(BOX)).new == 1
    finally:
        await store.aclose()


async def test_certificate_is_verified_unless_novalidate_cert(dovecot_tls: DovecotServer) -> None:
    user = make_account(dovecot_tls).user
    for mode, port in ((TlsMode.IMPLICIT, dovecot_tls.tls_port),
                       (TlsMode.STARTTLS_REQUIRED, dovecot_tls.port)):
        acct = ImapAccount(_settings(dovecot_tls, user, port=port, tls=mode))
        with pytest.raises(StoreUnavailable, match=r"(?i)certificate"):
            await acct.open_connection()


async def test_tls_required_but_not_offered(dovecot_slash: DovecotServer) -> None:
    user = make_account(dovecot_slash).user
    acct = ImapAccount(_settings(dovecot_slash, user, tls=TlsMode.STARTTLS_REQUIRED))
    with pytest.raises(StoreUnavailable, match="does not offer STARTTLS"):
        await acct.open_connection()


async def test_secure_refuses_to_send_a_password_in_clear(dovecot_slash: DovecotServer) -> None:
    user = make_account(dovecot_slash).user
    acct = ImapAccount(_settings(dovecot_slash, user, tls=TlsMode.NONE, secure_auth=True))
    with pytest.raises(StoreUnavailable, match="unencrypted"):
        await acct.open_connection()
