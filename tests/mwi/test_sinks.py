"""Sinks against small local fakes: a script for externnotify, a fake AMI (a line protocol),
and an asyncio HTTP server for the webhook; plus the fan-out's independence."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imapvm.mwi.ami import AmiError, AmiSink
from imapvm.mwi.model import MwiUpdate
from imapvm.mwi.sinks import CallbackSink, ExternNotifySink, SinkFanout
from imapvm.mwi.webhook import WebhookError, WebhookSink
from tests.mwi.helpers import Recorder
from tests.support.waiting import until

UPDATE = MwiUpdate("100@default", "100", "default", new=2, old=3, urgent=1)


# -- externnotify ------------------------------------------------------------------------------
async def test_externnotify_gets_asterisks_arguments(tmp_path: Path) -> None:
    out = tmp_path / "args.json"
    script = tmp_path / "notify.py"
    script.write_text(f"import json, sys\njson.dump(sys.argv[1:], open({str(out)!r}, 'w'))\n")
    sink = ExternNotifySink(f"{sys.executable} {script}")
    await sink.publish(UPDATE)
    # context mailbox new old urgent; new without urgent, as Asterisk's inboxcount2
    assert json.loads(out.read_text()) == ["default", "100", "2", "3", "1"]
    out.unlink()
    await sink.publish(MwiUpdate(**{**UPDATE.__dict__, "stale": True, "counts_changed": False}))
    assert not out.exists()  # staleness alone does not run the program


async def test_externnotify_is_killed_after_its_timeout(tmp_path: Path) -> None:
    sink = ExternNotifySink(f"{sys.executable} -c 'import time; time.sleep(30)'", timeout=0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError, match="killed"):
        await sink.publish(UPDATE)
    assert loop.time() - start < 3


async def test_externnotify_failure_is_reported(tmp_path: Path) -> None:
    sink = ExternNotifySink(f"{sys.executable} -c 'import sys; sys.exit(3)'")
    with pytest.raises(RuntimeError, match="exited 3"):
        await sink.publish(UPDATE)


# -- AMI ---------------------------------------------------------------------------------------
class FakeAmi:
    """Enough of Asterisk's manager interface: banner, Login, MWIUpdate, Logoff."""

    def __init__(self, secret: str = "s3cret") -> None:
        self.secret = secret
        self.actions: list[dict[str, str]] = []
        self.logins = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        authed = False
        block: dict[str, str] = {}
        try:
            while line := await reader.readline():
                text = line.decode().rstrip("\r\n")
                if text:
                    k, _, v = text.partition(":")
                    block[k.strip()] = v.strip()
                    continue
                action, aid = block.get("Action", ""), block.get("ActionID", "")
                self.actions.append(block)
                if action == "Login":
                    authed = block.get("Secret") == self.secret
                    self.logins += authed
                    reply = "Success" if authed else "Error\r\nMessage: Authentication failed"
                elif action == "MWIUpdate" and authed:
                    # an unrelated event first: the client must skip it
                    writer.write(b"Event: FullyBooted\r\nStatus: up\r\n\r\n")
                    reply = "Success\r\nMessage: Update MWI"
                else:
                    reply = "Error\r\nMessage: Permission denied"
                writer.write(f"Response: {reply}\r\nActionID: {aid}\r\n\r\n".encode())
                await writer.drain()
                block = {}
        except ConnectionError:
            pass
        finally:
            writer.close()

    def drop_clients(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def stop(self) -> None:
        self.drop_clients()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmi]:
    fake = FakeAmi()
    await fake.start()
    yield fake
    await fake.stop()


async def test_ami_logs_in_once_and_sends_mwiupdate(ami: FakeAmi) -> None:
    sink = AmiSink("127.0.0.1", ami.port, "imapvm", "s3cret")
    await sink.publish(UPDATE)
    await sink.publish(MwiUpdate("101@work", "101", "work", new=0, old=0, urgent=0))
    updates = [a for a in ami.actions if a["Action"] == "MWIUpdate"]
    assert [(a["Mailbox"], a["NewMessages"], a["OldMessages"]) for a in updates] == [
        ("100@default", "3", "3"), ("101@work", "0", "0")]  # NewMessages = new + urgent
    assert ami.logins == 1
    await sink.aclose()


