"""The menus in Spanish, French, Italian and Russian: Asterisk's per-language grammar, prompt
for prompt, over the installed Debian sound sets.

The expected lists are written out by hand from Asterisk's vm_intro_<lang>,
vm_play_folder_name, vm_browse_messages_<lang>, ast_say_number_full_<lang> and
ast_say_date_with_format_<lang> (and say what a speaker of the language hears); they are
never generated from the implementation.
"""

from __future__ import annotations

import pytest

from imapvm.audio import language, prompts
from imapvm.channel import CallTarget
from imapvm.commands.doctor import Report, _check_language
from imapvm.ivr import lang
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.storage.base import Folder
from imapvm.telephony.routing import call_language
from imapvm.telephony.sip.message import SipRequest, parse_message
from tests.ivr.conftest import BOX, NOW, WorldFactory, conf_text
from tests.ivr.scripted import Press, Rec, ScriptedChannel
from tests.telephony.sipmsgs import invite

OWN = CallTarget("check", "1234")
ZONE = "[zonemessages]\nutc=UTC|'vm-received' q 'digits/at' IMp\n"
# (urgent, new, old) -> what the caller hears after login
INTROS = {
    "es": {
        (0, 0, 0): ["vm-youhaveno", "vm-messages"],
        (0, 1, 0): ["vm-youhave", "digits/1M", "vm-message", "vm-INBOXs"],
        (0, 2, 0): ["vm-youhave", "digits/2", "vm-messages", "vm-INBOX"],
        (0, 5, 1): ["vm-youhave", "digits/5", "vm-messages", "vm-INBOX", "vm-and",
                    "digits/1M", "vm-message", "vm-Olds"],
        (0, 21, 2): ["vm-youhave", "digits/21", "vm-messages", "vm-INBOX", "vm-and",
                     "digits/2", "vm-messages", "vm-Old"],
        (1, 0, 0): ["vm-youhave", "digits/1M", "vm-message", "vm-INBOXs"],
    },
    "fr": {
        (0, 0, 0): ["vm-youhave", "vm-no", "vm-messages"],
        (0, 1, 0): ["vm-youhave", "digits/1", "vm-INBOX", "vm-message"],
        (0, 2, 0): ["vm-youhave", "digits/2", "vm-INBOX", "vm-messages"],
        (0, 5, 1): ["vm-youhave", "digits/5", "vm-INBOX", "vm-and", "digits/1", "vm-Old",
                    "vm-message"],
        (0, 21, 2): ["vm-youhave", "digits/20", "digits/et", "digits/1", "vm-INBOX", "vm-and",
                     "digits/2", "vm-Old", "vm-messages"],
        (1, 0, 0): ["vm-youhave", "digits/1", "vm-INBOX", "vm-message"],
    },
    "it": {
        (0, 0, 0): ["vm-no", "vm-message"],
        (0, 1, 0): ["vm-youhave", "digits/un", "vm-nuovo", "vm-message"],
        (0, 2, 0): ["vm-youhave", "digits/2", "vm-nuovi", "vm-messages"],
        (0, 5, 1): ["vm-youhave", "digits/5", "vm-nuovi", "vm-messages", "vm-and",
                    "digits/un", "vm-vecchio", "vm-message"],
        (0, 21, 2): ["vm-youhave", "digits/21", "vm-nuovi", "vm-messages", "vm-and",
                     "digits/2", "vm-vecchi", "vm-messages"],
        (1, 0, 0): ["vm-youhave", "digits/un", "vm-nuovo", "vm-message"],
    },
    "ru": {
        # у вас нет сообщений / 1 новое сообщение / 2 новых сообщения / 5 новых ... 1 старое
        (0, 0, 0): ["vm-youhave", "vm-no", "vm-messagex2"],
        (0, 1, 0): ["vm-youhave", "digits/1n", "vm-newn", "vm-message"],
        (0, 2, 0): ["vm-youhave", "digits/2n", "vm-newx", "vm-messagex1"],
        (0, 5, 1): ["vm-youhave", "digits/5", "vm-newx", "vm-and", "digits/1n", "vm-oldn",
                    "vm-message"],
        (0, 21, 2): ["vm-youhave", "digits/20", "digits/1n", "vm-newn", "vm-and",
                     "digits/2n", "vm-oldx", "vm-messagex1"],
        (1, 0, 0): ["vm-youhave", "digits/1n", "vm-newn", "vm-message"],
    },
}


@pytest.mark.parametrize("code", sorted(INTROS))
def test_intro_counts(code: str) -> None:
    grammar = lang.for_code(code)
    for counts, expected in INTROS[code].items():
        assert grammar.intro(*counts) == expected, (code, counts)


