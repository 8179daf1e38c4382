"""Mailbox options (main menu key 0, reference §5.7) and the new-user set-up (§5.3).

::

    1 record the unavailable greeting   2 record the busy greeting   3 record your name
    4 temporary greeting (record; or 1 re-record, 2 remove)          5 change the password
    * back to the main menu

Greetings are recorded with the owner's review menu and ``maxgreet``, and stored through the
Store as greeting messages (``build_greeting``), which the IMAP back end keys by mailbox *and*
context (§6 #22). A new password is checked against ``minpassword`` and the site's
``externpasscheck`` (``imapvm.storage.passwords``), then handed to the server's
``Session.save_password`` to persist (``externpass``/``externpassnotify`` run there), and
remembered for this process once saved. A password that could not be saved is not announced as
changed: the caller hears ``vm-invalid-password`` and may try again.
"""

from __future__ import annotations

import asyncio
import logging

from imapvm.audio.core import Audio as AudioValue
from imapvm.channel import Channel, ChannelHangup
from imapvm.ivr.keys import ANY, Menu, Next, menu_key, pressed, read_string, say
from imapvm.ivr.mailbox import MailboxView
from imapvm.ivr.record import RecordSettings, record_with_review
from imapvm.message import build_greeting
from imapvm.storage.base import GreetingKind, StoreError
from imapvm.storage.passwords import PasswordError, check_new_password

log = logging.getLogger(__name__)

MENU_WAIT = 6.0
GREETING_PROMPTS = {
    GreetingKind.UNAVAIL: "vm-rec-unv",
    GreetingKind.BUSY: "vm-rec-busy",
    GreetingKind.NAME: "vm-rec-name",
    GreetingKind.TEMP: "vm-rec-temp",
}


async def record_greeting(channel: Channel, view: MailboxView, kind: GreetingKind) -> Next:
    """Record one greeting with review; stored only when the owner accepts it. Returns
    `Menu.DONE` when the owner let the review menu time out (which leaves the options menu)."""
    s = view.settings
    rs = RecordSettings(max_seconds=s.maxgreet, max_silence=s.maxsilence,
                        silence_threshold=s.silencethreshold, review=True,
                        operator=s.operator, leaveurgent=False)
    take = await record_with_review(channel, rs, caller=False,
                                    instruction=GREETING_PROMPTS[kind])
    if take.outcome == "hangup":
        raise ChannelHangup("hung up while recording a greeting")
    if take.outcome != "accepted" or take.audio is None:
        return Menu.DONE
    # A greeting recorded on a G.722 call keeps its 16 kHz where the format can hold it.
    audio = (AudioValue(take.wide, 16000) if take.wide is not None and len(take.wide)
             else AudioValue(take.audio))
    built = await asyncio.to_thread(build_greeting, kind.value,
                                    view.session.email_settings(view.box), audio)
    await view.session.store.put_greeting(view.box, kind, built.raw)
    return Menu.REPEAT


async def _has_greeting(view: MailboxView, kind: GreetingKind) -> bool:
    try:
        return await view.session.store.get_greeting(view.box, kind) is not None
    except StoreError:
        return False


async def mailbox_options(channel: Channel, view: MailboxView) -> Next:
    retries = 0
    cmd: Next = Menu.REPEAT
    while cmd is not Menu.DONE:
        if isinstance(cmd, str):
            retries = 0
        if cmd == "1":
            cmd = await record_greeting(channel, view, GreetingKind.UNAVAIL)
        elif cmd == "2":
            cmd = await record_greeting(channel, view, GreetingKind.BUSY)
        elif cmd == "3":
            cmd = await record_greeting(channel, view, GreetingKind.NAME)
        elif cmd == "4":
            cmd = await temp_greeting(channel, view)
        elif cmd == "5":
            cmd = await change_password(channel, view)
        elif cmd == "*":
            cmd = Menu.DONE
        else:
            prompts = ["vm-tmpexists"] if await _has_greeting(view, GreetingKind.TEMP) else []
            cmd = pressed(await menu_key(channel, [*prompts, "vm-options"], MENU_WAIT))
            if cmd is Menu.REPEAT:
                retries += 1
                if retries > 3:
                    cmd = Menu.DONE
    return Menu.REPEAT


