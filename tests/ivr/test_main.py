"""VoiceMailMain over the spool store: login, intro, the main menu, playback, options, forward."""

from __future__ import annotations

from imapvm.channel import CallerId, CallTarget
from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.message import parse_message
from imapvm.storage.base import Folder, GreetingKind, MailboxRef, StoreUnavailable
from tests.ivr.conftest import BOB, BOX, NOW, WorldFactory, conf_text
from tests.ivr.scripted import Press, Rec, ScriptedChannel, Wait

ZONE = "[zonemessages]\nutc=UTC|'vm-received' q 'digits/at' IMp\n"
CHECK = CallTarget("check", None)
OWN = CallTarget("check", "1234")
#: The envelope of a message left at 15:00 UTC today (NOW is 16:00 UTC).
ENVELOPE = ["vm-received", "digits/at", "digits/3", "digits/oclock", "digits/p-m"]


def zoned(alice: str = "", general: str = "") -> str:
    opts = "tz=utc" + (f"|{alice}" if alice else "")
    return conf_text(general, opts) + ZONE


def after(key: str, prompt: str = "vm-helpexit") -> Press:
    return Press(key, after=prompt)


async def test_login_and_empty_mailbox(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel(["1234#", "4321#", after("#")], target=CHECK)
    result = await voicemail_main(ch, w.session)
    assert ch.played == ["vm-login", "vm-password", "vm-youhave", "vm-no", "vm-messages",
                         "vm-opts", "vm-helpexit", "vm-goodbye"]
    assert result.mailbox == BOX
    assert ch.hung_up


async def test_wrong_password_then_right(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel(["1234#", "0000#", "1234#", "4321#", "#"], target=CHECK)
    result = await voicemail_main(ch, w.session)
    assert ch.played[:4] == ["vm-login", "vm-password", "vm-incorrect-mailbox", "vm-password"]
    assert result.mailbox == BOX


async def test_maxlogins_then_goodbye(make_world: WorldFactory) -> None:
    w = await make_world(general="maxlogins=2")
    ch = ScriptedChannel(["1234#", "1#", "9999#", "2#"], target=CHECK)
    result = await voicemail_main(ch, w.session)
    assert ch.played == ["vm-login", "vm-password", "vm-incorrect-mailbox", "vm-password",
                         "vm-incorrect", "vm-goodbye"]
    assert result.mailbox is None
    assert ch.hung_up


async def test_own_mailbox_and_skip_password(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel(["4321#", "#"], target=OWN)
    assert (await voicemail_main(ch, w.session)).mailbox == BOX
    assert ch.played[:2] == ["vm-password", "vm-youhave"]

    ch = ScriptedChannel(["#"], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert ch.played[0] == "vm-youhave"


async def test_a_phone_whose_number_is_no_mailbox_is_asked_for_one(
    make_world: WorldFactory,
) -> None:
    w = await make_world()
    stranger = CallTarget("check", "5550199", None, "*97")
    ch = ScriptedChannel(["1234#", "4321#", after("#")], target=stranger)
    assert (await voicemail_main(ch, w.session)).mailbox == BOX
    assert ch.played[:3] == ["vm-login", "vm-password", "vm-youhave"]


async def test_intro_counts(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message(urgent=True)
    await w.add_message()
    await w.add_message()
    old = await w.add_message()
    await w.store.mark_heard(BOX, old)
    ch = ScriptedChannel([after("#", "vm-message")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert ch.played[:10] == ["vm-youhave", "digits/1", "vm-Urgent", "vm-and",
                              "digits/2", "vm-INBOX", "vm-and", "digits/1", "vm-Old",
                              "vm-message"]


async def test_play_next_nomore_marks_heard(make_world: WorldFactory) -> None:
    w = await make_world(conf=zoned())
    await w.add_message(seconds=2)
    await w.add_message(seconds=3, when=NOW - 3 * 86400)
    ch = ScriptedChannel(["1", after("6", "vm-helpexit"), after("6"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    friday = ["vm-received", "digits/day-5", "digits/at", "digits/4", "digits/oclock",
              "digits/p-m"]
    first = ["vm-first", "vm-message", *ENVELOPE, "audio:2.0s"]
    after_msg = ["vm-advopts", "vm-repeat", "vm-next", "vm-delete", "vm-toforward",
                 "vm-savemessage", "vm-helpexit"]
    assert ch.played == [
        "vm-youhave",  # 1 interrupted the intro
        *first, *after_msg,
        "vm-last", "vm-message", *friday, "audio:3.0s",
        "vm-prev", "vm-advopts", "vm-repeat", "vm-delete", "vm-toforward", "vm-savemessage",
        "vm-helpexit",
        "vm-nomore",
        "vm-prev", "vm-advopts", "vm-repeat", "vm-delete", "vm-toforward", "vm-savemessage",
        "vm-helpexit", "vm-goodbye",
    ]
    counts = await w.store.counts(BOX)
    assert (counts.new, counts.old) == (0, 2)


async def test_delete_is_applied_on_exit_and_undelete_keeps(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message(caller="5550001")
    await w.add_message(caller="5550002")
    ch = ScriptedChannel(["1", "7", "6", "7", "7", after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert "vm-deleted" in ch.played
    assert "vm-undeleted" in ch.played
    left = await w.store.list(BOX, Folder.OLD)
    assert [m.caller_id[1] for m in left] == ["5550002"]


async def test_delete_applied_on_hangup_and_read_only(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message()
    ch = ScriptedChannel(["1", "7"], target=OWN)  # then the script hangs up
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert (await w.store.counts(BOX)).old == 0

    await w.add_message()
    ch = ScriptedChannel(["1", "7", after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True, read_only=True))
    assert "vm-deleted" not in ch.played
    assert (await w.store.counts(BOX)).old == 1


async def test_save_moves_to_work(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message()
    ch = ScriptedChannel(["1", "9", Press("2", after="vm-tocancel"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-savefolder")
    chooser = ["vm-press"]
    for n, name in ((1, "Old"), (2, "Work"), (3, "Family"), (4, "Friends")):
        chooser += [f"digits/{n}", "vm-for", f"vm-{name}", "vm-messages"]
    assert ch.played[i:i + 24] == ["vm-savefolder", *chooser, "vm-tocancel", "vm-message",
                                   "digits/1", "vm-savedto", "vm-Work", "vm-messages"]
    counts = await w.store.counts(BOX)
    assert (counts.new, counts.old, counts.folders["Work"]) == (0, 0, 1)


async def test_change_folder(make_world: WorldFactory) -> None:
    w = await make_world()
    ref = await w.add_message()
    await w.store.save_to_folder(BOX, ref, Folder.FAMILY)
    ch = ScriptedChannel(["2", "3", after("1", "vm-messages"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-changeto")
    # 3 is pressed during vm-changeto; 1 interrupts the instructions that follow
    assert ch.played[i:i + 5] == ["vm-changeto", "vm-Family", "vm-messages", "vm-onefor",
                                  "vm-first"]


async def test_playback_controls(make_world: WorldFactory) -> None:
    w = await make_world(conf=zoned(general="skipms=3000"))
    await w.add_message(seconds=10)
    ch = ScriptedChannel(["1", after("#", "digits/p-m"), "*", "0", Wait(), "0", after("#")],
                         target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    start = ch.played.index("vm-first")
    # The message plays in one piece; # at 0 s skips to 3 s (7 s left); * there goes back to
    # 0; 0 pauses until 0 again, which resumes where it was (all 10 s, the script takes no time)
    assert ch.played[start:start + 11] == ["vm-first", "vm-message", *ENVELOPE, "audio:10.0s",
                                           "audio:7.0s", "audio:10.0s", "audio:10.0s"]


async def test_urgent_first_then_new(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message(urgent=True, caller="5550009")
    await w.add_message(caller="5550001")
    ch = ScriptedChannel(["1", after("6"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    first = ch.played.index("vm-first")
    assert ch.played[first:first + 3] == ["vm-first", "vm-Urgent", "vm-message"]
    second = ch.played.index("vm-first", first + 1)  # the new messages, from the first
    assert ch.played[second + 1] == "vm-message"
    assert (await w.store.counts(BOX)).old == 2


async def test_messagewrap_and_nextaftercmd(make_world: WorldFactory) -> None:
    w = await make_world(alice="messagewrap=yes|nextaftercmd=yes")
    await w.add_message(caller="5550001")
    await w.add_message(caller="5550002")
    ch = ScriptedChannel(["1", "7", after("6"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    deleted = ch.played.index("vm-deleted")
    assert ch.played[deleted + 1] == "vm-last"  # nextaftercmd went on to message 2
    wrapped = ch.played.index("vm-helpexit", deleted)
    assert ch.played[wrapped + 1] == "vm-first"  # 6 on the last wrapped to the first
    left = await w.store.list(BOX, Folder.OLD)
    assert [m.caller_id[1] for m in left] == ["5550002"]


async def test_help_and_timeouts_exit(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message()
    ch = ScriptedChannel(["1", after("*"), Wait(), Wait(), Wait()], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    star = ch.played.index("vm-onefor")
    assert ch.played[star:star + 7] == ["vm-onefor", "vm-INBOX", "vm-messages", "vm-opts",
                                        "vm-onefor-full", "vm-INBOX", "vm-messages"]
    assert ch.played[-1] == "vm-goodbye"
    assert ch.played.count("vm-helpexit") == 4  # three silences in all end the call


async def test_record_greetings_and_temp(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel([after("0", "vm-messages"), "1", Rec(3), "1",
                          after("4", "vm-options"), Rec(2), after("1", "vm-review"),
                          after("4", "vm-options"), after("2", "vm-tempgreeting2"),
                          after("*", "vm-options"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-options")
    assert ch.played[i:i + 5] == ["vm-options", "vm-rec-unv", "beep", "vm-review",
                                  "vm-msgsaved"]
    assert ch.played[i + 5:i + 11] == ["vm-options", "vm-rec-temp", "beep", "vm-review",
                                       "vm-msgsaved", "vm-tmpexists"]
    assert "vm-tempremoved" in ch.played
    assert await w.store.get_greeting(BOX, GreetingKind.UNAVAIL) is not None
    assert await w.store.get_greeting(BOX, GreetingKind.TEMP) is None


async def test_change_password(make_world: WorldFactory) -> None:
    w = await make_world(general="minpassword=4")
    saved: list[tuple[MailboxRef, str]] = []

    async def save(box: MailboxRef, password: str) -> None:
        saved.append((box, password))

    w.session.save_password = save
    ch = ScriptedChannel([after("0", "vm-messages"), "5", "12#", after("5", "vm-options"),
                          "5678#", "5679#", after("5", "vm-options"), "5678#", "5678#",
                          after("*", "vm-options"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    said = [p for p in ch.played if p in ("vm-invalid-password", "vm-mismatch",
                                          "vm-passchanged")]
    assert said == ["vm-invalid-password", "vm-mismatch", "vm-passchanged"]
    assert saved == [(BOX, "5678")]
    ch = ScriptedChannel(["1234#", "5678#", "#"], target=CHECK)
    assert (await voicemail_main(ch, w.session)).mailbox == BOX


async def test_forward_with_comment_keeps_the_caller(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message(caller="5550001", name="Carol", when=NOW - 7200, seconds=3)
    ch = ScriptedChannel(["1", after("8"), "5678#", after("1", "vm-starmain"), Rec(2),
                          after("1", "vm-review"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-extension")
    assert ch.played[i:i + 11] == ["vm-extension", "digits/5", "digits/6", "digits/7",
                                   "digits/8", "vm-forwardoptions", "vm-starmain",
                                   "vm-record-prepend", "beep", "vm-review", "vm-msgforwarded"]
    assert "vm-msgforwarded" in ch.played
    assert "vm-msgsaved" not in ch.played
    await w.settle()
    [copy] = await w.store.list(BOB, Folder.INBOX)
    assert copy.caller_id == ("Carol", "5550001")
    assert copy.orig_time == NOW - 7200
    assert copy.duration == 3
    audio = await w.store.fetch_audio(BOB, copy.ref)
    assert audio.intro is not None
    meta = parse_message(await w.store.fetch(BOB, copy.ref)).meta
    assert meta.caller_id_num == "5550001"


async def test_forward_refuses_self_and_unknown(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message()
    ch = ScriptedChannel(["1", after("8"), "1234#", "4444#", "5678#", after("2", "vm-starmain"),
                          after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert ch.played.count("pbx-invalid") == 2
    await w.settle()
    [copy] = await w.store.list(BOB, Folder.INBOX)
    assert (await w.store.fetch_audio(BOB, copy.ref)).intro is None


async def test_advanced_reply_and_envelope(make_world: WorldFactory) -> None:
    w = await make_world(conf=zoned())
    await w.add_message(caller="5678", name="Bob")
    ch = ScriptedChannel(["1", after("3"), after("3", "vm-starmain"), after("3"),
                          after("1", "vm-starmain"), Rec(2), after("#")], target=OWN,
                         caller=CallerId("1234", "Alice"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-toreply")
    assert ch.played[i:i + 3] == ["vm-toreply", "vm-tohearenv", "vm-starmain"]
    assert ch.played[i + 3:i + 3 + len(ENVELOPE)] == ENVELOPE
    j = ch.played.index("vm-intro")
    assert ch.played[j:j + 3] == ["vm-intro", "beep", "vm-goodbye"]
    assert ch.played[-1] == "vm-goodbye"
    await w.settle()
    [reply] = await w.store.list(BOB, Folder.INBOX)
    assert reply.caller_id == ("Alice", "1234")


async def test_callback_is_a_transfer(make_world: WorldFactory) -> None:
    w = await make_world(alice="callback=outgoing", exits=True)
    await w.add_message(caller="5550001")
    ch = ScriptedChannel(["1", after("3"), after("2", "vm-starmain"), after("1", "vm-star-cancel")],
                         target=OWN)
    result = await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert ch.played[-1] == "vm-dialout"
    assert ch.transfers == ["sip:5550001@outgoing"]
    assert result.exit is not None
    assert result.exit.kind == "callback"


async def test_new_user_records_name_then_password(make_world: WorldFactory) -> None:
    w = await make_world(conf=conf_text().replace("1234 => 4321", "1234 => 1234")
                         .replace("alice@example.com,,", "alice@example.com,,forcename=yes"))
    ch = ScriptedChannel(["1234#", Rec(2), "1", "9876#", "9876#", after("#")], target=OWN)
    await voicemail_main(ch, w.session)
    assert ch.played[:9] == ["vm-password", "vm-newuser", "vm-rec-name", "beep", "vm-review",
                             "vm-msgsaved", "vm-newpassword", "vm-reenterpassword",
                             "vm-passchanged"]
    assert await w.store.get_greeting(BOX, GreetingKind.NAME) is not None
    assert w.session.password(BOX) == "9876"


async def test_autoplay_plays_urgent_first(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_message(caller="5550001")
    await w.add_message(caller="5550009", urgent=True)
    ch = ScriptedChannel([after("#")], target=OWN)
    await voicemail_main(ch, w.session,
                         options=MainOptions(skip_password=True, autoplay=Folder.INBOX))
    assert ch.played[:3] == ["vm-first", "vm-Urgent", "vm-message"]


async def test_star_at_login_leaves_to_a(make_world: WorldFactory) -> None:
    w = await make_world(exits=True)
    ch = ScriptedChannel(["*#"], target=CHECK)
    result = await voicemail_main(ch, w.session)
    assert ch.played == ["vm-login"]
    assert ch.transfers == ["sip:a@default"]
    assert result.exit is not None
    assert result.exit.kind == "star"


async def test_temp_greeting_warning_and_full_mailbox_warning(make_world: WorldFactory) -> None:
    w = await make_world(alice="tempgreetwarn=yes|maxmsg=2")
    await w.add_greeting(GreetingKind.TEMP)
    await w.add_message()
    await w.add_message()
    ch = ScriptedChannel([after("#", "vm-messages")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert ch.played[:5] == ["vm-mailboxfull", "vm-tempgreetactive", "vm-youhave", "digits/2",
                             "vm-INBOX"]


async def test_outdial_is_a_transfer(make_world: WorldFactory) -> None:
    w = await make_world(alice="dialout=fromvm", exits=True)
    ch = ScriptedChannel([after("3", "vm-helpexit"), after("4", "vm-starmain"),
                          after("5551212#", "vm-star-cancel")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-tomakecall")
    assert ch.played[i:i + 2] == ["vm-tomakecall", "vm-starmain"]
    assert ch.played[-4:] == ["vm-enter-num-to-call", "vm-then-pound", "vm-star-cancel",
                              "vm-dialout"]
    assert ch.transfers == ["sip:5551212@fromvm"]


async def test_store_down_says_sorry(make_world: WorldFactory) -> None:
    w = await make_world()

    class Down:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            async def fail(*args: object, **kwargs: object) -> None:
                raise StoreUnavailable("IMAP server unreachable")
            return fail

    w.session.store = Down()  # type: ignore[assignment]
    ch = ScriptedChannel([], target=OWN)
    result = await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert ch.played == ["vm-sorry"]
    assert result.mailbox == BOX


async def test_saycid_internal_and_external_and_sayduration(make_world: WorldFactory) -> None:
    w = await make_world(conf=zoned(alice="saycid=yes|envelope=no|saydurationm=1",
                                    general="cidinternalcontexts=default"))
    await w.add_message(caller="5678", seconds=2)  # Bob, an internal mailbox, no name
    await w.add_message(caller="5550001", seconds=65)
    await w.add_message(caller="", name="", seconds=2)
    await w.add_greeting(GreetingKind.NAME, BOB, seconds=0.5)
    ch = ScriptedChannel(["1", after("6"), after("6"), after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    first = ch.played.index("vm-first")
    # Bob's recorded name (0.5 s) then the 2 s message: the double lists audio back to back
    assert ch.played[first:first + 4] == ["vm-first", "vm-message", "audio:2.5s", "vm-advopts"]
    second = ch.played.index("vm-message", first + 2)
    assert ch.played[second:second + 13] == [
        "vm-message", "digits/2", "vm-from-phonenumber", "digits/5", "digits/5", "digits/5",
        "digits/0", "digits/0", "digits/0", "digits/1", "vm-duration", "digits/1", "vm-minutes"]
    last = ch.played.index("vm-last")
    assert ch.played[last:last + 3] == ["vm-last", "vm-message", "vm-unknown-caller"]


def test_scripted_channel_is_a_channel() -> None:
    from imapvm.channel import Channel

    assert isinstance(ScriptedChannel([]), Channel)


async def test_send_a_new_message_from_advanced_options(make_world: WorldFactory) -> None:
    w = await make_world(alice="sendvoicemail=yes")
    ch = ScriptedChannel([after("3", "vm-helpexit"), after("5", "vm-starmain"), "1234*5678#",
                          Rec(3), after("#")], target=OWN, caller=CallerId("1234", "Alice"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-leavemsg")
    assert ch.played[i:i + 2] == ["vm-leavemsg", "vm-starmain"]
    j = ch.played.index("vm-extension")
    assert ch.played[j:j + 12] == ["vm-extension", "digits/1", "digits/2", "digits/3",
                                   "digits/4", "digits/5", "digits/6", "digits/7", "digits/8",
                                   "vm-intro", "beep", "vm-goodbye"]
    await w.settle()
    assert (await w.store.counts(BOX)).new == 1  # to oneself is allowed here
    assert (await w.store.counts(BOB)).new == 1


async def test_locked_password_and_cancelled_folder_change(make_world: WorldFactory) -> None:
    w = await make_world(conf=conf_text().replace("1234 => 4321", "1234 => -4321"))
    ch = ScriptedChannel([after("0", "vm-messages"), "5", after("*", "vm-options"),
                          after("2", "vm-helpexit"), Press("#", after="vm-changeto"),
                          after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-options")
    assert ch.played[i:i + 3] == ["vm-options", "vm-no", "vm-options"]
    j = ch.played.index("vm-changeto")
    # cancelled: the current folder is named again
    assert ch.played[j:j + 4] == ["vm-changeto", "vm-press", "vm-Urgent", "vm-messages"]


async def test_forward_to_a_full_mailbox(make_world: WorldFactory) -> None:
    w = await make_world(extra="7777 => 1,Full,full@example.com,,maxmsg=1")
    await w.add_message()
    await w.add_message(MailboxRef("7777", "default"))
    ch = ScriptedChannel(["1", after("8"), "7777#", "5678#", after("2", "vm-starmain"),
                          after("#")], target=OWN)
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    i = ch.played.index("vm-extension")
    assert ch.played[i:i + 3] == ["vm-extension", "vm-mailboxfull", "vm-extension"]
    await w.settle()
    assert (await w.store.counts(BOB)).new == 1


async def test_new_user_forcegreetings_and_giving_up_on_passwords(
        make_world: WorldFactory) -> None:
    conf = (conf_text(general="minpassword=4").replace("1234 => 4321", "1234 => 1234")
            .replace("alice@example.com,,", "alice@example.com,,forcegreetings=yes"))
    w = await make_world(conf=conf)
    ch = ScriptedChannel(["1234#", Rec(2), "1", Rec(2), "1", "12#", "34#", "56#"], target=OWN)
    result = await voicemail_main(ch, w.session)
    assert ch.played == ["vm-password", "vm-newuser",
                         "vm-rec-unv", "beep", "vm-review", "vm-msgsaved",
                         "vm-rec-busy", "beep", "vm-review", "vm-msgsaved",
                         "vm-newpassword", "vm-invalid-password",
                         "vm-newpassword", "vm-invalid-password",
                         "vm-newpassword", "vm-invalid-password"]
    assert ch.hung_up
    assert result.mailbox == BOX
    assert await w.store.get_greeting(BOX, GreetingKind.BUSY) is not None
    assert w.session.password(BOX) == "1234"  # still new next time


async def test_prefix_and_restart_key(make_world: WorldFactory) -> None:
    w = await make_world(conf=zoned())
    await w.add_message(seconds=4)
    ch = ScriptedChannel(["34#", "4321#", "1", after("2", "digits/p-m"), after("#")],
                         target=CHECK)
    result = await voicemail_main(ch, w.session, options=MainOptions(prefix="12"))
    assert result.mailbox == BOX
    start = ch.played.index("vm-first")
    # 2 restarts the message from its beginning
    assert ch.played[start + 2 + len(ENVELOPE):start + 4 + len(ENVELOPE)] == [
        "audio:4.0s", "audio:4.0s"]
