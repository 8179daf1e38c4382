"""Spool mailboxes are polled; voicemail.conf drives options, aliases, sinks and the boxes
watched at start."""

from __future__ import annotations

import sys
from pathlib import Path

from imapvm.config.settings import MwiSettings
from imapvm.mwi import config as mwi_config
from imapvm.mwi.engine import MwiEngine
from imapvm.mwi.sinks import ExternNotifySink
from imapvm.mwi.webhook import WebhookSink
from imapvm.storage.base import Counts, MailboxRef
from imapvm.storage.spool import SpoolStore
from imapvm.storage.watching import PollWatcher, WatchOptions
from tests.config.helpers import load_conf
from tests.mwi.helpers import Recorder
from tests.support.vmmail import voicemail

BOX = MailboxRef("100", "default")


async def test_spool_boxes_are_polled_and_deposits_do_not_blink(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path / "spool")
    sink = Recorder()
    engine = MwiEngine(lambda _b: store, [sink], WatchOptions(pollfreq=0.2))
    await engine.start()
    try:
        await engine.watch(BOX)
        await sink.expect("100@default", new=0, old=0)
        assert isinstance(engine.watcher(BOX), PollWatcher)
        await store.deposit(BOX, voicemail("100"))  # as if another node left it
        await sink.expect("100@default", new=1, old=0, within=2)
        for i in range(3):  # polls every 0.2 s keep racing the deposits: never a blink
            async with engine.changing(BOX, Counts(urgent=1)):
                await store.deposit(BOX, voicemail("100"), urgent=True)
            u = await sink.next(0.2)
            assert (u.new, u.urgent) == (1, 1 + i)
        await sink.quiet(0.6)  # the polls confirm it without another update
    finally:
        await engine.stop()


async def test_configuration_drives_the_engine(tmp_path: Path) -> None:
    notify = tmp_path / "notify.sh"
    vm, _ = load_conf(
        tmp_path,
        "[general]\npollmailboxes=yes\npollfreq=7\naliasescontext=devices\n"
        f"externnotify={sys.executable} {notify}\n"
        "[devices]\n5100@devices => 100@default\n"
        "[default]\n100 => 1234\n101 => 1234\n",
    )
    options = mwi_config.watch_options(vm, debounce=0.01)
    assert (options.pollfreq, options.debounce) == (7.0, 0.01)
    sinks = mwi_config.sinks(vm, MwiSettings(webhook_url="http://127.0.0.1:9/mwi"))
    assert [type(s) for s in sinks] == [ExternNotifySink, WebhookSink]
    assert mwi_config.aliases(vm) == [(MailboxRef("5100", "devices"), BOX)]

    store = SpoolStore(tmp_path / "spool")
    sink = Recorder()
    engine = MwiEngine(lambda _b: store, [sink], options)
    await engine.start()
    try:
        names = await mwi_config.apply(engine, vm)  # pollmailboxes=yes: every mailbox
        assert names == ["100@default", "101@default"]
        got = {(await sink.next()).name for _ in range(3)}
        assert got == {"100@default", "101@default", "5100@devices"}
    finally:
        await engine.stop()
