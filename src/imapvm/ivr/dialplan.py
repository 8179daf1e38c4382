"""What Asterisk's dialplan passes to ``VoiceMail()``, ``VoiceMailMain()`` and
``VoiceMailPlayMsg()``, read from a call's :class:`CallTarget` and run.

The front end carries the mailboxes, the contexts and the option letters as the dialplan writes
them (``Us``, ``d(sales)g(6)``; commas between options are tolerated); this module turns them into
:class:`LeaveOptions` / :class:`MainOptions` and starts the right flow. A bad option is one
logged line naming it, and the call goes on without it: the caller is never hung up on for a
PBX's typo.

Greeting of a deposit: ``b`` or ``u`` when given; else the network's cause (RFC 4458 486 busy,
other causes unavailable; Diversion/History-Info alike); else the server's ``default_greeting``
(``"unavailable"``, ``"busy"`` or ``None``: no greeting at all, as ``VoiceMail()`` without ``b``
and ``u``; a temporary greeting plays in every case, as in Asterisk).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Literal

from imapvm.audio.errors import AudioError
from imapvm.channel import Channel, ChannelHangup
from imapvm.ivr.leave import LeaveOptions, LeaveResult, leave_message
from imapvm.ivr.mailbox import load_audio
from imapvm.ivr.main import MainOptions, MainResult, voicemail_main
from imapvm.ivr.session import Session
from imapvm.storage.base import Folder, MailboxRef, StoredMessage, StoreError

log = logging.getLogger(__name__)

Greeting = Literal["busy", "unavailable"] | None

LEAVE_LETTERS = frozenset("bdegPsStuU")
MAIN_LETTERS = frozenset("agprs")


def parse_letters(text: str) -> list[tuple[str, str | None]]:
    """Asterisk's option string: ``U``, ``s``, ``d(sales)`` → ``[("U", None), ("s", None),
    ("d", "sales")]``. Commas and blanks between options are ignored. ValueError when a
    parenthesis is not closed or a character is not a letter."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in ", \t":
            i += 1
            continue
        if not c.isalpha():
            raise ValueError(f"option {c!r} is not a letter")
        arg: str | None = None
        if i + 1 < len(text) and text[i + 1] == "(":
            end = text.find(")", i + 2)
            if end < 0:
                raise ValueError(f"option {c}( has no closing parenthesis")
            arg = text[i + 2 : end]
            i = end + 1
        else:
            i += 1
        out.append((c, arg))
    return out


def _gain(arg: str | None) -> float:
    try:
        value = float(arg or "")
    except ValueError:
        raise ValueError(f"g({arg or ''}) needs a number of decibels") from None
    if not -30.0 <= value <= 30.0:
        raise ValueError(f"g({arg}) is outside -30..30 dB")
    return value


def leave_options(text: str, cause: Greeting, default: Greeting,
                  context: str = "default") -> tuple[LeaveOptions, list[str]]:
    """``VoiceMail()`` options from Asterisk's letters; (options, problems). ``context`` is the
    mailbox's context, where ``d`` without an argument leaves to (Asterisk: the current one)."""
    problems: list[str] = []
    try:
        letters = parse_letters(text)
    except ValueError as exc:
        return LeaveOptions(greeting=cause or default), [f"vm-opts {text!r}: {exc}"]
    chosen: Greeting = None
    opts = LeaveOptions()
    for letter, arg in letters:
        try:
            if letter not in LEAVE_LETTERS:
                raise ValueError("not a VoiceMail() option (b d e g P s S t u U)")
            if letter == "b":
                chosen = "busy"
            elif letter == "u":
                chosen = "unavailable"
            elif letter == "s":
                opts = replace(opts, skip_instructions=True)
            elif letter == "S":
                opts = replace(opts, skip_instructions_after_greeting=True)
            elif letter == "U":
                opts = replace(opts, urgent=True)
            elif letter == "P":
                opts = replace(opts, priority=True)
            elif letter == "t":
                opts = replace(opts, beep=arg or None)
            elif letter == "d":
                opts = replace(opts, exit_context=arg or context)
            elif letter == "g":
                opts = replace(opts, gain_db=_gain(arg))
            # e (greeting as early media) needs no action: we answer before playing anyway.
        except ValueError as exc:
            problems.append(f"vm-opts option {letter}: {exc}")
    return replace(opts, greeting=chosen or cause or default), problems