@pytest.mark.parametrize(("code", "n", "words"), [
    ("es", 1, ["digits/1"]), ("es", 31, ["digits/30", "digits/and", "digits/1"]),
    ("es", 100, ["digits/100"]), ("es", 115, ["digits/100-and", "digits/15"]),
    ("es", 1000, ["digits/thousand"]),
    ("es", 2_000_000, ["digits/2", "digits/millions"]),
    ("es", 1_000_000, ["digits/1M", "digits/million"]),
    ("fr", 21, ["digits/20", "digits/et", "digits/1"]),
    ("fr", 71, ["digits/60", "digits/et", "digits/11"]),
    ("fr", 95, ["digits/80", "digits/15"]), ("fr", 300, ["digits/3", "digits/hundred"]),
    ("fr", 2001, ["digits/2", "digits/thousand", "digits/1"]),
    ("it", 28, ["digits/28"]), ("it", 35, ["digits/30", "digits/5"]),
    ("it", 100, ["digits/hundred"]), ("it", 200, ["digits/2", "digits/hundred"]),
    ("it", 1000, ["digits/thousand"]), ("it", 3000, ["digits/3", "digits/thousands"]),
    ("ru", 22, ["digits/20", "digits/2"]), ("ru", 345, ["digits/300", "digits/40", "digits/5"]),
    ("ru", 2000, ["digits/2f", "digits/thousands-i"]),
    ("ru", 5000, ["digits/5", "digits/thousands"]),
])
def test_numbers(code: str, n: int, words: list[str]) -> None:
    assert lang.for_code(code).number(n) == words


def test_russian_counted_words() -> None:
    from imapvm.ivr.lang.ru import counted_adjective, counted_noun

    nouns = {n: counted_noun(n, "vm-message") for n in (0, 1, 2, 4, 5, 11, 12, 21, 22, 25, 111)}
    assert nouns == {0: "vm-messagex2", 1: "vm-message", 2: "vm-messagex1",
                     4: "vm-messagex1", 5: "vm-messagex2", 11: "vm-messagex2",
                     12: "vm-messagex2", 21: "vm-message", 22: "vm-messagex1",
                     25: "vm-messagex2", 111: "vm-messagex2"}
    assert [counted_adjective(n, "vm-new", "n") for n in (1, 2, 11, 21)] == [
        "vm-newn", "vm-newx", "vm-newx", "vm-newn"]


# 2025-11-24 is a Monday; NOW is 16:00 UTC that day.
TODAY_15H = NOW - 3600
LAST_THURSDAY_9H05 = NOW - 4 * 86400 - 7 * 3600 + 5 * 60
LONG_AGO = NOW - 40 * 86400  # Wed 15 Oct 2025, 16:00


@pytest.mark.parametrize(("code", "when", "expected"), [
    ("es", TODAY_15H, ["vm-received", "digits/today", "digits/at", "digits/3", "digits/0",
                       "digits/afternoon"]),
    ("es", LAST_THURSDAY_9H05, ["vm-received", "digits/day-4", "digits/at", "digits/9",
                                "digits/5", "digits/a-m"]),
    ("es", LONG_AGO, ["vm-received", "digits/es-el", "digits/day-3", "digits/15",
                      "digits/es-de", "digits/mon-9", "digits/es-de", "digits/2",
                      "digits/thousand", "digits/25", "digits/at", "digits/4", "digits/0",
                      "digits/afternoon"]),
    ("fr", TODAY_15H, ["vm-received", "digits/at", "digits/3", "digits/oclock",
                       "digits/p-m"]),
    ("fr", LONG_AGO, ["vm-received", "digits/day-3", "digits/15", "digits/mon-9",
                      "digits/2", "digits/thousand", "digits/20", "digits/5", "digits/at",
                      "digits/4", "digits/oclock", "digits/p-m"]),
    ("it", TODAY_15H, ["vm-received", "digits/at", "digits/hours", "digits/15", "digits/e",
                       "digits/0", "digits/minutes"]),
    ("it", LAST_THURSDAY_9H05, ["vm-received", "digits/day-4", "digits/at", "digits/hours",
                                "digits/9", "digits/e", "digits/5", "digits/minutes"]),
    ("ru", TODAY_15H, ["vm-received", "digits/at", "digits/3", "digits/oclock",
                       "digits/p-m"]),
])
def test_envelope_dates(code: str, when: int, expected: list[str]) -> None:
    assert lang.for_code(code).date(when, tz="UTC", now=NOW) == expected


@pytest.mark.parametrize("code", ["es", "fr", "it", "ru"])
def test_every_prompt_is_in_the_language_set(code: str) -> None:
    """Installed by the set-up scripts (Debian's sets plus the few synthesised at install):
    nothing a menu says in this language falls back to English."""
    report = Report()
    _check_language(report, prompts.DEFAULT_SOUNDS, code)
    [check] = report.checks
    assert check.missing == []
    assert check.ok


def test_unknown_language_speaks_english_grammar_and_doctor_says_so() -> None:
    assert lang.for_code("de").code == "en"
    assert lang.for_code("es_MX").code == "es"
    assert language.normalize("fr-CA") == "fr"
    report = Report()
    _check_language(report, prompts.DEFAULT_SOUNDS, "xx")
    assert not report.checks[0].ok
    assert "no xx prompt directory" in report.checks[0].detail


def _req(uri: str = "sip:*97@127.0.0.1", extra: str = "") -> SipRequest:
    msg = parse_message(invite(uri=uri, extra=extra))
    assert isinstance(msg, SipRequest)
    return msg


