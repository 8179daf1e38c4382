"""Message numbers come from the mailbox at delivery time, on Dovecot: two nodes depositing at
once never share a number, and a deposit queued while IMAP was down is not numbered 1."""

from __future__ import annotations

import asyncio
import email
from pathlib import Path

from imapvm.audio import Audio
from imapvm.message import Deposit, EmailSettings, build_voicemail
from imapvm.storage.base import Folder, MailboxRef
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.numbering import Numbering
from imapvm.storage.outbox import Outbox
from tests.conftest import make_account
from tests.ivr.scripted import tone
from tests.storage.imap.test_store import settings_for
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient

BOX = MailboxRef("1234", "default")
SETTINGS = EmailSettings(context="default", mailbox="1234", fullname="Alice",
                         emails=("alice@example.org",), hostname="node.example.org")


def _email(number: int, caller: str) -> bytes:
    dep = Deposit(number=number, caller_id_num=caller, orig_time=1_764_000_000)
    return build_voicemail(dep, SETTINGS, Audio(tone(1.0))).raw


async def _numbers(server: DovecotServer, user: str, password: str) -> list[tuple[int, str]]:
    """(X-Asterisk-VM-Message-Num, Subject) of INBOX's messages in UID order."""
    mail = await AsyncMailClient.connect(server, user, password)
    try:
        await mail.select("INBOX")
        out = []
        for uid in await mail.uids("UNDELETED"):
            msg = email.message_from_bytes(await mail.fetch(uid))
            out.append((int(msg["X-Asterisk-VM-Message-Num"]), str(msg["Subject"])))
        return out
    finally:
        await mail.close()


async def test_two_nodes_depositing_at_once_never_share_a_number(
        dovecot_slash: DovecotServer) -> None:
    acct = make_account(dovecot_slash)
    nodes = [ImapStore(settings_for(acct)) for _ in range(2)]  # separate connections
    numbering = [Numbering(store, lambda _box: SETTINGS) for store in nodes]
    try:
        # each node built its messages when everybody saw an empty box: all say "1"
        await asyncio.gather(*(numbering[i % 2].deposit(BOX, _email(1, f"55500{i}"))
                               for i in range(8)))
        got = await _numbers(dovecot_slash, acct.user, acct.password)
        numbers = [n for n, _ in got]
        assert len(numbers) == 8
        assert len(set(numbers)) == 8, numbers  # never two "New message 14"
        assert min(numbers) == 1
        assert [s for _, s in got] == [f"[PBX]: New message {n} in mailbox 1234"
                                       for n in numbers]
        assert (await nodes[0].counts(BOX)).new == 8
        assert len(await nodes[0].list(BOX, Folder.INBOX)) == 8
    finally:
        for store in nodes:
            await store.aclose()


async def test_a_deposit_queued_while_imap_is_down_is_numbered_on_arrival(
        private_dovecot: DovecotServer, tmp_path: Path) -> None:
    acct = make_account(private_dovecot)
    store = ImapStore(settings_for(acct))
    outbox = Outbox(tmp_path / "outbox", Numbering(store, lambda _box: SETTINGS),
                    max_backoff=0.5)
    worker = asyncio.create_task(outbox.run())
    try:
        for i in range(2):
            await outbox.submit(BOX, _email(i + 1, "5550001"))
        assert await outbox.flush(20)
        private_dovecot.pause()
        # the caller hung up while IMAP was unreachable: the flow could not count (0)
        await outbox.submit(BOX, _email(0, "5550002"))
        private_dovecot.resume()
        assert await outbox.flush(30)
        got = await _numbers(private_dovecot, acct.user, acct.password)
        assert [n for n, _ in got] == [1, 2, 3]
        assert got[-1][1] == "[PBX]: New message 3 in mailbox 1234"
    finally:
        outbox.stop()
        await worker
        await store.aclose()


async def test_a_deposit_that_lost_the_race_is_renumbered(dovecot_slash: DovecotServer) -> None:
    """Node A counts, node B deposits, then A appends: A's message (the newer one) is replaced
    by one with the next number (same Message-ID); the box holds exactly two, 1 and 2."""
    acct = make_account(dovecot_slash)
    a_store, b_store = ImapStore(settings_for(acct)), ImapStore(settings_for(acct))
    b = Numbering(b_store, lambda _box: SETTINGS)

    class RacedStore:
        def __init__(self, inner: ImapStore) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def counts(self, box: MailboxRef):  # type: ignore[no-untyped-def]
            counted = await self.inner.counts(box)
            await b.deposit(box, _email(1, "5550002"))  # B slips in after A counted
            return counted

    a = Numbering(RacedStore(a_store), lambda _box: SETTINGS)  # type: ignore[arg-type]
    mine = _email(1, "5550001")
    try:
        await a.deposit(BOX, mine)
        assert a.corrections == 1
        got = await _numbers(dovecot_slash, acct.user, acct.password)
        assert sorted(n for n, _ in got) == [1, 2]
        mid = email.message_from_bytes(mine)["Message-ID"]
        assert await a_store.contains_message_id(BOX, mid) is not None
    finally:
        await a_store.aclose()
        await b_store.aclose()
