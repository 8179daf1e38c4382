"""Push mode ([mwi] watch = "push") against a real Dovecot running contrib/dovecot's Lua script:
another mail client's changes reach the lamp with no IMAP connection per mailbox; a wrong token
is refused; a lost push is corrected by the safety recount; imapvm being down does not break
Dovecot. Every step must give exactly one update (`Recorder.expect` takes the next one)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest

from imapvm.httpd import HealthServer, PushEndpoint
from imapvm.mwi.engine import MwiEngine
from imapvm.storage.base import MailboxRef
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.push import PushHub, PushOptions, PushWatcher, parse_push
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.watching import WatchMode, WatchOptions
from tests.conftest import Account, make_account
from tests.mwi.helpers import Recorder, make_store, settings_for
from tests.support.dovecot import DovecotServer
from tests.support.dovecot_push import push_config
from tests.support.mailclient import AsyncMailClient, simple_message
from tests.support.net import free_port
from tests.support.vmmail import voicemail
from tests.support.waiting import until

TOKEN = "test-push-token-0123456789"
BOX = MailboxRef("100", "default")
NAME = "100@default"
FAST = WatchOptions(pollfreq=1.0, backoff_initial=0.2, backoff_max=1.0)


@dataclass
class PushDovecot:
    server: DovecotServer
    http_port: int  # where Dovecot posts; imapvm listens there only while a test runs it


@pytest.fixture(scope="module")
def push_dovecot() -> Iterator[PushDovecot]:
    port, down = free_port("127.0.0.1"), free_port("127.0.0.1")
    # two imapvm nodes, one of them never running: pushes still reach the other
    urls = f"http://127.0.0.1:{down}/mwi/push http://127.0.0.1:{port}/mwi/push"
    extra = push_config(urls, TOKEN, pause_secs=1)
    server = DovecotServer("slash", extra_config=extra).start()
    try:
        yield PushDovecot(server, port)
    finally:
        server.stop()


@dataclass
class Rig:
    account: Account
    store: ImapStore
    hub: PushHub
    engine: MwiEngine
    sink: Recorder
    client: AsyncMailClient
    http: HealthServer
    pushes: list[bytes]

    def watcher(self, box: MailboxRef = BOX) -> PushWatcher:
        w = self.engine.watcher(box)
        assert isinstance(w, PushWatcher)
        return w


@contextlib.asynccontextmanager
async def push_rig(pd: PushDovecot, options: PushOptions | None = None,
                   accept: Callable[[bytes], bool] = lambda _b: True, *,
                   account: Account | None = None, client: AsyncMailClient | None = None,
                   ) -> AsyncIterator[Rig]:
    own_client = client is None
    account = account or make_account(pd.server, "push")
    if client is None:
        client = await AsyncMailClient.connect(pd.server, account.user, account.password)
    hub = PushHub(options or PushOptions())
    store = make_store(account)
    store.push = hub
    pushes: list[bytes] = []

    def handle(body: bytes) -> None:
        pushes.append(body)
        if accept(body):
            hub.receive(body)

    http = HealthServer(lambda: "", lambda: {"ok": True}, PushEndpoint(TOKEN, handle))
    await http.start("127.0.0.1", pd.http_port)
    sink = Recorder()
    engine = MwiEngine(lambda _box: store, [sink], FAST)
    await engine.start()
    try:
        yield Rig(account, store, hub, engine, sink, client, http, pushes)
    finally:
        await engine.stop()
        await store.aclose()
        await http.close()
        if own_client:
            await client.close()


async def post(port: int, body: bytes, token: str | None = TOKEN,
               path: str = "/mwi/push") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(body)}\r\n"
                 "Content-Type: application/json\r\n\r\n".encode() + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


def push_body(user: str, *boxes: str) -> bytes:
    return json.dumps({"user": user, "mailboxes": list(boxes)}).encode()


@pytest.mark.slow
async def test_the_lamp_follows_another_mail_client_without_a_connection_per_box(
        push_dovecot: PushDovecot) -> None:
    async with push_rig(push_dovecot) as rig:
        c, sink = rig.client, rig.sink
        await c.create("Work")
        await c.append("INBOX", voicemail("100"))
        await c.append("INBOX", voicemail("100"))
        await c.append("INBOX", voicemail("1000"))  # another box's: a substring match
        await c.append("INBOX", simple_message())
        await rig.engine.watch(BOX)
        await sink.expect(NAME, new=2, old=0)  # counted when watching starts
        assert rig.watcher().mode is WatchMode.PUSH
        await c.select("INBOX")
        first, second = (await c.uids("HEADER X-Asterisk-VM-Extension 100"))[:2]
        before = len(rig.pushes)
        logins = rig.watcher().logins

        await c.read(first)  # a mail program opens it: \Seen
        await sink.expect(NAME, new=1, old=1)
        assert len(rig.pushes) > before  # it came by push (the sweep is minutes away)
        await c.store([second], "+FLAGS", "\\Flagged")  # urgent
        await sink.expect(NAME, new=0, old=1, urgent=1)
        await c.append("INBOX", voicemail("100"))
        await sink.expect(NAME, new=1, old=1, urgent=1)
        await c.move([first], "Work")  # COPY + \Deleted + EXPUNGE
        await sink.expect(NAME, new=1, old=0, urgent=1)
        await c.delete([second], expunge=False)  # \Deleted alone removes it from the counts
        await sink.expect(NAME, new=1, old=0, urgent=0)
        await c.expunge()
        await c.append("INBOX", simple_message())  # ordinary mail never moves the lamp
        third = (await c.uids("HEADER X-Asterisk-VM-Extension 100"))[-1]
        await c.delete([third])
        await sink.expect(NAME, new=0, old=0)
        await sink.quiet(0.5)
        body = json.loads(rig.pushes[-1])
        assert body == {"user": rig.account.user, "mailboxes": ["INBOX"]}
        # one sentinel connection per server; the counting connection of this login was kept
        # between its changes (at most one more login, had it been logged out meanwhile)
        assert rig.watcher().connected.is_set()
        assert rig.watcher().logins - logins <= 1


@pytest.mark.slow
async def test_boxes_of_many_logins_share_one_watcher(push_dovecot: PushDovecot) -> None:
    others = [make_account(push_dovecot.server, "push") for _ in range(3)]
    accounts = {MailboxRef(str(200 + i), "default"): a for i, a in enumerate(others)}
    boxes = list(accounts)

    def resolve(box: MailboxRef) -> ImapSettings:
        return settings_for(accounts[box], box)

    hub = PushHub()
    store = ImapStore(resolve, push=hub)  # one store for all, as the server has
    sink = Recorder()
    engine = MwiEngine(lambda _b: store, [sink], FAST)
    http = HealthServer(lambda: "", lambda: {"ok": True}, PushEndpoint(TOKEN, hub.receive))
    await http.start("127.0.0.1", push_dovecot.http_port)
    await engine.start()
    try:
        for b in boxes:
            await engine.watch(b)
        got = {(await sink.next()).name for _ in boxes}
        assert got == {f"{b.mailbox}@default" for b in boxes}
        watchers = {id(engine.watcher(b)) for b in boxes}
        assert len(watchers) == 1  # three logins, one server: one push watcher
        target = boxes[1]
        client = await AsyncMailClient.connect(push_dovecot.server, others[1].user,
                                               others[1].password)
        try:
            await client.append("INBOX", voicemail(target.mailbox))
        finally:
            await client.close()
        await sink.expect(f"{target.mailbox}@default", new=1, old=0)
        await sink.quiet(0.3)  # the other logins' lamps did not move
    finally:
        await engine.stop()
        await store.aclose()
        await http.close()


@pytest.mark.slow
async def test_a_wrong_token_is_refused_and_recounts_nothing(push_dovecot: PushDovecot) -> None:
    async with push_rig(push_dovecot) as rig:
        await rig.engine.watch(BOX)
        await rig.sink.expect(NAME, new=0, old=0)
        w = rig.watcher()
        await until(lambda: w.recounts >= 1)
        recounts = w.recounts
        port = push_dovecot.http_port
        user = rig.account.user
        status, data = await post(port, push_body(user, "INBOX"), token="wrong-token-wrong")
        assert status == 401
        assert b"WWW-Authenticate: Bearer" in data
        assert (await post(port, push_body(user, "INBOX"), token=None))[0] == 401
        assert (await post(port, b"{not json"))[0] == 400
        assert (await post(port, b'{"user": 3, "mailboxes": []}'))[0] == 400
        assert (await post(port, b"x" * (64 * 1024 + 1)))[0] == 413
        assert (await post(port, push_body("nobody-here", "INBOX")))[0] == 204  # ignored
        assert (await post(port, push_body(user, "Sent")))[0] == 204  # not a watched folder
        assert rig.http.push_refused == 2
        assert rig.http.push_malformed == 3
        assert rig.hub.unknown == 2
        await rig.sink.quiet(0.3)
        assert w.recounts == recounts
        assert (await post(port, push_body(user, "inbox")))[0] == 204  # INBOX in any case
        await until(lambda: w.recounts > recounts, what="the pushed recount")


@pytest.mark.slow
async def test_a_lost_push_is_corrected_by_the_safety_recount(push_dovecot: PushDovecot) -> None:
    lose = {"on": False}
    async with push_rig(push_dovecot, PushOptions(safety_recount=2.0),
                        accept=lambda _b: not lose["on"]) as rig:
        await rig.client.append("INBOX", voicemail("100"))
        await rig.engine.watch(BOX)
        await rig.sink.expect(NAME, new=1, old=0)
        lose["on"] = True  # imapvm answers, but the push never reaches the watcher
        pushes, pushed = rig.pushes, len(rig.pushes)
        await rig.client.select("INBOX")
        (uid,) = await rig.client.uids("ALL")
        await rig.client.read(uid)
        await until(lambda: len(pushes) > pushed, what="Dovecot's push")
        await rig.sink.expect(NAME, new=0, old=1, within=10.0)  # the sweep found it


@pytest.mark.slow
async def test_imapvm_down_neither_breaks_dovecot_nor_loses_the_state(
        push_dovecot: PushDovecot) -> None:
    """Nothing listens where Dovecot posts: the mail client's commands still succeed (the Lua
    call fails at once and is logged); when imapvm starts, its first count has the change, and
    the same session's next change is pushed (a refused push pauses nothing)."""
    account = make_account(push_dovecot.server, "push")
    client = await AsyncMailClient.connect(push_dovecot.server, account.user, account.password)
    try:
        await client.append("INBOX", voicemail("100"))
        await client.select("INBOX")
        (uid,) = await client.uids("ALL")
        await client.read(uid)  # pushed to nobody
        await client.store([uid], "+FLAGS", "\\Flagged")
        assert await client.flags(uid) >= {"\\Seen", "\\Flagged"}
        log = push_dovecot.server.log_path.read_text(errors="replace")
        assert "imapvm push:" in log
        assert "Connection refused" in log  # at once, and tried again next time
        assert TOKEN not in log
        async with push_rig(push_dovecot, account=account, client=client) as rig:
            await rig.engine.watch(BOX)
            await rig.sink.expect(NAME, new=0, old=1)
            await client.store([uid], "-FLAGS", "\\Seen")  # the session that saw imapvm down
            await rig.sink.expect(NAME, new=0, old=0, urgent=1)
            assert rig.pushes
    finally:
        await client.close()


