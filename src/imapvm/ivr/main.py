"""Check messages: Asterisk's ``VoiceMailMain()`` (reference §5.3-§5.8).

Login, the intro with the counts, then the main menu::

    1 first message   5 repeat    4 previous   6 next    7 delete/undelete
    8 forward         9 save      2 change folder        3 advanced options
    0 mailbox options * help      # exit

Each key's branch below reads as Asterisk's menu behaves: what it says, where it goes when
there is no previous or next message (urgent messages first, then new ones, ``messagewrap``),
``nextaftercmd`` after delete and save. Differences from Asterisk IMAP, all deliberate fixes of
reference §6: save is a real move (#17), playback marks heard explicitly and nothing else does
(#18), deletes remove exactly the marked messages (#2), forwards keep the caller (#24).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from imapvm.audio import language
from imapvm.channel import Channel, ChannelHangup
from imapvm.ivr import lang
from imapvm.ivr import say as speech
from imapvm.ivr.keys import ANY, Menu, Next, menu_key, pressed, read_string, say
from imapvm.ivr.mailbox import (
    MailboxView,
    caller_prompts,
    category_prompts,
    envelope_prompts,
    play_message,
)
from imapvm.ivr.session import Exit, Session
from imapvm.storage.base import Folder, GreetingKind, MailboxFull, MailboxRef, StoreError

log = logging.getLogger(__name__)

MENU_WAIT = 6.0
FOLDER_WAIT = 4.0


@dataclass(frozen=True)
class MainOptions:
    """``VoiceMailMain()`` options: ``s`` (skip the password; only with a known mailbox, for
    trusted identities), ``p`` (prefix), ``r`` (read-only: no deleting), ``a`` (autoplay)."""

    skip_password: bool = False
    prefix: str = ""
    read_only: bool = False
    #: ``a(folder)``: skip the intro and play this folder at once (urgent messages first).
    autoplay: Folder | None = None


@dataclass
class MainResult:
    mailbox: MailboxRef | None
    exit: Exit | None = None


class MenuExit(Exception):
    """Leave the menus for another destination (callback, outdial, operator from a reply)."""

    def __init__(self, exit_: Exit, farewell: str | None) -> None:
        super().__init__(exit_.kind)
        self.exit = exit_
        self.farewell = farewell


async def voicemail_main(
    channel: Channel,
    session: Session,
    mailbox: str | None = None,
    context: str | None = None,
    options: MainOptions | None = None,
    *,
    hangup: bool = True,
) -> MainResult:
    """Run VoiceMailMain. ``mailbox`` skips the mailbox prompt (the caller's own mailbox when
    the front end knows it: ``channel.target.mailbox`` of a "check" call is used by default)."""
    options = options or MainOptions()
    if mailbox is None and channel.target.purpose == "check":
        # The caller's own number is only a hint: a phone whose number is no mailbox is asked
        # for one, rather than for the password of a mailbox that does not exist.
        own = channel.target.mailbox
        mailbox = own if own and session.find(own, context) else None
    result = MainResult(None)
    language.set_current(session.call_language(channel.target.language))
    try:
        await channel.answer()
        login = await _login(channel, session, mailbox, context, options)
        if isinstance(login, Exit):
            result.exit = login
        elif login is not None:
            result.mailbox = login
            result.exit = await _session(channel, session, login, options)
    except ChannelHangup:
        return result
    except StoreError as exc:  # the store is down: nothing sensible can be offered
        log.error("VoiceMailMain for %s: %s", result.mailbox, exc)
        try:
            await channel.play("vm-sorry")
        except ChannelHangup:
            return result
    if result.exit is not None:
        target = session.exit_target(result.exit)
        if target is not None and await channel.transfer(target):
            return result
    if hangup:
        await channel.hangup()
    return result


# -- login --------------------------------------------------------------------------------
async def _login(channel: Channel, session: Session, given: str | None, context: str | None,
                 options: MainOptions) -> MailboxRef | Exit | None:
    """Mailbox and password, ``maxlogins`` tries (Asterisk's vm_authenticate)."""
    star = Exit("star", "a", context or "default")
    skipuser = bool(given)
    if skipuser and options.skip_password:
        return session.find(given or "", context)
    maxlogins = max(1, session.config.general.number("maxlogins"))
    prompts = [] if skipuser else ["vm-login"]
    for attempt in range(1, maxlogins + 1):
        if skipuser:
            number = given or ""
        else:
            number = await read_string(channel, prompts)
            prompts = []
            if not number:
                number = channel.caller.number or ""
                if not number:
                    return None
            elif number.startswith("*") and session.exit_target(star):
                return star
            number = options.prefix + number
        box = session.find(number, context)
        password = ""
        expected = session.password(box) if box else None
        lockouts = session.lockouts
        source = channel.caller.address or ""  # the SIP peer: usually the PBX, so logged only
        # counted per caller (as the PBX asserts it), never per PBX address: that would lock
        # every caller out by phone after a few strangers' failures
        caller = f"caller:{channel.caller.number}" if channel.caller.number else ""
        if lockouts is not None and box is not None:
            await lockouts.refresh(box)  # what the other nodes counted
        waiting = lockouts.wait(box, caller) if lockouts is not None else 0.0
        if box is None or expected:
            password = await read_string(channel, ["vm-password"])
            if password.startswith("*") and session.exit_target(star):
                return star
        if waiting > 0:
            # Locked or backing off: refused whatever was typed, and not counted again.
            log.warning("auth refused (locked): source=%s user=%s via=phone wait=%d",
                        source or "-", box or "unknown", int(waiting) + 1)
        elif box is not None and password == expected:
            if lockouts is not None:
                await lockouts.success(box)
            return box
        elif lockouts is not None:
            await lockouts.failure(box, source, "phone", counted_as=caller)
        else:
            # The typed number is shown only when it names a mailbox: a PIN typed into the
            # mailbox prompt by mistake must not end up in the log.
            log.info("login failed for mailbox %s", box or f"(unknown, {len(number)} digits)")
        if skipuser or attempt >= maxlogins:
            await channel.play("vm-incorrect")
        else:
            await channel.play("vm-incorrect-mailbox")
    await channel.play("vm-goodbye")
    return None


# -- the session --------------------------------------------------------------------------
async def _session(channel: Channel, session: Session, box: MailboxRef,
                   options: MainOptions) -> Exit | None:
    from imapvm.ivr.options import mailbox_options, new_user_setup

    view = MailboxView(session, box, session.settings(box))
    if view.settings.language:  # as Asterisk: the mailbox's language wins once logged in
        language.set_current(view.settings.language)
    await view.count()
    if view.urgent:
        await view.open(Folder.URGENT)
    elif view.new:
        await view.open(Folder.INBOX)
    elif view.old:
        await view.open(Folder.OLD)
    else:
        await view.open(Folder.URGENT)  # as Asterisk: an empty mailbox starts in Urgent
    try:
        s = view.settings
        cmd: Next = Menu.REPEAT
        if session.password(box) == box.mailbox and (s.forcename or s.forcegreetings):
            await channel.play("vm-newuser")
            cmd = await new_user_setup(channel, view)
        if cmd is not Menu.DONE:
            await _quota_warnings(channel, view)
            if options.autoplay is not None:
                cmd = await _autoplay(channel, view, options.autoplay)
            else:
                cmd = await _intro(channel, view)
        view.answered()
        view.restart_menu()
        while cmd is not Menu.DONE and cmd != "#":
            if cmd in ("1", "5"):
                if cmd == "1" or view.cur < 0:
                    view.go_to(0)
                cmd = await _browse(channel, view)
            elif cmd == "2":
                cmd = await _change_folder(channel, view)
            elif cmd == "3":
                cmd = await _advanced(channel, view)
            elif cmd == "4":
                cmd = await _previous(channel, view)
            elif cmd == "6":
                cmd = await _next(channel, view, wrap=True)
            elif cmd == "7":
                cmd = await _delete(channel, view, options)
            elif cmd == "8":
                cmd = await _forward(channel, view)
            elif cmd == "9":
                cmd = await _save(channel, view)
            elif cmd == "*":
                cmd = await _help(channel, view)
            elif cmd == "0":
                cmd = await mailbox_options(channel, view)
                view.restart_menu()
            else:
                cmd = await _instructions(channel, view, skip_advanced=False)
        await channel.play("vm-goodbye")
        return None
    except MenuExit as leave:
        if leave.farewell:
            await channel.play(leave.farewell)
        return leave.exit
    finally:
        await view.close()
        await session.notify_changed(box)


async def _quota_warnings(channel: Channel, view: MailboxView) -> None:
    """Asterisk warns the owner, once per limit, and carries on."""
    try:
        quota = await view.session.store.quota(view.box)
    except StoreError:
        return
    if quota.storage_limit is not None and quota.storage_used is not None \
            and quota.storage_used >= quota.storage_limit:
        await channel.play("vm-mailboxfull", ANY)
    if view.settings.maxmsg and view.new + view.old >= view.settings.maxmsg:
        await channel.play("vm-mailboxfull", ANY)


async def _autoplay(channel: Channel, view: MailboxView, folder: Folder) -> Next:
    """``a(folder)``: straight to the first message (of Urgent when there are urgent ones);
    an empty folder is announced and the call ends."""
    await view.open(Folder.URGENT if view.urgent else folder)
    if view.last == -1:
        await _browse(channel, view)
        return Menu.DONE
    return "1"


async def _intro(channel: Channel, view: MailboxView) -> Next:
    """``vm-youhave`` and the counts: "you have 1 urgent and 2 new and 3 old messages"."""
    prompts: list[str] = []
    if view.settings.tempgreetwarn:
        from imapvm.ivr.leave import load_greeting

        if await load_greeting(view.session, view.box, GreetingKind.TEMP) is not None:
            prompts.append("vm-tempgreetactive")
    prompts += lang.current().intro(view.urgent, view.new, view.old)
    return pressed(await say(channel, prompts))


# -- main menu branches -------------------------------------------------------------------
async def _browse(channel: Channel, view: MailboxView) -> Next:
    if view.last > -1:
        return pressed(await play_message(channel, view))
    return pressed(await say(channel, lang.current().empty_folder(f"vm-{view.folder.title}")))


async def _previous(channel: Channel, view: MailboxView) -> Next:
    if view.cur > 0:
        view.go_to(view.cur - 1)
        return pressed(await play_message(channel, view))
    if not view.in_urgent and view.urgent > 0:
        await view.open(Folder.URGENT)
        if view.last < 0:
            return pressed(await channel.play("vm-nomore", ANY))
        view.go_to(view.last)
        return pressed(await play_message(channel, view))
    if view.settings.messagewrap and view.last > 0:
        view.go_to(view.last)
        return pressed(await play_message(channel, view))
    return pressed(await channel.play("vm-nomore", ANY))


async def _next(channel: Channel, view: MailboxView, *, wrap: bool) -> Next:
    """Key 6, and the advance after 7/9 with nextaftercmd (which does not wrap)."""
    if view.cur < view.last:
        view.go_to(view.cur + 1)
        return pressed(await play_message(channel, view))
    if view.in_urgent and view.new > 0:
        await view.open(Folder.INBOX)
        if view.last < 0:
            return pressed(await channel.play("vm-nomore", ANY))
        return pressed(await play_message(channel, view))
    if wrap and view.settings.messagewrap and view.last > 0:
        view.go_to(0)
        return pressed(await play_message(channel, view))
    return pressed(await channel.play("vm-nomore", ANY))


async def _delete(channel: Channel, view: MailboxView, options: MainOptions) -> Next:
    if options.read_only or view.current is None:
        return Menu.REPEAT
    deleted = view.toggle_delete()
    cmd: Next = pressed(await channel.play("vm-deleted" if deleted else "vm-undeleted", ANY))
    if view.settings.nextaftercmd:
        cmd = await _next(channel, view, wrap=False)
    return cmd


async def _save(channel: Channel, view: MailboxView) -> Next:
    """Key 9: choose a folder and move the message there (a real move, §6 #17)."""
    entry = view.current
    if entry is None:
        return Menu.REPEAT
    key = await choose_folder(channel, "vm-savefolder", start=1)
    if key == "#":
        return Menu.REPEAT
    folder = Folder(int(key))
    try:
        view.moved(entry, await view.session.store.save_to_folder(view.box, entry.ref, folder))
        prompts = lang.current().saved_to(view.cur + 1, f"vm-{folder.title}")
    except (MailboxFull, StoreError) as exc:
        log.warning("%s: save to %s failed: %s", view.box, folder.title, exc)
        prompts = ["vm-mailboxfull"]
    cmd: Next = pressed(await say(channel, prompts))
    if view.settings.nextaftercmd:
        cmd = await _next(channel, view, wrap=False)
    return cmd


async def _change_folder(channel: Channel, view: MailboxView) -> Next:
    key = await choose_folder(channel, "vm-changeto", start=0)
    if key != "#":
        await view.open(Folder(int(key)))
    cmd = pressed(await say(channel, view.folder_name()))
    view.restart_menu()
    view.go_to(0)
    return cmd


async def choose_folder(channel: Channel, prompt: str, start: int) -> str:
    """A folder digit 0-9, or ``#`` (cancel; also after four rounds without an answer)."""
    for _ in range(4):
        key = await say(channel, [prompt])
        if key is None:
            prompts = ["vm-press"]
            for x in range(start, 5):
                f = Folder(x)
                prompts += lang.current().folder_choice(x, f"vm-{f.title}")
            prompts.append("vm-tocancel")
            key = await menu_key(channel, prompts, FOLDER_WAIT)
        if key and (key.isdigit() or key == "#"):
            return key
    return "#"


async def _forward(channel: Channel, view: MailboxView) -> Next:
    from imapvm.ivr.forward import forward_message

    if view.last > -1 and view.current is not None:
        return await forward_message(channel, view)
    if view.in_urgent and view.new > 0:
        await view.open(Folder.INBOX)
        if view.last < 0:
            return pressed(await channel.play("vm-nomore", ANY))
        return Menu.REPEAT
    return pressed(await channel.play("vm-nomore", ANY))


async def _help(channel: Channel, view: MailboxView) -> Next:
    if view.starting:
        return Menu.REPEAT
    key = await say(channel, ["vm-onefor", *view.folder_name(), "vm-opts"])
    return key or await _instructions(channel, view, skip_advanced=True)


async def _instructions(channel: Channel, view: MailboxView, *, skip_advanced: bool) -> Next:
    """The menu read to the owner, then a 6 s wait; three silences in a row end the call."""
    while True:
        prompts: list[str] = []
        if view.starting:
            if view.last > -1:
                prompts += ["vm-onefor-full" if skip_advanced else "vm-onefor",
                            *view.folder_name()]
            prompts.append("vm-opts-full" if skip_advanced else "vm-opts")
        else:
            if skip_advanced:
                prompts += ["vm-onefor-full", *view.folder_name(), "vm-opts-full"]
            wrap = view.settings.messagewrap and view.last > 0
            if view.cur != 0 or (not view.in_urgent and view.urgent > 0) or wrap:
                prompts.append("vm-prev")
            if not skip_advanced:
                prompts.append("vm-advopts")
            prompts.append("vm-repeat")
            if view.cur != view.last or (view.in_urgent and view.new > 0) or wrap:
                prompts.append("vm-next")
            entry = view.current
            prompts.append("vm-undelete" if entry is not None and entry.deleted else "vm-delete")
            prompts += ["vm-toforward", "vm-savemessage"]
        prompts.append("vm-helpexit")
        key = await menu_key(channel, prompts, MENU_WAIT)
        if key:
            return key
        if view.silence() > 2:
            return Menu.DONE


# -- advanced options (key 3) -------------------------------------------------------------
async def _advanced(channel: Channel, view: MailboxView) -> Next:
    s = view.settings
    view.answered()
    cmd: Next = Menu.REPEAT
    while cmd is not Menu.DONE and cmd != "#":
        has_message = view.last > -1 and not view.starting and view.current is not None
        if cmd == "1":
            if has_message:
                await _reply(channel, view)
            else:
                await channel.play("vm-sorry", ANY)
            cmd = Menu.DONE
        elif cmd == "2":
            if s.callback and has_message:
                await _callback(channel, view)
            else:
                await channel.play("vm-sorry", ANY)
            cmd = Menu.DONE
        elif cmd == "3":
            if has_message:
                await _envelope(channel, view)
            else:
                await channel.play("vm-sorry", ANY)
            cmd = Menu.DONE
        elif cmd == "4":
            if s.dialout:
                await _outdial(channel, view)
            else:
                await channel.play("vm-sorry", ANY)
            cmd = Menu.DONE
        elif cmd == "5":
            if s.sendvoicemail:
                from imapvm.ivr.forward import send_new_message

                await send_new_message(channel, view)
            else:
                await channel.play("vm-sorry", ANY)
            cmd = Menu.DONE
        elif cmd == "*":
            cmd = Menu.DONE
        else:
            prompts: list[str] = []
            if not view.starting:
                prompts.append("vm-toreply")
                if s.callback:
                    prompts.append("vm-tocallback")
                prompts.append("vm-tohearenv")
            if s.dialout:
                prompts.append("vm-tomakecall")
            if s.sendvoicemail:
                prompts.append("vm-leavemsg")
            prompts.append("vm-starmain")
            cmd = pressed(await menu_key(channel, prompts, MENU_WAIT))
            if cmd is Menu.REPEAT and view.silence() > 3:
                cmd = Menu.DONE
    view.answered()
    return Menu.REPEAT


async def _reply(channel: Channel, view: MailboxView) -> None:
    """3-1: leave a message in the mailbox whose number is the message's caller ID."""
    from imapvm.ivr.leave import LeaveOptions, leave_message

    assert view.current is not None
    number = view.current.caller_number
    if not number:
        await channel.play("vm-nonumber", ANY)
        return
    target = view.session.find(number, view.box.context)
    if target is None or target.context.lower() != view.box.context.lower():
        await channel.play("vm-nobox", ANY)
        return
    result = await leave_message(channel, view.session, [target], LeaveOptions(greeting=None),
                                 hangup=False)
    if result.exit is not None:
        raise MenuExit(result.exit, None)


async def _envelope(channel: Channel, view: MailboxView) -> None:
    assert view.current is not None
    info = view.current.info
    prompts: list[object] = [*category_prompts(info),
                             *envelope_prompts(view.session, view.settings, info)]
    prompts += await caller_prompts(view.session, view.settings, info)
    for p in prompts:
        if await channel.play(p, ANY):  # type: ignore[arg-type]
            return


async def _callback(channel: Channel, view: MailboxView) -> None:
    """3-2: call the message's sender back, or another number when dialout is allowed."""
    assert view.current is not None
    s = view.settings
    number = view.current.caller_number
    if not number:
        await channel.play("vm-nonumber", ANY)
        return
    for _ in range(3):
        prompts = ["vm-num-i-have", *speech.digits(number), "vm-tocallnum"]
        if s.dialout:
            prompts.append("vm-calldiffnum")
        prompts.append("vm-star-cancel")
        key = await menu_key(channel, prompts, MENU_WAIT)
        if key == "1":
            raise MenuExit(Exit("callback", number, s.callback, view.box), "vm-dialout")
        if key == "2" and s.dialout:
            await _outdial(channel, view)
            return
        if key == "*":
            return


async def _outdial(channel: Channel, view: MailboxView) -> None:
    """3-4: enter a number and be connected to it through the dialout context."""
    s = view.settings
    for _ in range(3):
        key = await menu_key(channel, ["vm-enter-num-to-call", "vm-then-pound",
                                       "vm-star-cancel"], MENU_WAIT)
        if not key:
            continue
        if key == "*":
            return
        rest = "" if key == "#" else await channel.get_digits(79, MENU_WAIT, "#")
        destination = "" if key == "#" else key + rest
        if not destination or destination.endswith("*"):
            return
        raise MenuExit(Exit("outdial", destination, s.dialout, view.box), "vm-dialout")
