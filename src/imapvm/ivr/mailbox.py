"""The owner's mailbox during a VoiceMailMain call: the open folder and how a message is played.

``MailboxView`` is Asterisk's ``vm_state`` made explicit: the open folder's messages (listed once
when the folder opens, so "message 3" means the same message for the whole visit even if a mail
client changes things meanwhile: every reference is a UID, never a position), the current one,
the counts the menus speak from, and the delete toggles, which are applied only when the folder
is closed (folder change, exit, hang-up), as Asterisk does (reference §4.4). Deleting sends
exactly the toggled messages to the store, never a folder-wide expunge (§6 #2).

``play_message`` is Asterisk's play_message (§5.5): first/last, urgent, number, envelope,
caller, duration, then the forwarded comment and the message with the listen controls. The
message is marked heard as its playback starts, before the envelope, as Asterisk's download does
(§4.3), but explicitly rather than as a side effect of fetching (§6 #18).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from imapvm.audio.errors import AudioError
from imapvm.audio.formats import decode
from imapvm.channel import Audio, Channel
from imapvm.config.model import MailboxSettings
from imapvm.ivr import lang
from imapvm.ivr import say as speech
from imapvm.ivr.keys import ANY
from imapvm.ivr.session import Session
from imapvm.storage.base import (
    Folder,
    GreetingKind,
    MailboxRef,
    MessageGone,
    MessageRef,
    StoredMessage,
    StoreError,
)

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One message of the open folder."""

    ref: MessageRef
    info: StoredMessage
    deleted: bool = False
    heard: bool = False

    @property
    def caller_number(self) -> str:
        """The caller's number; "" when unknown (Asterisk's file spool writes ``Unknown``)."""
        number = self.info.caller_id[1]
        return "" if number.lower() == "unknown" else number

    @property
    def urgent_flag(self) -> bool:
        flag = self.info.header("x-asterisk-vm-flag")
        return flag.lower() == "urgent" if flag else self.info.urgent


@dataclass
class MailboxView:
    session: Session
    box: MailboxRef
    settings: MailboxSettings
    folder: Folder = Folder.INBOX
    entries: list[Entry] = field(default_factory=list)
    cur: int = 0
    new: int = 0
    old: int = 0
    urgent: int = 0
    in_urgent: bool = False
    starting: bool = True
    repeats: int = 0

    @property
    def last(self) -> int:
        """Asterisk's lastmsg: index of the last message, -1 when the folder is empty."""
        return len(self.entries) - 1

    @property
    def current(self) -> Entry | None:
        return self.entries[self.cur] if 0 <= self.cur < len(self.entries) else None

    async def count(self) -> None:
        c = await self.session.store.counts(self.box)
        self.new, self.old, self.urgent = c.new, c.old, c.urgent

    async def open(self, folder: Folder) -> None:
        """Open a folder (listing its messages), closing the one open before (its delete marks
        are applied first, as Asterisk's close_mailbox does when changing folders)."""
        await self.close()
        self.folder = folder
        self.in_urgent = folder is Folder.URGENT
        listed = await self.session.store.list(self.box, folder)
        self.entries = [Entry(m.ref, m) for m in listed]
        self.cur = 0

    async def close(self) -> None:
        """Apply the delete toggles of the open folder (Asterisk's close_mailbox)."""
        doomed = [e.ref for e in self.entries if e.deleted]
        if doomed:
            try:
                await self.session.store.delete(self.box, doomed)
            except MessageGone as exc:  # the others went; these were already gone (or moved)
                log.info("%s: %s", self.box, exc)
            except StoreError as exc:
                log.error("%s: could not delete %d message(s): %s", self.box, len(doomed), exc)
        for e in self.entries:
            e.deleted = False

    # -- the only ways the menus change the view (it is changed nowhere else) ---------------
    def go_to(self, index: int) -> None:
        """Make message `index` (0-based, of the open folder) the current one."""
        self.cur = index

    def restart_menu(self) -> None:
        """The next instructions are read as at the start (Asterisk's vms->starting)."""
        self.starting = True

    def silence(self) -> int:
        """The owner let a menu time out once more; returns how many times in a row."""
        self.repeats += 1
        return self.repeats

    def answered(self) -> None:
        """A key came: the count of silent menus starts again."""
        self.repeats = 0

    def moved(self, entry: Entry, ref: MessageRef) -> None:
        """`entry` was saved to another folder and is now `ref` there."""
        entry.ref = ref
        entry.deleted = False

    def folder_name(self, folder: Folder | None = None) -> list[str]:
        """How a folder is said in the call's language: ``vm-<Folder> vm-messages`` ("old
        messages") in English, ``vm-messages vm-<Folder>`` in Spanish and Italian."""
        box = f"vm-{(folder if folder is not None else self.folder).title}"
        return lang.current().folder_name(box)

    def toggle_delete(self) -> bool:
        """Key 7: flip the current message's delete mark; returns the new state."""
        entry = self.entries[self.cur]
        entry.deleted = not entry.deleted
        step = -1 if entry.deleted else 1
        if self.folder is Folder.URGENT:
            self.urgent += step
        elif self.folder is Folder.INBOX:
            self.new += step
        elif self.folder is Folder.OLD:
            self.old += step
        return entry.deleted


async def load_audio(session: Session, box: MailboxRef, ref: MessageRef
                     ) -> tuple[Audio, Audio | None]:
    """The message (and the forwarded comment, if any) as samples, without marking it heard."""
    va = await session.store.fetch_audio(box, ref)
    message = await asyncio.to_thread(decode, va.message.data, va.message.fmt)
    intro = None
    if va.intro is not None:
        intro = (await asyncio.to_thread(decode, va.intro.data, va.intro.fmt)).samples
    return message.samples, intro