def test_the_call_asks_for_a_language() -> None:
    assert call_language(_req("sip:*97@h;language=es")) == "es"
    assert call_language(_req(extra="Accept-Language: da, en-gb;q=0.8, it;q=0.9")) == "da"
    assert call_language(_req(extra="Accept-Language: en;q=0.2, fr-CA;q=0.9")) == "fr-CA"
    assert call_language(_req(extra="Accept-Language: *, de;q=0")) is None
    assert call_language(_req()) is None


# -- whole menus over the spool store --------------------------------------------------------
CALLER = ["vm-from-phonenumber", "digits/5", "digits/5", "digits/5", "digits/0", "digits/0",
          "digits/0", "digits/1"]
DURATION = ["vm-duration", "digits/0", "vm-minutes"]
SESSIONS = {
    # the envelope of a message left today at 15:00 UTC, by the zone's format
    # "'vm-received' q 'digits/at' IMp" read with each language's letters
    "es": (["vm-received", "digits/today", "digits/at", "digits/3", "digits/0",
            "digits/afternoon"], ["vm-messages", "vm-Old"]),
    "fr": (["vm-received", "digits/at", "digits/3", "digits/oclock", "digits/p-m"],
           ["vm-Old", "vm-messages"]),
    "it": (["vm-received", "digits/at", "digits/3", "digits/0", "digits/p-m"],
           ["vm-messages", "vm-Old"]),
    "ru": (["vm-received", "digits/at", "digits/3", "digits/oclock", "digits/p-m"],
           ["vm-Old", "vm-messages"]),
}


@pytest.mark.parametrize("code", sorted(SESSIONS))
async def test_mailbox_session_in_each_language(make_world: WorldFactory, code: str) -> None:
    """[general] language= (no language asked by the call): intro, a message with its envelope
    (date, caller, duration), saving it, and the folder names, in the language's order."""
    envelope, old_messages = SESSIONS[code]
    w = await make_world(conf=conf_text(f"language={code}\nsaycid=yes\nsayduration=yes\n"
                                        "saydurationm=0", "tz=utc") + ZONE)
    await w.add_message(seconds=2, caller="5550001")
    ch = ScriptedChannel(["1", Press("9", after="vm-minutes"),
                          Press("1", after="vm-tocancel"), Press("#", after="vm-helpexit")],
                         target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert ch.played[0] == "vm-youhave"  # 1 interrupted the intro
    i = ch.played.index("vm-first")
    played = ch.played[i:i + 2 + len(envelope) + len(CALLER) + len(DURATION)]
    assert played == ["vm-first", "vm-message", *envelope, *CALLER, *DURATION]
    j = ch.played.index("vm-savefolder")
    assert ch.played[j:j + 6] == ["vm-savefolder", "vm-press", "digits/1", "vm-for",
                                  *old_messages]
    k = ch.played.index("vm-tocancel")
    assert ch.played[k + 1:k + 6] == ["vm-message", "digits/1", "vm-savedto", *old_messages]
    counts = await w.store.counts(BOX)
    assert (counts.new, counts.old) == (0, 1)


@pytest.mark.parametrize(("code", "empty"), [
    # "you have no urgent messages": an empty mailbox starts in Urgent, as in Asterisk
    ("es", ["vm-youhaveno", "vm-messages", "vm-Urgent"]),
    ("it", ["vm-no", "vm-message", "vm-Urgent"]),
    ("fr", ["vm-youhave", "vm-no", "vm-Urgent", "vm-messages"]),
    ("ru", ["vm-youhave", "vm-no", "vm-Urgent", "vm-messages"]),
])
async def test_mailbox_language_after_login(make_world: WorldFactory, code: str,
                                            empty: list[str]) -> None:
    """The mailbox's language= wins once the owner logged in (Asterisk's VoiceMailMain);
    the login prompts are in the call's language (here English)."""
    w = await make_world(alice=f"language={code}")
    ref = await w.add_message()
    await w.store.save_to_folder(BOX, ref, Folder.WORK)
    ch = ScriptedChannel(["1234#", "4321#", Press("1", after=INTROS[code][(0, 0, 0)][-1]),
                          Press("#", after="vm-helpexit")], target=CallTarget("check", None))
    await voicemail_main(ch, w.session)
    assert ch.played[:2] == ["vm-login", "vm-password"]
    assert ch.played[2:2 + len(INTROS[code][(0, 0, 0)])] == INTROS[code][(0, 0, 0)]
    rest = ch.played[2 + len(INTROS[code][(0, 0, 0)]):]
    assert any(rest[i:i + len(empty)] == empty for i in range(len(rest))), rest


async def test_leave_a_message_speaks_the_callers_language(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel([Rec(1.0)],
                         target=CallTarget("deposit", "1234", None, "1234", language="it"))
    from imapvm.ivr.leave import leave_message

    await leave_message(ch, w.session)
    assert language.current() == "it"
    assert ch.played[:2] == ["vm-theperson", "digits/1"]  # (the Italian recordings)
    await w.settle()
    assert (await w.store.counts(BOX)).new == 1
