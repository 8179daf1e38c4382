"""Counting on an MWI watcher's connection, where NOTIFY reports other sessions' changes in the
middle of our own commands.

A voicemail another node APPENDs just before the watcher fetches the identifying headers of
a new message is reported by Dovecot inside that FETCH's answer, as `* 3 FETCH (UID 3 FLAGS
())`. Taken as an answer, it filed that message as "not a voicemail" in the folder index, whose
UIDs are never searched again: the node never counted it, and the lamp it published stayed one
message behind for good (bench/failover.py --drains --mail-changes: 2 runs in 13 after the
takeover fix). Driven in that order against Dovecot: the APPEND is made when the scan sends
its FETCH."""

from __future__ import annotations

from typing import Any

from imapvm.storage.base import MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import Result
from imapvm.storage.imap.notify import notify_set
from imapvm.storage.imap.store import ImapStore
from tests.conftest import make_account
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient
from tests.support.vmmail import voicemail

BOX = MailboxRef("1234", "default")


async def test_a_message_reported_during_the_header_fetch_is_still_counted(
        dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    store = ImapStore(lambda box: ImapSettings(
        host=acct.host, port=acct.port, user=acct.user, password=acct.password,
        vm_tag=box.mailbox, context=box.context))
    mail = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    account, _ = store.account(BOX)
    conn = await account.open_connection()
    try:
        await mail.append("INBOX", voicemail("1234", caller="5550001"))
        # the watcher's connection: main folder selected, NOTIFY on (as storage/imap/watch.py)
        await store.select_main_folder(BOX, conn)
        await conn.execute("NOTIFY", *notify_set(()))
        real_execute = conn.execute
        appended: list[bool] = []

        async def execute(*args: Any, **kw: Any) -> Result:
            if args[:2] == ("UID", "FETCH") and not appended:
                appended.append(True)  # another node's deposit lands now
                await mail.append("INBOX", voicemail("1234", caller="5550002"))
            return await real_execute(*args, **kw)

        conn.execute = execute  # type: ignore[method-assign]
        first = await store.counts(BOX, conn=conn)
        assert appended  # the scan fetched the first message's headers, as intended
        assert first.new in (1, 2)
        again = await store.counts(BOX, conn=conn)
        assert again.new == 2
        # and on the store's own connections too (same folder index)
        assert (await store.counts(BOX)).new == 2
    finally:
        await conn.close()
        await mail.close()
        await store.aclose()
