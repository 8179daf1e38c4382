"""Every path that stores a voicemail notifies: a caller's message and one sent from
VoiceMailMain's advanced menu (sendvoicemail, 3 -> 5), over the scripted channel and the spool,
with the outbox's delivery hook wired to the notifier as the server wires it, and `mailcmd` a
script that captures what it is given."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from imapvm.channel import CallerId
from imapvm.ivr.leave import leave_message
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.notify.notifier import Notifier
from imapvm.notify.queue import MailItem, MailQueue
from imapvm.notify.transport import MailCommand
from imapvm.storage.base import MailboxRef, MessageRef
from tests.ivr.conftest import BOB, BOX, World, WorldFactory
from tests.ivr.scripted import Rec, ScriptedChannel
from tests.ivr.test_main import OWN, after

CAPTURE = """#!/bin/sh
n=$(ls "{out}" | wc -l)
cat > "{out}/$n.eml"
"""


@dataclass
class Captured:
    """What a capturing `mailcmd` script was given, one file per run."""

    directory: Path

    @property
    def sent(self) -> list[tuple[list[str], EmailMessage]]:
        out = []
        for path in sorted(self.directory.glob("*.eml"), key=lambda p: int(p.stem)):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(([a.addr_spec for a in msg["To"].addresses], msg))
        return out


async def _wire(w: World, tmp_path: Path) -> tuple[MailQueue, Captured]:
    out = tmp_path / "captured"
    out.mkdir()
    script = tmp_path / "capture-mail"
    script.write_text(CAPTURE.format(out=out))
    script.chmod(0o755)

    async def delete(box: MailboxRef, ref: MessageRef) -> None:
        await w.store.delete(box, [ref])

    def transport(_item: MailItem) -> MailCommand:
        return MailCommand(f"{script} -t")

    queue = MailQueue(tmp_path / "mail", transport, delete)
    w.outbox.on_delivered = Notifier(queue, w.session.settings, hostname="pbx.test").stored
    w.tasks.append(asyncio.create_task(queue.run()))
    return queue, Captured(out)


async def test_sendvoicemail_from_the_advanced_menu_is_emailed(make_world: WorldFactory,
                                                              tmp_path: Path) -> None:
    w = await make_world(alice="sendvoicemail=yes")
    queue, captured = await _wire(w, tmp_path)
    ch = ScriptedChannel([after("3", "vm-helpexit"), after("5", "vm-starmain"), "5678#",
                          Rec(3), after("#")], target=OWN, caller=CallerId("1234", "Alice"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    await w.settle()
    assert await queue.flush(10)
    [(to, mail)] = captured.sent
    assert to == ["bob@example.com"]
    assert mail["Subject"] == "[PBX]: New message 1 in mailbox 5678"
    assert "msg0000.wav" in [p.get_filename() for p in mail.walk()]
    queue.stop()


async def test_a_callers_message_with_delete_yes_leaves_the_mailbox_empty(
        make_world: WorldFactory, tmp_path: Path) -> None:
    w = await make_world(alice="delete=yes")
    queue, captured = await _wire(w, tmp_path)
    ch = ScriptedChannel([Rec(2)], caller=CallerId("5550001", "Carol"))
    result = await leave_message(ch, w.session, [BOX])
    assert result.status == "SUCCESS"
    assert "vm-goodbye" in ch.played  # the caller was done before any e-mail was sent
    await w.settle()
    assert await queue.flush(10)
    [(to, _)] = captured.sent
    assert to == ["alice@example.com"]
    counts = await w.store.counts(BOX)
    assert (counts.new, counts.old) == (0, 0)
    assert (await w.store.counts(BOB)).new == 0
    queue.stop()
