"""Voicemail to e-mail by SMTP submission ([smtp] in imapvm.toml) against a real SMTP receiver
(aiosmtpd, in this process), on the server's path: outbox -> store -> mail queue -> SMTP.

Covers the spool (imapvm's embedded default) and IMAP storage (Dovecot), a refused send retried
later without losing the voicemail, delete=yes, and the /metrics counters."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from imapvm.audio import formats
from imapvm.audio.core import Audio
from imapvm.config.loader import LoadedConfig, load
from imapvm.message import Deposit, build_voicemail
from imapvm.message.from_config import email_settings
from imapvm.metrics import Registry
from imapvm.notify.notifier import Notifier, mail_queue
from imapvm.storage.base import Folder, MailboxRef, MessageRef
from imapvm.storage.outbox import Outbox
from imapvm.storage.router import RoutingStore
from tests.commands.test_operator_cli import imapvm
from tests.conftest import make_account
from tests.support.dovecot import DovecotServer

BOX = MailboxRef("1234", "default")


@dataclass
class Receiver:
    """An SMTP server that keeps what it accepts; `refuse` makes it answer 451."""

    refuse: bool = False
    unknown: set[str] = field(default_factory=set)  # recipients refused with 550
    received: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    refused: int = 0
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.unknown:
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        async with self.changed:
            if self.refuse:
                self.refused += 1
                self.changed.notify_all()
                return "451 4.3.0 try again later"
            raw = envelope.original_content or b""
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            self.received.append((envelope, msg))
            self.changed.notify_all()
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret")

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), 30)


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Receiver, int]]:
    receiver = Receiver()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(receiver, hostname="mx.test", auth_require_tls=False,
                     authenticator=receiver.authenticate),
        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield receiver, port
    server.close()
    await server.wait_closed()


def _load(tmp_path: Path, port: int, general: str, mailboxes: str) -> LoadedConfig:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"[general]\nformat=wav|gsm\nserveremail=vm@pbx.test\n{general}\n"
                    f"[default]\n{mailboxes}\n")
    toml = tmp_path / "imapvm.toml"
    toml.write_text(f'[paths]\nspool = "{tmp_path / "spool"}"\noutbox = "{tmp_path / "outbox"}"\n'
                    f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
                    f'username = "pbx"\npassword = "s3cret"\n')
    loaded = load(conf, toml)
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return loaded


@dataclass
class Node:
    """The server's wiring of outbox, store, notifier and mail queue (as server.py does it)."""

    store: RoutingStore
    outbox: Outbox
    notifier: Notifier
    registry: Registry
    tasks: list[asyncio.Task[None]]

    async def deposit(self, box: MailboxRef, seconds: int = 2) -> MessageRef:
        t = np.arange(seconds * 8000) / 8000
        tone = Audio((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))
        settings = email_settings(self.store.settings(box), self.store.config)
        built = build_voicemail(Deposit(number=1, caller_id_num="5550001",
                                        caller_id_name="Carol"), settings, tone)
        return await self.outbox.delivered(await self.outbox.submit(box, built.raw))


@pytest.fixture
async def node_for() -> AsyncIterator[Callable[[LoadedConfig], Node]]:
    nodes: list[Node] = []

    def make(loaded: LoadedConfig) -> Node:
        store = RoutingStore(loaded.voicemail, loaded.settings.paths.spool)

        async def delete(box: MailboxRef, ref: MessageRef) -> None:
            await store.delete(box, [ref])

        queue = mail_queue(loaded.settings.paths.outbox, lambda: loaded.settings.smtp, store,
                           delete)
        queue.first_backoff = 30.0  # a retry comes from retry_now() in these tests
        notifier = Notifier(queue, store.settings, hostname="pbx.test")
        outbox = Outbox(loaded.settings.paths.outbox, store, on_delivered=notifier.stored)
        registry = Registry()
        registry.gauge("imapvm_mail_queue_depth", "queued", callback=lambda: float(queue.depth()))
        registry.add(queue.sent)
        registry.add(queue.failures)
        registry.add(queue.refusals)
        tasks = [asyncio.create_task(outbox.run()), asyncio.create_task(queue.run())]
        node = Node(store, outbox, notifier, registry, tasks)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.outbox.stop()
        node.notifier.queue.stop()
        for t in node.tasks:
            t.cancel()
        await asyncio.gather(*node.tasks, return_exceptions=True)
        await node.store.aclose()


