"""The lamp follows the mailbox whoever changes it: another mail client against real servers.

Dovecot offers NOTIFY; the restricted Dovecot only IDLE (and is also watched by polling);
Cyrus offers IDLE (it polls its own mailboxes every second). Every step must give exactly one
update with the right counts: `Recorder.expect` takes the *next* update, so an intermediate
state (a blink, a transient zero) fails the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from imapvm.mwi.engine import MwiEngine
from imapvm.storage.base import Counts, MailboxRef
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.imap.watch import ImapWatcher
from imapvm.storage.watching import WatchMode, WatchOptions
from tests.conftest import Account, make_account
from tests.mwi.helpers import Recorder, make_store
from tests.support.cyrus import CyrusServer
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient, simple_message
from tests.support.vmmail import voicemail

BOX = MailboxRef("100", "default")
NAME = "100@default"
FAST = WatchOptions(pollfreq=1.0, backoff_initial=0.2, backoff_max=1.0)


@dataclass
class Rig:
    account: Account
    store: ImapStore
    engine: MwiEngine
    sink: Recorder
    client: AsyncMailClient

    def watcher(self, box: MailboxRef = BOX) -> ImapWatcher:
        w = self.engine.watcher(box)
        assert isinstance(w, ImapWatcher)
        return w


async def rig_for(server: DovecotServer | CyrusServer, options: WatchOptions = FAST,
                  ) -> AsyncIterator[Rig]:
    account = make_account(server, "mwi")
    client = await AsyncMailClient.connect(server, account.user, account.password)
    store = make_store(account)
    sink = Recorder()
    engine = MwiEngine(lambda _box: store, [sink], options)
    await engine.start()
    try:
        yield Rig(account, store, engine, sink, client)
    finally:
        await engine.stop()
        await store.aclose()
        await client.close()


CASES = {
    "dovecot-notify": ("dovecot_slash", FAST, WatchMode.NOTIFY),
    "restricted-idle": ("dovecot_restricted", FAST, WatchMode.IDLE),
    "restricted-poll": ("dovecot_restricted", WatchOptions(
        pollfreq=1.0, backoff_initial=0.2, modes=(WatchMode.POLL,)), WatchMode.POLL),
    "cyrus-idle": ("cyrus", FAST, WatchMode.IDLE),
}


@pytest.fixture(params=list(CASES))
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    fixture, options, _ = CASES[request.param]
    server = request.getfixturevalue(fixture)
    mark = server.command_mark() if fixture == "dovecot_restricted" else None
    async for r in rig_for(server, options):
        r.expected_mode = CASES[request.param][2]  # type: ignore[attr-defined]
        yield r
    if mark is not None:
        server.assert_only_offered(since=mark)


@pytest.mark.slow
async def test_the_lamp_follows_another_mail_client(rig: Rig) -> None:
    c, sink = rig.client, rig.sink
    await c.create("Work")
    await c.append("INBOX", voicemail("100"))
    await c.append("INBOX", voicemail("100"))
    await c.append("INBOX", voicemail("1000"))  # another box's: a substring match, not ours
    await c.append("INBOX", simple_message())
    await rig.engine.watch(BOX)
    await sink.expect(NAME, new=2, old=0)
    assert rig.watcher().mode == rig.expected_mode  # type: ignore[attr-defined]
    await c.select("INBOX")
    first, second = (await c.uids("HEADER X-Asterisk-VM-Extension 100"))[:2]

    await c.read(first)  # a mail program opens it: \Seen
    await sink.expect(NAME, new=1, old=1)
    await c.store([second], "+FLAGS", "\\Flagged")  # urgent
    u = await sink.expect(NAME, new=0, old=1, urgent=1)
    assert u.mwi_new == 1
    await c.append("INBOX", voicemail("100"))
    await sink.expect(NAME, new=1, old=1, urgent=1)
    await c.move([first], "Work")  # COPY + \Deleted + EXPUNGE
    await sink.expect(NAME, new=1, old=0, urgent=1)
    await c.delete([second], expunge=False)  # \Deleted alone already removes it from counts
    await sink.expect(NAME, new=1, old=0, urgent=0)
    await c.expunge()
    await c.append("INBOX", simple_message())  # ordinary mail never moves the lamp
    await sink.quiet(1.3)
    third = (await c.uids("HEADER X-Asterisk-VM-Extension 100"))[-1]
    await c.delete([third])
    await sink.expect(NAME, new=0, old=0)
    await sink.quiet(1.3)


@pytest.mark.slow
async def test_a_deposit_gives_exactly_one_update(dovecot_slash: DovecotServer) -> None:
    async for rig in rig_for(dovecot_slash):
        await rig.client.append("INBOX", voicemail("100"))
        await rig.engine.watch(BOX)
        await rig.sink.expect(NAME, new=1, old=0)
        async with rig.engine.changing(BOX, Counts(new=1)):  # what the deposit flow does
            await rig.store.deposit(BOX, voicemail("100"))
        # at once, not after the push: published before this task even yields again
        assert (rig.engine.current(BOX).new, rig.engine.current(BOX).old) == (2, 0)  # type: ignore[union-attr]
        await rig.sink.expect(NAME, new=2, old=0)
        await rig.sink.quiet(1.3)  # the server's push is confirmed without a second update
        assert rig.watcher().recounts >= 2  # the push did cause a recount
        async with rig.engine.changing(BOX, Counts(urgent=1)):
            await rig.store.deposit(BOX, voicemail("100"), urgent=True)
        assert rig.engine.current(BOX).urgent == 1  # type: ignore[union-attr]
        u = await rig.sink.expect(NAME, new=2, old=0, urgent=1)
        assert u.mwi_new == 3
        await rig.sink.quiet(1.3)
        assert rig.engine.current(BOX) == u


@pytest.mark.slow
async def test_lists_and_aliases_share_one_connection(dovecot_dot: DovecotServer) -> None:
    other = MailboxRef("101", "default")
    async for rig in rig_for(dovecot_dot):
        rig.engine.alias(MailboxRef("5101", "aliases"), other)  # watches nothing by itself
        assert rig.engine.watcher(other) is None
        await rig.client.append("INBOX", voicemail("100"))
        name = await rig.engine.watch("100@default,101@default")
        assert name == "100@default,101@default"
        got = {(u.name, u.mailbox, u.context, u.new) for u in
               [await rig.sink.next(), await rig.sink.next()]}
        assert got == {(name, name, "", 1), ("5101@aliases", "5101", "aliases", 0)}
        await rig.client.append("INBOX", voicemail("101"))
        got2 = {(u.name, u.new) for u in [await rig.sink.next(), await rig.sink.next()]}
        assert got2 == {(name, 2), ("5101@aliases", 1)}
        assert rig.engine.watcher(BOX) is rig.engine.watcher(other)
        assert rig.watcher().connects == 1  # two boxes of one login: one connection
        # a phone subscribed to the alias itself keeps the target watched
        assert await rig.engine.watch("5101@aliases") == "5101@aliases"
        await rig.engine.unwatch(name)
        assert rig.engine.watcher(BOX) is None
        assert rig.engine.watcher(other) is not None
        await rig.engine.unwatch("5101@aliases")
        assert rig.engine.watcher(other) is None
        await rig.sink.quiet(0.1)


@pytest.mark.slow
async def test_idle_is_renewed_without_any_update_or_reconnect(
        dovecot_restricted: DovecotServer) -> None:
    options = WatchOptions(idle_renew=0.25, backoff_initial=0.2)
    async for rig in rig_for(dovecot_restricted, options):
        await rig.engine.watch(BOX)
        await rig.sink.expect(NAME, new=0, old=0)
        await rig.sink.quiet(1.1)  # renewals publish nothing
        assert rig.watcher().mode is WatchMode.IDLE
        assert rig.watcher().idles >= 4
        await rig.client.append("INBOX", voicemail("100"))
        await rig.sink.expect(NAME, new=1, old=0)
        assert rig.watcher().connects == 1


@pytest.mark.slow
async def test_past_the_connection_limit_boxes_are_polled_until_a_slot_frees(
        dovecot_slash: DovecotServer) -> None:
    first, second = make_account(dovecot_slash, "mwi"), make_account(dovecot_slash, "mwi")
    stores = {MailboxRef("100", "default"): make_store(first),
              MailboxRef("200", "default"): make_store(second)}
    a, b = list(stores)
    sink = Recorder()
    options = WatchOptions(pollfreq=0.5, backoff_initial=0.2, max_connections_per_server=1)
    engine = MwiEngine(stores.__getitem__, [sink], options)
    await engine.start()
    client = await AsyncMailClient.connect(dovecot_slash, second.user, second.password)
    try:
        await engine.watch(a)
        await sink.expect("100@default", new=0, old=0)
        await engine.watch(b)  # no slot left: polled on short connections
        await sink.expect("200@default", new=0, old=0)
        watcher_b = engine.watcher(b)
        assert isinstance(watcher_b, ImapWatcher)
        assert watcher_b.mode is WatchMode.WAITING
        await client.append("INBOX", voicemail("200"))
        await sink.expect("200@default", new=1, old=0, within=3)
        await engine.unwatch(a)  # its slot goes to the waiting watcher
        await asyncio.wait_for(watcher_b.connected.wait(), 5)
        assert watcher_b.mode is WatchMode.NOTIFY
        await sink.quiet(0.3)
    finally:
        await engine.stop()
        await client.close()
        for store in stores.values():
            await store.aclose()


@pytest.mark.slow
async def test_server_down_keeps_counts_stale_and_restart_recounts(
        private_dovecot: DovecotServer) -> None:
    async for rig in rig_for(private_dovecot):
        await rig.client.append("INBOX", voicemail("100"))
        await rig.client.append("INBOX", voicemail("100"), "\\Seen")
        await rig.engine.watch(BOX)
        await rig.sink.expect(NAME, new=1, old=1)
        await rig.watcher().connected.wait()
        await asyncio.to_thread(private_dovecot.pause)
        # the lamp keeps its state, marked stale; never zero
        u = await rig.sink.expect(NAME, new=1, old=1, stale=True)
        assert not u.counts_changed
        # a deposit accepted while IMAP is down (the outbox holds it) still lights the lamp
        change = rig.engine.pending(BOX, Counts(new=1))
        assert rig.engine.current(BOX).new == 2  # type: ignore[union-attr]  # at once
        await rig.sink.expect(NAME, new=2, old=1, stale=True)
        await rig.sink.quiet(1.0)  # retries while down publish nothing more
        await asyncio.to_thread(private_dovecot.resume)
        # the reconnect recounts (1 new on the server) and the lamp is fresh again, still
        # showing the deposit the outbox holds: no off/on
        await rig.sink.expect(NAME, new=2, old=1, stale=False)
        assert rig.watcher().connects == 2
        async with change.delivering():  # the outbox delivers it
            await rig.store.deposit(BOX, voicemail("100"))
        await rig.sink.quiet(1.3)  # delivery and the server's push change nothing shown
        assert rig.engine.current(BOX).new == 2  # type: ignore[union-attr]
