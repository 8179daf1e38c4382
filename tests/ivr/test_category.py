"""The message's category (X-Asterisk-VM-Category; `category=` in the spool's msgNNNN.txt) is
said as Asterisk says it: the sound file of that name, after "message N" and before the date,
in playback and in the envelope (3 -> 3). A site records its own category sounds; an existing
Asterisk sound in a subdirectory (dictate/record) stands for one here."""

from __future__ import annotations

from imapvm.audio.core import Audio
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.message import Deposit, build_voicemail
from imapvm.storage.spool import SpoolStore
from tests.ivr.conftest import BOX, NOW, World, WorldFactory, tone
from tests.ivr.scripted import ScriptedChannel
from tests.ivr.test_main import ENVELOPE, OWN, after, zoned


async def _message(w: World, category: str) -> None:
    dep = Deposit(number=1, caller_id_num="5550001", caller_id_name="Carol",
                  orig_time=NOW - 3600, category=category)
    built = build_voicemail(dep, w.session.email_settings(BOX), Audio(tone(2.0, 300)))
    await w.store.deposit(BOX, built.raw)


async def test_category_in_playback_and_in_the_envelope(make_world: WorldFactory) -> None:
    w = await make_world(conf=zoned())
    await _message(w, "dictate/record")
    assert isinstance(w.store, SpoolStore)
    txt = next((w.store.root / "default" / "1234" / "INBOX").glob("*.txt"))
    assert "category=dictate/record" in txt.read_text()
    ch = ScriptedChannel(["1", after("3"), after("3", "vm-starmain"),
                          after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-first")
    assert ch.played[i:i + 4 + len(ENVELOPE)] == [
        "vm-first", "vm-message", "dictate/record", *ENVELOPE, "audio:2.0s"]
    j = ch.played.index("vm-tohearenv")
    k = ch.played.index("dictate/record", j)
    assert ch.played[k:k + 1 + len(ENVELOPE)] == ["dictate/record", *ENVELOPE]


async def test_no_category_and_a_bad_one_say_nothing(make_world: WorldFactory) -> None:
    w = await make_world(conf=zoned())
    await _message(w, "../../etc/passwd")
    ch = ScriptedChannel(["1", after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-first")
    assert ch.played[i:i + 2 + len(ENVELOPE)] == ["vm-first", "vm-message", *ENVELOPE]