async def test_smtp_delivers_the_email_and_the_pager_notice(
        tmp_path: Path, smtp: tuple[Receiver, int],
        node_for: Callable[[LoadedConfig], Node]) -> None:
    receiver, port = smtp
    loaded = _load(tmp_path, port, "emailsubject=Voicemail from ${VM_CIDNAME} (${VM_DUR})\n"
                   "pagersubject=VM ${VM_MAILBOX}\npagerbody=${VM_CALLERID} left ${VM_DUR}\n"
                   "pagerfromstring=PBX pager\nattach=yes",
                   "1234 => 4242,Alice,alice@example.com,alice-pager@example.com")
    node = node_for(loaded)
    await node.deposit(BOX)
    await receiver.wait(lambda: len(receiver.received) == 2)
    by_to = {env.rcpt_tos[0]: (env, msg) for env, msg in receiver.received}
    env, mail = by_to["alice@example.com"]
    assert env.mail_from == "vm@pbx.test"
    assert receiver.logins[0] == (b"pbx", b"s3cret")
    assert mail["Subject"] == "Voicemail from Carol (0:02)"
    assert not [k for k in mail if k.lower().startswith("x-asterisk")]
    [wav] = [p for p in mail.walk() if p.get_filename() == "msg0000.wav"]
    payload = wav.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert formats.decode(payload, "wav").whole_seconds == 2
    env, pager = by_to["alice-pager@example.com"]
    assert pager["From"] == "PBX pager <vm@pbx.test>"
    assert pager["Subject"] == "VM 1234"
    assert pager.get_content().strip() == '"Carol" <5550001> left 0:02'
    assert await node.notifier.queue.flush(30)
    assert (await node.store.counts(BOX)).new == 1
    metrics = node.registry.render()
    assert 'imapvm_mail_sent_total{kind="email"} 1' in metrics
    assert 'imapvm_mail_sent_total{kind="pager"} 1' in metrics
    assert "imapvm_mail_queue_depth 0" in metrics


async def test_attach_no_sends_the_text_only(
        tmp_path: Path, smtp: tuple[Receiver, int],
        node_for: Callable[[LoadedConfig], Node]) -> None:
    receiver, port = smtp
    node = node_for(_load(tmp_path, port, "attach=no", "1234 => 4242,Alice,alice@example.com"))
    await node.deposit(BOX)
    await receiver.wait(lambda: len(receiver.received) == 1)
    [(_, mail)] = receiver.received
    assert [p.get_content_type() for p in mail.walk()] == ["multipart/mixed", "text/plain"]


async def test_a_refused_send_is_retried_and_delete_yes_waits_for_it(
        tmp_path: Path, smtp: tuple[Receiver, int],
        node_for: Callable[[LoadedConfig], Node]) -> None:
    receiver, port = smtp
    receiver.refuse = True
    node = node_for(_load(tmp_path, port, "", "1234 => 4242,Alice,alice@example.com,,delete=yes"))
    ref = await node.deposit(BOX)
    await receiver.wait(lambda: receiver.refused >= 1)
    # refused: the voicemail is still in the mailbox, the e-mail still queued, and it shows
    assert [m.ref for m in await node.store.list(BOX, Folder.INBOX)] == [ref]
    queue = node.notifier.queue
    assert not await queue.flush(30)  # tried (and refused) again: still queued
    assert queue.failures.get(kind="email") >= 1
    metrics = node.registry.render()
    assert "imapvm_mail_queue_depth 1" in metrics
    assert 'imapvm_mail_send_failures_total{kind="email"}' in metrics
    # the receiver is back: the retry sends it, and only then is the voicemail deleted
    async with receiver.changed:
        receiver.refuse = False
    queue.retry_now()
    await receiver.wait(lambda: len(receiver.received) == 1)
    assert await queue.flush(30)
    assert await node.store.list(BOX, Folder.INBOX) == []
    assert queue.sent.get(kind="email") == 1


async def test_a_send_refused_for_good_is_kept_aside_and_retried_by_the_operator(
        tmp_path: Path, smtp: tuple[Receiver, int],
        node_for: Callable[[LoadedConfig], Node]) -> None:
    """550 for the only recipient: not retried in a loop, never dropped, the delete=yes
    voicemail stays; `imapvm outbox` shows why, and `imapvm outbox retry` sends it once the
    address is fixed at the receiver."""
    receiver, port = smtp
    receiver.unknown.add("alice@example.com")
    node = node_for(_load(tmp_path, port, "", "1234 => 4242,Alice,alice@example.com,,delete=yes"))
    ref = await node.deposit(BOX)
    queue = node.notifier.queue
    assert await queue.flush(30)  # done with it: set aside, nothing left to retry
    assert queue.refusals.get(kind="email") == 1
    assert queue.failures.get(kind="email") == 0
    assert [m.ref for m in await node.store.list(BOX, Folder.INBOX)] == [ref]
    outbox_dir = tmp_path / "outbox"
    listed = await asyncio.to_thread(imapvm, "outbox", "--dir", outbox_dir, "--json")
    [item] = json.loads(listed.stdout)["items"]
    assert (item["kind"], item["state"], item["mailbox"]) == ("email", "rejected", "1234@default")
    assert "550" in item["last_error"]
    assert "alice@example.com" in item["last_error"]
    assert "imapvm_mail_rejected_total" in node.registry.render()

    receiver.unknown.clear()  # the operator fixes the address at the MTA
    done = await asyncio.to_thread(imapvm, "outbox", "retry", item["id"], "--dir", outbox_dir)
    assert done.returncode == 0, done.stderr
    assert f"email {item['id']} for 1234@default: back in the queue" in done.stdout
    queue.retry_now()  # (a running server's queue looks again within its rescan interval)
    await receiver.wait(lambda: len(receiver.received) == 1)
    assert await queue.flush(30)
    assert await node.store.list(BOX, Folder.INBOX) == []  # delete=yes, now that it went out


