"""Kerberos (SASL GSSAPI) logins against Dovecot and a throwaway KDC: no password involved."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapvm.storage.base import LoginRefused, MailboxRef, StoreUnavailable
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from tests.support.dovecot import DovecotServer
from tests.support.kdc import Kdc
from tests.support.vmmail import voicemail

BOX = MailboxRef("1")


def _store(dovecot: DovecotServer, user: str) -> ImapStore:
    return ImapStore(lambda box: ImapSettings(
        host="localhost", port=dovecot.port, user=user, gssapi=True, vm_tag=box.mailbox))


async def test_gssapi_login_with_a_credential_cache(
    tmp_path: Path, kdc: Kdc, dovecot_gssapi: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    kdc.add_user("krbalice", "alice-secret")
    kdc.kinit("krbalice", "alice-secret", tmp_path / "cc")
    monkeypatch.setenv("KRB5_CONFIG", str(kdc.krb5_config))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'cc'}")
    store = _store(dovecot_gssapi, "krbalice")
    try:
        await store.deposit(BOX, voicemail("1"))
        assert (await store.counts(BOX)).new == 1
    finally:
        await store.aclose()


async def test_gssapi_without_tickets_is_a_clear_refusal(
    tmp_path: Path, kdc: Kdc, dovecot_gssapi: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRB5_CONFIG", str(kdc.krb5_config))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'none'}")
    store = _store(dovecot_gssapi, "nobody-here")
    try:
        with pytest.raises(StoreUnavailable, match="Kerberos") as info:
            await store.counts(BOX)
        assert isinstance(info.value, LoginRefused)
    finally:
        await store.aclose()