async def test_ami_reconnects_after_the_connection_drops(ami: FakeAmi) -> None:
    sink = AmiSink("127.0.0.1", ami.port, "imapvm", "s3cret")
    await sink.publish(UPDATE)
    ami.drop_clients()
    reader = sink._reader
    assert reader is not None
    await until(reader.at_eof, what="the sink saw the connection close")
    await sink.publish(MwiUpdate("100@default", "100", "default", new=0, old=5, urgent=0))
    assert ami.logins == 2
    assert [a["OldMessages"] for a in ami.actions if a["Action"] == "MWIUpdate"] == ["3", "5"]
    await sink.aclose()


async def test_ami_wrong_secret_is_an_error(ami: FakeAmi) -> None:
    sink = AmiSink("127.0.0.1", ami.port, "imapvm", "wrong")
    with pytest.raises(AmiError, match="login"):
        await sink.publish(UPDATE)
    assert not [a for a in ami.actions if a["Action"] == "MWIUpdate"]


# -- webhook -----------------------------------------------------------------------------------
class FakeHttp:
    """An HTTP/1.1 server answering POSTs with the statuses it is given, in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode().strip()
        headers = {}
        while (line := (await reader.readline()).decode().strip()):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((request_line, headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_webhook_posts_json_and_retries_server_errors() -> None:
    http = FakeHttp([503, 502])
    await http.start()
    try:
        sink = WebhookSink(f"http://127.0.0.1:{http.port}/mwi?x=1", backoff=0.02)
        await sink.publish(UPDATE)
        assert len(http.requests) == 3
        line, headers, body = http.requests[-1]
        assert line == "POST /mwi?x=1 HTTP/1.1"
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "name": "100@default", "mailbox": "100", "context": "default", "new": 3,
            "old": 3, "urgent": 1, "new_not_urgent": 2, "stale": False}
    finally:
        await http.stop()


async def test_webhook_gives_up_on_client_errors_and_after_retries() -> None:
    http = FakeHttp([404, 500, 500, 500])
    await http.start()
    try:
        sink = WebhookSink(f"http://127.0.0.1:{http.port}/", retries=2, backoff=0.01)
        with pytest.raises(WebhookError, match="404"):
            await sink.publish(UPDATE)
        assert len(http.requests) == 1  # a 4xx is not retried
        with pytest.raises(WebhookError, match="gave up after 3"):
            await sink.publish(UPDATE)
    finally:
        await http.stop()
    with pytest.raises(ValueError, match="not http"):
        WebhookSink("ftp://example.org/")


# -- fan-out -----------------------------------------------------------------------------------
class Hanging:
    name = "hanging"

    def __init__(self) -> None:
        self.calls = 0

    async def publish(self, update: MwiUpdate) -> None:
        self.calls += 1
        await asyncio.sleep(3600)


class Broken:
    name = "broken"

    async def publish(self, update: MwiUpdate) -> None:
        raise RuntimeError("boom")


async def test_one_failing_or_hanging_sink_never_blocks_another() -> None:
    good, hanging = Recorder(), Hanging()
    fanout = SinkFanout([hanging, Broken(), good], timeout=0.2)
    fanout.start()
    try:
        fanout.publish(UPDATE)
        assert (await good.next(1)).name == "100@default"  # at once, not after the timeout
        fanout.publish(MwiUpdate("101@default", "101", "default", 1, 0, 0))
        assert (await good.next(1)).name == "101@default"
        # the hanging sink was timed out and got the next update
        await until(lambda: hanging.calls == 2, what="the hanging sink's second call")
    finally:
        await fanout.stop()


async def test_a_busy_sink_receives_the_latest_state_per_name() -> None:
    seen: list[tuple[str, int]] = []
    gate, two = asyncio.Event(), asyncio.Event()

    async def slow(update: MwiUpdate) -> None:
        await gate.wait()
        seen.append((update.name, update.old))
        if len(seen) == 2:
            two.set()

    fanout = SinkFanout([CallbackSink(slow, name="sip")])
    fanout.start()
    try:
        for old in range(1, 5):  # the first is in flight, 2 and 3 are superseded by 4
            fanout.publish(MwiUpdate("100@default", "100", "default", 0, old, 0))
            await asyncio.sleep(0)
        gate.set()
        async with asyncio.timeout(10):
            await two.wait()
        assert fanout.queued == 0  # nothing else will be delivered
        assert seen == [("100@default", 1), ("100@default", 4)]
    finally:
        await fanout.stop()
