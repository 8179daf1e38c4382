"""Leave a message, key for key and prompt for prompt (reference §4.2, §5.1, §5.2)."""

from __future__ import annotations

from imapvm.channel import CallTarget
from imapvm.ivr.leave import LeaveOptions, leave_message
from imapvm.storage.base import Folder, GreetingKind, StoreUnavailable
from tests.ivr.conftest import BOB, BOX, WorldFactory
from tests.ivr.scripted import Hangup, Press, Rec, ScriptedChannel, Wait

INVENTED_UNAVAIL = ["vm-theperson", "digits/1", "digits/2", "digits/3", "digits/4",
                    "vm-isunavail"]


async def test_plain_message_with_invented_greeting(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel([Rec(5)])
    result = await leave_message(ch, w.session)
    assert ch.played == [*INVENTED_UNAVAIL, "vm-intro", "beep", "vm-goodbye"]
    assert result.status == "SUCCESS"
    assert ch.hung_up
    assert ch.answered
    await w.settle()
    [msg] = await w.store.list(BOX, Folder.INBOX)
    assert msg.caller_id == ("Alice Caller", "5551234")
    assert msg.duration == 5
    assert msg.orig_time == int(w.session.clock())


async def test_goodbye_only_once_the_message_is_durable(make_world: WorldFactory) -> None:
    w = await make_world()
    w.outbox.stop()  # nothing is delivered: the message must already be in the outbox
    await w.outbox.flush(0.1)
    seen: list[int] = []

    class Watching(ScriptedChannel):
        async def play(self, audio, interrupt_digits=""):  # type: ignore[no-untyped-def]
            if audio == "vm-goodbye":
                seen.append(w.outbox.depth())
            return await super().play(audio, interrupt_digits)

    await leave_message(Watching([Rec(2)]), w.session)
    assert seen == [1]


async def test_busy_greeting_and_temp_overrides_it(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_greeting(GreetingKind.BUSY, seconds=1.5)
    ch = ScriptedChannel([Rec(2)], target=CallTarget("deposit", "1234", "busy"))
    await leave_message(ch, w.session)
    assert ch.played == ["audio:1.5s", "vm-intro", "beep", "vm-goodbye"]

    await w.add_greeting(GreetingKind.TEMP, seconds=2.5)
    ch = ScriptedChannel([Rec(2)], target=CallTarget("deposit", "1234", "busy"))
    await leave_message(ch, w.session)
    assert ch.played == ["audio:2.5s", "vm-intro", "beep", "vm-goodbye"]


async def test_recorded_name_in_invented_busy_greeting(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_greeting(GreetingKind.NAME, seconds=1.0)
    ch = ScriptedChannel([Rec(2)], target=CallTarget("deposit", "1234", "busy"))
    await leave_message(ch, w.session)
    assert ch.played == ["audio:1.0s", "vm-isonphone", "vm-intro", "beep", "vm-goodbye"]


async def test_pound_skips_the_instructions(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel(["#", Rec(2)])
    await leave_message(ch, w.session)
    assert ch.played == ["vm-theperson", "beep", "vm-goodbye"]


async def test_skip_option_s(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel([Rec(2)])
    await leave_message(ch, w.session, options=LeaveOptions(skip_instructions=True, beep=None))
    assert ch.played == [*INVENTED_UNAVAIL, "vm-goodbye"]


async def test_zero_goes_to_the_operator_and_star_to_a(make_world: WorldFactory) -> None:
    w = await make_world(alice="operator=yes", exits=True)
    ch = ScriptedChannel([Press("0", after="vm-isunavail")])
    result = await leave_message(ch, w.session)
    assert ch.played == [*INVENTED_UNAVAIL, "vm-intro", "transfer"]
    assert result.status == "USEREXIT"
    assert result.exit is not None
    assert result.exit.kind == "operator"
    assert ch.transfers == ["sip:o@default"]

    ch = ScriptedChannel(["*"])
    result = await leave_message(ch, w.session)
    assert ch.played == ["vm-theperson"]
    assert ch.transfers == ["sip:a@default"]
    await w.settle()
    assert (await w.store.counts(BOX)).new == 0


async def test_zero_does_nothing_without_operator(make_world: WorldFactory) -> None:
    w = await make_world(exits=True)  # operator=no: 0 is not an exit key
    ch = ScriptedChannel([Press("0", during="vm-intro"), Rec(2)])
    await leave_message(ch, w.session)
    assert ch.played == [*INVENTED_UNAVAIL, "vm-intro", "beep", "vm-goodbye"]
    assert ch.record_calls[0].terminators == "#"


async def test_review_menu_urgent_listen_rerecord_accept(make_world: WorldFactory) -> None:
    w = await make_world(alice="review=yes")
    ch = ScriptedChannel(["#", Rec(3), "2", Press("4", after="vm-review-urgent"), "3", Rec(4),
                          "1"])
    result = await leave_message(ch, w.session)
    assert ch.played == [
        "vm-theperson", "beep",
        "vm-review",  # pressed 2 during it
        "audio:3.0s",
        "vm-review", "vm-review-urgent",  # heard in full, then 4
        "vm-marked-urgent",
        "vm-review",  # 3
        "vm-intro", "beep",
        "vm-review",  # 1
        "vm-msgsaved", "vm-goodbye",
    ]
    assert result.urgent
    await w.settle()
    [msg] = await w.store.list(BOX, Folder.URGENT)
    assert msg.duration == 4


async def test_review_prompts_in_full_then_timeouts_keep_the_message(
        make_world: WorldFactory) -> None:
    w = await make_world(alice="review=yes|operator=yes", exits=True)
    ch = ScriptedChannel([Rec(2), Wait(), Wait(), Wait(), Wait()])
    await leave_message(ch, w.session, options=LeaveOptions(skip_instructions=True))
    menu = ["vm-review", "vm-review-urgent", "vm-reachoper"]
    assert ch.played == [*INVENTED_UNAVAIL, "beep", *menu * 4, "vm-goodbye"]
    await w.settle()
    assert (await w.store.counts(BOX)).new == 1


async def test_operator_during_recording_saves_then_transfers(make_world: WorldFactory) -> None:
    w = await make_world(alice="operator=yes", exits=True)
    ch = ScriptedChannel(["#", Rec(3, reason="0"), "4"])
    result = await leave_message(ch, w.session)
    assert ch.played == ["vm-theperson", "beep", "vm-saveoper", "vm-marked-urgent",
                         "vm-msgsaved", "transfer"]
    assert ch.record_calls[0].terminators == "#0"
    assert ch.transfers == ["sip:o@default"]
    assert result.status == "USEREXIT"
    await w.settle()
    assert (await w.store.counts(BOX)).urgent == 1


async def test_under_minsecs_is_discarded(make_world: WorldFactory) -> None:
    w = await make_world(alice="minsecs=3")
    ch = ScriptedChannel(["#", Rec(2)])
    result = await leave_message(ch, w.session)
    assert result.status == "FAILED"
    await w.settle()
    assert (await w.store.counts(BOX)).new == 0


async def test_mailbox_full(make_world: WorldFactory) -> None:
    w = await make_world(alice="maxmsg=1")
    await w.add_message()
    ch = ScriptedChannel(["#"])
    result = await leave_message(ch, w.session)
    assert ch.played == ["vm-theperson", "vm-mailboxfull"]
    assert result.status == "FAILED"
    assert ch.record_calls == []


async def test_hanging_up_keeps_the_message(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel(["#", Rec(4, reason="hangup")])
    result = await leave_message(ch, w.session)
    assert ch.played == ["vm-theperson", "beep"]
    assert result.status == "SUCCESS"
    await w.settle()
    assert (await w.store.counts(BOX)).new == 1


async def test_hangup_during_greeting_leaves_nothing(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel([Hangup()])
    result = await leave_message(ch, w.session)
    assert result.status == "FAILED"
    await w.settle()
    assert (await w.store.counts(BOX)).new == 0


async def test_limits_reach_the_recorder(make_world: WorldFactory) -> None:
    w = await make_world(general="maxsilence=4\nsilencethreshold=200", alice="maxsecs=30")
    ch = ScriptedChannel(["#", Rec(40)])
    await leave_message(ch, w.session)
    call = ch.record_calls[0]
    assert (call.max_seconds, call.silence_seconds, call.silence_threshold) == (30, 4, 200)
    await w.settle()
    [msg] = await w.store.list(BOX, Folder.INBOX)
    assert msg.duration == 30


async def test_several_recipients_each_get_their_own_message(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel(["#", Rec(3)])
    result = await leave_message(ch, w.session, [BOX, BOB])
    assert set(result.deposits) == {BOX, BOB}
    await w.settle()
    [a] = await w.store.list(BOX, Folder.INBOX)
    [b] = await w.store.list(BOB, Folder.INBOX)
    assert a.header("x-asterisk-vm-extension") == "1234"
    assert b.header("x-asterisk-vm-extension") == "5678"
    assert a.caller_id == b.caller_id == ("Alice Caller", "5551234")


async def test_urgent_option_and_no_greeting(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel([Rec(2)])
    await leave_message(ch, w.session, options=LeaveOptions(greeting=None, urgent=True))
    assert ch.played == ["vm-intro", "beep", "vm-goodbye"]
    await w.settle()
    assert (await w.store.counts(BOX)).urgent == 1


async def test_unknown_mailbox_is_asked_for(make_world: WorldFactory) -> None:
    w = await make_world()
    ch = ScriptedChannel(["5678#", "#", Rec(2)], target=CallTarget("deposit", None))
    await leave_message(ch, w.session)
    assert ch.played[:2] == ["vm-whichbox", "vm-theperson"]
    await w.settle()
    assert (await w.store.counts(BOB)).new == 1


async def test_greetings_only_mailbox(make_world: WorldFactory) -> None:
    w = await make_world(alice="maxmsg=0")
    ch = ScriptedChannel([])
    result = await leave_message(ch, w.session)
    assert ch.played == INVENTED_UNAVAIL
    assert result.status == "SUCCESS"
    assert ch.record_calls == []


async def test_store_down_still_takes_the_message(make_world: WorldFactory) -> None:
    """Greeting and quota unknown: the caller still leaves a message, kept in the outbox."""
    w = await make_world()
    w.outbox.stop()
    await w.outbox.flush(0.1)

    class Down:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            async def fail(*args: object, **kwargs: object) -> None:
                raise StoreUnavailable("IMAP server unreachable")
            return fail

    w.session.store = Down()  # type: ignore[assignment]
    ch = ScriptedChannel([Rec(3)])
    result = await leave_message(ch, w.session)
    assert ch.played == [*INVENTED_UNAVAIL, "vm-intro", "beep", "vm-goodbye"]
    assert result.status == "SUCCESS"
    assert w.outbox.depth() == 1


async def test_handle_call_routes_by_purpose(make_world: WorldFactory) -> None:
    from imapvm.ivr import LeaveResult, MainResult, handle_call

    w = await make_world()
    deposit = ScriptedChannel(["#", Rec(2)])
    assert isinstance(await handle_call(deposit, w.session), LeaveResult)
    await w.settle()
    check = ScriptedChannel(["4321#", Press("#", after="vm-message")],
                            target=CallTarget("check", "1234"))
    assert isinstance(await handle_call(check, w.session), MainResult)
    assert check.played[:5] == ["vm-password", "vm-youhave", "digits/1", "vm-INBOX",
                                "vm-message"]


async def test_temp_greeting_plays_even_without_b_or_u(make_world: WorldFactory) -> None:
    w = await make_world()
    await w.add_greeting(GreetingKind.TEMP, seconds=1.0)
    ch = ScriptedChannel([Rec(2)])
    await leave_message(ch, w.session, options=LeaveOptions(greeting=None))
    assert ch.played == ["audio:1.0s", "vm-intro", "beep", "vm-goodbye"]


async def test_change_hook_hears_of_deposits_and_sessions(make_world: WorldFactory) -> None:
    w = await make_world()
    changed: list[str] = []

    async def hook(box: object) -> None:
        changed.append(str(box))

    w.session.changed = hook
    await leave_message(ScriptedChannel(["#", Rec(2)]), w.session, [BOX, BOB])
    await w.settle()
    check = ScriptedChannel(["4321#", "#"], target=CallTarget("check", "1234"))
    from imapvm.ivr import voicemail_main

    await voicemail_main(check, w.session)
    assert changed == ["1234@default", "5678@default", "1234@default"]