@pytest.mark.slow
async def test_an_outage_marks_the_lamps_stale_and_recovery_recounts(
        private_dovecot: DovecotServer) -> None:
    account = make_account(private_dovecot, "push")
    store = make_store(account)
    store.push = PushHub()
    sink = Recorder()
    engine = MwiEngine(lambda _b: store, [sink], FAST)
    await engine.start()
    try:
        client = await AsyncMailClient.connect(private_dovecot, account.user, account.password)
        await client.append("INBOX", voicemail("100"))
        await client.close()
        await engine.watch(BOX)
        await sink.expect(NAME, new=1, old=0)
        w = engine.watcher(BOX)
        assert isinstance(w, PushWatcher)
        await until(w.connected.is_set, what="the sentinel connection")
        private_dovecot.pause()
        await sink.expect(NAME, new=1, old=0, stale=True, within=10.0)  # kept, never zero
        await sink.quiet(0.5)
        engine.refresh(BOX)  # asked for while the server is down: held back, not lost
        await asyncio.to_thread(private_dovecot.resume)
        await sink.expect(NAME, new=1, old=0, within=15.0)  # recounted: fresh again
    finally:
        await engine.stop()
        await store.aclose()


@pytest.mark.slow
async def test_a_push_is_counted_before_queued_routine_recounts(
        push_dovecot: PushDovecot) -> None:
    """Boxes waiting for their first count (or the sweep) must not delay a pushed one: with one
    counting connection and 30 other logins' first counts queued, the pushed box is counted
    as soon as its debounce ends."""
    accounts = {MailboxRef(str(500 + i), "default"): make_account(push_dovecot.server, "push")
                for i in range(31)}
    pushed_box = next(iter(accounts))

    def resolve(box: MailboxRef) -> ImapSettings:
        return settings_for(accounts[box], box)

    hub = PushHub(PushOptions(connections=1))
    store = ImapStore(resolve, push=hub)
    sink = Recorder()
    engine = MwiEngine(lambda _b: store, [sink], FAST)
    http = HealthServer(lambda: "", lambda: {"ok": True}, PushEndpoint(TOKEN, hub.receive))
    await http.start("127.0.0.1", push_dovecot.http_port)
    await engine.start()
    try:
        await engine.watch(pushed_box)
        await sink.expect(f"{pushed_box.mailbox}@default", new=0, old=0)
        w = engine.watcher(pushed_box)
        assert isinstance(w, PushWatcher)
        counted: list[MailboxRef] = []
        real = w._count_on

        async def spy(conn: object, box: MailboxRef) -> None:
            counted.append(box)
            await real(conn, box)  # type: ignore[arg-type]

        w._count_on = spy  # type: ignore[method-assign]
        for b in list(accounts)[1:]:
            await engine.watch(b)  # 30 first counts queued behind one connection
        a = accounts[pushed_box]
        client = await AsyncMailClient.connect(push_dovecot.server, a.user, a.password)
        try:
            await client.append("INBOX", voicemail(pushed_box.mailbox))
        finally:
            await client.close()
        await until(lambda: pushed_box in counted, what="the pushed box's recount")
        # queued behind them it would be the last of 31; ahead of them it waits only for its
        # debounce (30 ms) and the count in progress
        assert counted.index(pushed_box) < len(accounts) // 2, counted
        await until(lambda: len(counted) >= len(accounts), what="the first counts")
    finally:
        await engine.stop()
        await store.aclose()
        await http.close()


def test_push_bodies_are_validated() -> None:
    assert parse_push(b'{"user": "alice", "mailboxes": ["INBOX", "Caf\\u00e9"]}').mailboxes == (
        "INBOX", "Café")
    for bad in (b"", b"[]", b'{"user": "", "mailboxes": []}', b'{"user": "a"}',
                b'{"user": "a", "mailboxes": [1]}', b'{"user": "a", "mailboxes": [""]}',
                b"\xff", b'{"user": "a", "mailboxes": [' + b'"x",' * 1001 + b'"x"]}',
                b'{"user": "a", "mailboxes": ' + b"[" * 100000 + b"]" * 100000 + b"}"):
        with pytest.raises(ValueError, match=r"\w"):
            parse_push(bad)