async def test_some_recipients_refused_the_others_get_it(
        tmp_path: Path, smtp: tuple[Receiver, int],
        node_for: Callable[[LoadedConfig], Node], caplog: pytest.LogCaptureFixture) -> None:
    receiver, port = smtp
    receiver.unknown.add("gone@example.com")
    node = node_for(_load(tmp_path, port, "",
                          "1234 => 4242,Alice,alice@example.com|gone@example.com"))
    await node.deposit(BOX)
    await receiver.wait(lambda: len(receiver.received) == 1)
    assert await node.notifier.queue.flush(30)
    assert receiver.received[0][0].rcpt_tos == ["alice@example.com"]
    assert "refused recipient gone@example.com: 550" in caplog.text


async def test_imap_storage_sends_the_notification_too(
        tmp_path: Path, smtp: tuple[Receiver, int], dovecot_slash: DovecotServer,
        node_for: Callable[[LoadedConfig], Node]) -> None:
    """As Asterisk with IMAP storage: the message is APPENDed and, with email=, e-mailed; with
    delete=yes it is deleted from the IMAP folder once e-mailed."""
    receiver, port = smtp
    alice, bob = make_account(dovecot_slash), make_account(dovecot_slash)
    loaded = _load(tmp_path, port,
                   f"imapserver=127.0.0.1\nimapport={dovecot_slash.port}\nimapflags=notls",
                   f"1234 => 4242,Alice,alice@example.com,,imapuser={alice.user}|"
                   f"imappassword={alice.password}\n"
                   f"5678 => 1111,Bob,bob@example.com,,imapuser={bob.user}|"
                   f"imappassword={bob.password}|delete=yes")
    node = node_for(loaded)
    await node.deposit(BOX)
    await receiver.wait(lambda: len(receiver.received) == 1)
    assert (await node.store.counts(BOX)).new == 1
    [(env, mail)] = receiver.received
    assert env.rcpt_tos == ["alice@example.com"]
    assert mail["Subject"] == "[PBX]: New message 1 in mailbox 1234"
    bob_box = MailboxRef("5678", "default")
    await node.deposit(bob_box)
    await receiver.wait(lambda: len(receiver.received) == 2)
    assert await node.notifier.queue.flush(30)
    assert receiver.received[1][0].rcpt_tos == ["bob@example.com"]
    counts = await node.store.counts(bob_box)
    assert (counts.new, counts.old, counts.urgent) == (0, 0, 0)



async def test_starttls_and_auth_as_a_submission_server_wants_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default `[smtp]` (port 587 style: STARTTLS, then AUTH) against a receiver that
    refuses AUTH and mail before TLS; the server's certificate is trusted through
    SSL_CERT_FILE, as a site with its own CA would configure it."""
    import ssl
    import subprocess

    from imapvm.config.settings import SmtpSettings
    from imapvm.notify.transport import SendError, Smtp

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(subprocess.run, [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver = Receiver()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(receiver, hostname="mx.test", tls_context=context, require_starttls=True,
                     authenticator=receiver.authenticate),
        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        message = b"From: vm@pbx.test\r\nTo: alice@example.com\r\nSubject: t\r\n\r\nhello\r\n"
        good = SmtpSettings(host="127.0.0.1", port=port, username="pbx", password="s3cret")
        await Smtp(good).send(message, "vm@pbx.test", ["alice@example.com"])
        await receiver.wait(lambda: len(receiver.received) == 1)
        assert receiver.logins == [(b"pbx", b"s3cret")]
        plain = SmtpSettings(host="127.0.0.1", port=port, starttls=False)
        with pytest.raises(SendError, match=r"smtp://127\.0\.0\.1"):
            await Smtp(plain).send(message, "vm@pbx.test", ["alice@example.com"])
        # (a short timeout: the TLS close after a refused AUTH waits for a close_notify that
        # this receiver never sends)
        wrong = SmtpSettings(host="127.0.0.1", port=port, username="pbx", password="nope",
                             timeout=2.0)
        with pytest.raises(SendError) as refused:
            await Smtp(wrong).send(message, "vm@pbx.test", ["alice@example.com"])
        assert "nope" not in str(refused.value)
        assert len(receiver.received) == 1
    finally:
        server.close()
        await server.wait_closed()
