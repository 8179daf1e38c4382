"""Messages a session cannot fully say or play (issue 17, item 15), over the real stores:
an `X-Asterisk-VM-Orig-time` no calendar holds, and an audio part that does not decode. The
session says what it can, skips what it cannot, and goes on to the next message; it never
hangs up on the caller."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator

import pytest

from imapvm.audio.core import Audio
from imapvm.channel import CallTarget
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.message import Deposit, build_voicemail
from imapvm.storage.base import Folder, MailboxRef, Store
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from tests.conftest import make_account
from tests.ivr.conftest import BOX, NOW, World, WorldFactory
from tests.ivr.scripted import Press, ScriptedChannel, tone
from tests.support.dovecot import DovecotServer

OWN = CallTarget("check", "1234")
HUGE = "99999999999999999999999"


def _raw(world: World, *, when: int, seconds: float, caller: str) -> bytes:
    dep = Deposit(number=1, caller_id_num=caller, caller_id_name="X", orig_time=when)
    return build_voicemail(dep, world.session.email_settings(BOX),
                           Audio(tone(seconds))).raw


def with_huge_time(raw: bytes) -> bytes:
    out, n = re.subn(rb"(X-Asterisk-VM-Orig-time: )\d+", rb"\g<1>" + HUGE.encode(), raw)
    assert n == 1
    return out


def with_broken_audio(raw: bytes) -> bytes:
    """Every audio part's base64 replaced by bytes that decode as no format."""
    garbage = base64.encodebytes(b"RIFF\x10\0\0\0WAVEjunkjunkjunk" * 3).replace(b"\n", b"\r\n")
    out, n = re.subn(rb"(Content-Transfer-Encoding: base64\r\n(?:[^\r\n]+\r\n)*\r\n)"
                     rb"[A-Za-z0-9+/=\r\n]+?(\r\n--)", rb"\g<1>" + garbage + rb"\g<2>", raw)
    assert n >= 1
    return out


async def _run(world: World) -> ScriptedChannel:
    raws = [with_huge_time(_raw(world, when=NOW - 900, seconds=1.0, caller="5550001")),
            with_broken_audio(_raw(world, when=NOW - 600, seconds=1.0, caller="5550002")),
            _raw(world, when=NOW - 300, seconds=3.0, caller="5550003")]
    for raw in raws:
        await world.store.deposit(BOX, raw)
    # listen, then 6 (next) after each message, then # to leave
    ch = ScriptedChannel(["1", Press("6", after="vm-helpexit"), Press("6", after="vm-helpexit"),
                          Press("#", after="vm-helpexit"), Press("#")], target=OWN)
    await voicemail_main(ch, world.session, options=MainOptions(skip_password=True))
    return ch


def _check(ch: ScriptedChannel) -> None:
    assert ch.played[-1] == "vm-goodbye"  # the session ended by the caller's choice
    assert "audio:3.0s" in ch.played  # the third message was reached and played whole
    assert "audio:1.0s" in ch.played  # the first one's audio played, its date skipped
    assert ch.played.count("vm-last") == 1


async def test_spool_session_survives_hostile_messages(make_world: WorldFactory) -> None:
    _check(await _run(await make_world()))


@pytest.fixture
async def imap_store(dovecot_slash: DovecotServer) -> AsyncIterator[ImapStore]:
    acct = make_account(dovecot_slash, "hostile")

    def resolve(box: MailboxRef) -> ImapSettings:
        return ImapSettings(host=acct.host, port=acct.port, user=acct.user,
                            password=acct.password, vm_tag=box.mailbox, context=box.context)

    store = ImapStore(resolve)
    yield store
    await store.aclose()


async def test_imap_session_survives_hostile_messages(make_world: WorldFactory,
                                                      imap_store: Store) -> None:
    world = await make_world(store=imap_store)
    _check(await _run(world))
    new = await imap_store.list(BOX, Folder.INBOX)
    old = await imap_store.list(BOX, Folder.OLD)
    # heard: the first (its date unsayable) and the third; the undecodable one stays new
    assert [m.header("x-asterisk-vm-caller-id-num") for m in new] == ["5550002"]
    assert sorted(m.header("x-asterisk-vm-orig-time") for m in old) == sorted(
        [HUGE, str(NOW - 300)])