def main_options(text: str, mailbox: str | None) -> tuple[MainOptions, str | None, list[str]]:
    """``VoiceMailMain()`` options; (options, the mailbox to log into, problems). With ``p``
    the mailbox is a prefix to what the caller enters, as in Asterisk."""
    problems: list[str] = []
    try:
        letters = parse_letters(text)
    except ValueError as exc:
        return MainOptions(), mailbox, [f"vm-opts {text!r}: {exc}"]
    opts = MainOptions()
    for letter, arg in letters:
        try:
            if letter not in MAIN_LETTERS:
                raise ValueError("not a VoiceMailMain() option (a g p r s)")
            if letter == "s":
                opts = replace(opts, skip_password=True)
            elif letter == "r":
                opts = replace(opts, read_only=True)
            elif letter == "a":
                opts = replace(opts, autoplay=Folder.from_name(arg or "0"))
            elif letter == "p":
                opts = replace(opts, prefix=mailbox or "")
                mailbox = None
            elif letter == "g":
                _gain(arg)
                raise ValueError("gain applies to messages left (VoiceMail() g), not to "
                                 "greetings recorded here; ignored")
        except ValueError as exc:
            problems.append(f"vm-opts option {letter}: {exc}")
    return opts, mailbox, problems


async def run_call(channel: Channel, session: Session,
                   default_greeting: Greeting = "unavailable") -> LeaveResult | MainResult | None:
    """The flow the call's target asks for, with its options."""
    target = channel.target
    if target.purpose == "check":
        main, mailbox, problems = main_options(target.options, target.mailbox)
        for problem in problems:
            log.error("call for VoiceMailMain: %s", problem)
        if mailbox is not None and session.find(mailbox, target.context) is None:
            # The caller's number is only a hint: one that is no mailbox is asked for a
            # mailbox, not for the password of one that does not exist (a failed login).
            mailbox = None
        if main.skip_password and (mailbox is None or session.find(mailbox, target.context)
                                   is None):
            log.error("call for VoiceMailMain: option s needs a known mailbox; asking for it")
            main = replace(main, skip_password=False)
        return await voicemail_main(channel, session, mailbox, target.context, main)
    if target.purpose == "play":
        await play_message(channel, session)
        return None
    box = session.find(target.mailbox or "", target.context) if target.mailbox else None
    leave, problems = leave_options(target.options, target.greeting, default_greeting,
                                    box.context if box else "default")
    for problem in problems:
        log.error("call for %s: %s", target.mailbox, problem)
    return await leave_message(channel, session, None, leave)


async def find_message(session: Session, box: MailboxRef, which: str) -> StoredMessage | None:
    """``N``: the Nth message of the INBOX (oldest first, as the menus count); otherwise an
    ``X-Asterisk-VM-Message-ID``, searched in every folder (as Asterisk's play_message_by_id)."""
    if which.isdigit() and len(which) <= 4:
        n = int(which)
        listed = await session.store.list(box, Folder.INBOX)
        return listed[n - 1] if 1 <= n <= len(listed) else None
    for folder in Folder:
        for info in await session.store.list(box, folder):
            if info.header("x-asterisk-vm-message-id") == which:
                return info
    return None


async def play_message(channel: Channel, session: Session) -> bool:
    """``VoiceMailPlayMsg(mailbox@context, msg)``: play one message (no envelope) and hang up;
    a new message is marked heard, as Asterisk does. False when there is no such message (the
    call is hung up without a word, as Asterisk's application fails)."""
    target = channel.target
    box = session.find(target.mailbox or "", target.context)
    played = False
    try:
        await channel.answer()
        info = None
        if box is None:
            log.error("VoiceMailPlayMsg: no mailbox %s", target.mailbox)
        else:
            info = await find_message(session, box, target.message or "")
            if info is None:
                log.error("VoiceMailPlayMsg: %s has no message %s", box, target.message)
        if box is not None and info is not None:
            samples, intro = await load_audio(session, box, info.ref)
            if intro is not None:
                await channel.play(intro)
            await channel.play(samples)
            if not info.seen:
                await session.store.mark_heard(box, info.ref)
            await session.notify_changed(box)
            played = True
    except ChannelHangup:
        return played
    except (StoreError, ValueError, AudioError) as exc:
        log.error("VoiceMailPlayMsg for %s: %s", target.mailbox, exc)
    await channel.hangup()
    return played


__all__ = ["find_message", "leave_options", "main_options", "parse_letters", "play_message",
           "run_call"]