async def temp_greeting(channel: Channel, view: MailboxView) -> Next:
    """0-4: record one when there is none; else 1 re-record, 2 remove, * back."""
    retries = 0
    cmd: Next = Menu.REPEAT
    while cmd is not Menu.DONE:
        if isinstance(cmd, str):
            retries = 0
        if not await _has_greeting(view, GreetingKind.TEMP):
            await record_greeting(channel, view, GreetingKind.TEMP)
            cmd = Menu.DONE
        elif cmd == "1":
            cmd = await record_greeting(channel, view, GreetingKind.TEMP)
        elif cmd == "2":
            await view.session.store.delete_greeting(view.box, GreetingKind.TEMP)
            await channel.play("vm-tempremoved")
            cmd = Menu.DONE
        elif cmd == "*":
            cmd = Menu.DONE
        else:
            cmd = pressed(await menu_key(channel, ["vm-tempgreeting2"], MENU_WAIT))
            if cmd is Menu.REPEAT:
                retries += 1
                if retries > 3:
                    cmd = Menu.DONE
    return Menu.REPEAT


async def _valid_password(view: MailboxView, password: str) -> bool:
    session = view.session
    return await check_new_password(session.config, view.settings, session.password(view.box),
                                    password)


async def _save_password(view: MailboxView, password: str) -> bool:
    """Persist the new password; False (logged) when it could not be."""
    session = view.session
    if session.save_password is not None:
        try:
            await session.save_password(view.box, password)
        except (PasswordError, OSError) as exc:
            log.error("%s: the new password was not saved: %s", view.box, exc)
            return False
    else:
        log.warning("%s: password changed for this process only (no save_password)", view.box)
    session.passwords[view.box] = password
    return True


async def change_password(channel: Channel, view: MailboxView) -> Next:
    """0-5: new password twice; refused for a locked (``-``) password."""
    if view.settings.password_locked:
        return pressed(await channel.play("vm-no", ANY))
    first = await read_string(channel, ["vm-newpassword"])
    if not await _valid_password(view, first):
        return pressed(await say(channel, ["vm-invalid-password", "vm-pls-try-again"]))
    second = await read_string(channel, ["vm-reenterpassword"])
    if first != second:
        return pressed(await say(channel, ["vm-mismatch", "vm-pls-try-again"]))
    if not await _save_password(view, first):
        return pressed(await say(channel, ["vm-invalid-password", "vm-pls-try-again"]))
    return pressed(await channel.play("vm-passchanged", ANY))


async def new_user_setup(channel: Channel, view: MailboxView) -> Next:
    """A new user (password = mailbox, with forcename/forcegreetings) records what is missing,
    then must choose a password; the password comes last so that hanging up early means being
    treated as new again next time. `Menu.DONE` when the owner gave up (the call says goodbye).
    """
    s = view.settings
    wanted = []
    if s.forcename:
        wanted.append(GreetingKind.NAME)
    if s.forcegreetings:
        wanted += [GreetingKind.UNAVAIL, GreetingKind.BUSY]
    for kind in wanted:
        if (not await _has_greeting(view, kind)
                and await record_greeting(channel, view, kind) is Menu.DONE):
            return Menu.DONE
    for _ in range(3):
        first = await read_string(channel, ["vm-newpassword"])
        if not first:
            return Menu.DONE
        if not await _valid_password(view, first):
            await channel.play("vm-invalid-password")
            continue
        second = await read_string(channel, ["vm-reenterpassword"])
        if not second:
            return Menu.DONE
        if first == second:
            if not await _save_password(view, first):
                await channel.play("vm-invalid-password")
                continue
            await channel.play("vm-passchanged")
            return Menu.REPEAT
        await channel.play("vm-mismatch")
    await channel.hangup()
    raise ChannelHangup("no valid new password in three tries")
