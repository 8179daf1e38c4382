"""Forward a message (main menu key 8) and send a new one (advanced option 5), §4.6.

The owner types one or more mailboxes separated by ``*`` and ended by ``#``; each must exist,
must not be the owner's own (for a forward) and must have room, else ``pbx-invalid`` or
``vm-mailboxfull`` and the question again. Each recipient is confirmed by its recorded name or
its digits. Then ``vm-forwardoptions``: 1 records a comment (with review), 2 forwards as is,
``*`` cancels.

Unlike Asterisk IMAP (§6 #24) the copy keeps the original caller, time, message id and
duration (``Deposit.forward_of``); the comment travels as the intro part, which Asterisk and
imapvm play before the message, and provenance goes into X-Imapvm-Forwarded-* headers. Each
copy is built for its recipient's mailbox and goes through the outbox like any deposit.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from imapvm.audio.convert import concat
from imapvm.audio.core import Audio as AudioValue
from imapvm.audio.errors import AudioError
from imapvm.channel import Audio, Channel, ChannelHangup
from imapvm.ivr import say as speech
from imapvm.ivr.keys import Menu, Next, menu_key, pressed, read_string
from imapvm.ivr.leave import LeaveOptions, leave_message, load_greeting, next_number
from imapvm.ivr.mailbox import MailboxView, load_audio
from imapvm.ivr.record import RecordSettings, record_with_review
from imapvm.message import FLAG_URGENT, Deposit, build_voicemail, parse_message
from imapvm.storage.base import GreetingKind, MailboxRef, StoreError

log = logging.getLogger(__name__)

MENU_WAIT = 6.0


async def _has_room(view: MailboxView, box: MailboxRef) -> bool:
    try:
        return not (await view.session.store.quota(box)).full()
    except StoreError:
        return True  # the outbox will hold the copy until the store answers


async def choose_recipients(channel: Channel, view: MailboxView, *, allow_self: bool
                            ) -> list[MailboxRef]:
    """Ask for recipients until a valid list is typed (four tries); [] = given up."""
    session = view.session
    for _ in range(4):
        typed = await read_string(channel, ["vm-extension"])
        if not typed:
            continue
        chosen: list[MailboxRef] = []
        for number in typed.split("*"):
            box = session.find(number, view.box.context)
            if box is None or (box == view.box and not allow_self):
                await channel.play("pbx-invalid")
                break
            if not await _has_room(view, box):
                await channel.play("vm-mailboxfull")
                break
            chosen.append(box)
            name = await load_greeting(session, box, GreetingKind.NAME)
            for p in [name] if name is not None else speech.digits(number):
                await channel.play(p)
        else:
            if chosen:
                return chosen
    return []


async def _forward_options(channel: Channel, view: MailboxView) -> Audio | bool | None:
    """1 = record a comment (returned), 2 = none (None), * or silence = cancel (False)."""
    s = view.settings
    retries = 0
    while True:
        key = await menu_key(channel, ["vm-forwardoptions", "vm-starmain"], MENU_WAIT)
        if key == "1":
            await channel.play("vm-record-prepend")
            await channel.play("beep")
            rs = RecordSettings(max_seconds=s.maxsecs, max_silence=s.maxsilence,
                                silence_threshold=s.silencethreshold, review=True,
                                operator=False, leaveurgent=False)
            take = await record_with_review(channel, rs, caller=True, forward_intro=True)
            if take.outcome == "hangup":  # as Asterisk: no forward from a call that ended
                raise ChannelHangup("hung up while recording a forward comment")
            if take.audio is None or not len(take.audio):
                return None
            return take.audio
        if key == "2":
            return None
        if key == "*":
            return False
        if not key:
            retries += 1
            if retries > 3:
                return False


async def forward_message(channel: Channel, view: MailboxView) -> Next:
    entry = view.current
    assert entry is not None
    recipients = await choose_recipients(channel, view, allow_self=False)
    if not recipients:
        return Menu.REPEAT
    comment = await _forward_options(channel, view)
    if comment is False:
        return Menu.REPEAT
    session = view.session
    raw = await session.store.fetch(view.box, entry.ref)
    original = parse_message(raw).meta
    try:
        samples, intro = await load_audio(session, view.box, entry.ref)
    except AudioError as exc:  # nothing to forward; the menu goes on
        log.warning("%s: message %s cannot be forwarded: %s", view.box, entry.ref, exc)
        return Menu.REPEAT
    recording = AudioValue(np.asarray(samples, dtype=np.int16))
    if intro is not None:  # a forward of a forward: keep the earlier comment too
        recording = concat(AudioValue(np.asarray(intro, dtype=np.int16)), recording)
    comment_audio = None if comment is None else AudioValue(np.asarray(comment, dtype=np.int16))
    keep_urgent = bool(session.config.general.flag("forward_urgent_auto"))
    for box in recipients:
        dep = Deposit.forward_of(original, number=await next_number(session, box),
                                 by_mailbox=view.box.mailbox, by_context=view.box.context,
                                 at=int(session.clock()), keep_urgent=keep_urgent)
        built = await asyncio.to_thread(build_voicemail, dep, session.email_settings(box),
                                        recording, intro=comment_audio)
        await session.outbox.submit(box, built.raw, urgent=dep.flag == FLAG_URGENT)
        await session.notify_changed(box)
    return pressed(await channel.play("vm-msgforwarded", "0123456789*#"))


async def send_new_message(channel: Channel, view: MailboxView) -> None:
    """Advanced option 5: choose recipients, then leave them a message as a caller would."""
    recipients = await choose_recipients(channel, view, allow_self=True)
    if recipients:
        await leave_message(channel, view.session, recipients, LeaveOptions(greeting=None),
                            hangup=False)