_CATEGORY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")


def category_prompts(info: StoredMessage) -> list[str]:
    """The message's category (``X-Asterisk-VM-Category``, ``category=`` in the spool), said as
    Asterisk says it: by playing the sound file of that name, right after the message number
    and before the date. A name that is not a plain sound name (``..``, absolute paths, spaces)
    is not played."""
    category = info.header("x-asterisk-vm-category").strip()
    if not category:
        return []
    if not _CATEGORY.fullmatch(category) or ".." in category.split("/"):
        log.warning("category %r of %s is not a sound name; not played", category, info.ref)
        return []
    return [category]


def envelope_prompts(session: Session, settings: MailboxSettings, info: StoredMessage
                     ) -> list[str]:
    fmt = settings.zone.say_format if settings.zone else None  # None: the language's own
    tz = settings.zone.timezone if settings.zone else None
    try:
        return lang.current().date(info.orig_time, fmt, tz=tz, now=session.clock())
    except (OverflowError, OSError, ValueError) as exc:  # a time no calendar holds
        log.warning("%s: X-Asterisk-VM-Orig-time %s cannot be said (%s); the date is skipped",
                    info.ref, info.orig_time, exc)
        return []


async def caller_prompts(session: Session, settings: MailboxSettings, info: StoredMessage,
                         ) -> list[Audio | str]:
    """saycid: an internal caller by recorded name or extension, else the phone number."""
    number = Entry(info.ref, info).caller_number
    if not number:
        return ["vm-unknown-caller"]
    contexts = session.config.general["cidinternalcontexts"] or ()
    for ctx in contexts:  # type: ignore[attr-defined]
        box = session.find(number, str(ctx))
        if box is not None and box.context.lower() == str(ctx).lower():
            from imapvm.ivr.leave import load_greeting

            name = await load_greeting(session, box, GreetingKind.NAME)
            if name is not None:
                return [name]
            return ["vm-from-extension", *speech.digits(number)]
    return ["vm-from-phonenumber", *speech.digits(number)]


async def controlled_play(channel: Channel, session: Session, samples: Audio,
                          skipms: int, clock: Callable[[], float] | None = None) -> str | None:
    """Play with the listen controls (# forward, * back, 0 pause, 2 restart by default);
    a stop key (1 3 4 5 6 7 8 9) ends playback and is returned for the menu. `clock` (default:
    the event loop's) measures how far a play got before a key stopped it."""
    keys = session.config.general.listen_keys
    fwd, rev, pause, restart, stop = (keys[k] for k in
                                      ("forward", "reverse", "pause", "restart", "stop"))
    interrupts = fwd + rev + pause + restart + stop
    skip = int(skipms * 8)
    pos = 0
    clock = clock or asyncio.get_running_loop().time
    while pos < len(samples):
        # The rest of the message in one piece (no gaps on the line); where a key stopped it
        # follows from the time it played, to the RTP frame.
        rest = samples[pos:]
        started = clock()
        digit = await channel.play(rest, interrupts)
        if digit is None:
            pos = len(samples)
            continue
        pos += min(len(rest), int((clock() - started) * 8000))
        if digit in stop:
            return digit
        elif digit in fwd:
            pos += skip
        elif digit in rev:
            pos = max(0, pos - skip)
        elif digit in restart:
            pos = 0
        elif digit in pause:
            while True:
                key = await channel.get_digits(1, 60.0, terminators="")
                if key and key in pause:
                    break
                if key and key in stop:
                    return key
    return None


async def play_message(channel: Channel, view: MailboxView) -> str | None:
    """Announce and play the current message; returns the key that stopped it (or None)."""
    session, entry = view.session, view.entries[view.cur]
    settings = view.settings
    view.starting = False
    key: str | None = None
    if view.cur == 0:
        key = await channel.play("vm-first", ANY)
    elif view.cur == view.last:
        key = await channel.play("vm-last", ANY)
    try:
        samples, intro = await load_audio(session, view.box, entry.ref)
        if not entry.info.seen and not entry.heard:
            await session.store.mark_heard(view.box, entry.ref)
        entry.heard = True
    except (MessageGone, StoreError, ValueError, AudioError) as exc:
        # Skipped, not the end of the call: the envelope is said and the menu goes on, so
        # the caller can still save, delete or move past a message whose audio is damaged.
        log.warning("%s: message %s cannot be played: %s", view.box, entry.ref, exc)
        samples, intro = np.zeros(0, dtype=np.int16), None
    if key is None:
        prompts: list[Audio | str] = []
        if entry.urgent_flag:
            prompts.append("vm-Urgent")
        middle = view.cur and view.cur != view.last
        prompts += lang.current().message_number(view.cur + 1 if middle else None)
        prompts += category_prompts(entry.info)
        if settings.envelope:
            prompts += envelope_prompts(session, settings, entry.info)
        if settings.saycid:
            prompts += await caller_prompts(session, settings, entry.info)
        if settings.sayduration and entry.info.duration // 60 >= settings.saydurationm:
            prompts += lang.current().duration_minutes(entry.info.duration)
        for p in prompts:
            key = await channel.play(p, ANY)
            if key:
                break
    if key == "1":  # 1 skips the envelope straight to the message
        key = None
    if key is not None:
        return key
    if intro is not None:
        key = await controlled_play(channel, session, intro, settings.skipms)
        if key is not None:
            return key
    return await controlled_play(channel, session, samples, settings.skipms)


__all__ = ["Entry", "MailboxView", "controlled_play", "play_message"]
