"""Leave a message: Asterisk's ``VoiceMail()`` (reference §4.2, §5.1, §5.2).

The flow, as a caller hears it:

1. the greeting of the first mailbox: its temporary greeting if recorded, else the busy or
   unavailable one, else an invented one (the recorded name, or "the person at extension
   1 2 3 4 is on the phone / is unavailable"); ``#`` skips to the beep;
2. ``vm-intro`` ("please leave your message after the tone..."), unless skipped;
   ``*`` leaves to extension ``a`` and ``0`` to the operator, when those exits exist;
3. ``vm-mailboxfull`` and the end of the call when the mailbox cannot take a message;
4. ``beep``, the recording (``#`` ends it), and the review menu when configured;
5. a recording shorter than ``minsecs`` is thrown away; otherwise one e-mail per recipient
   goes into the durable outbox, and only then does the caller hear ``vm-goodbye``.

Unlike Asterisk IMAP (§4.7, §6 #23), each extra recipient gets its own message built for its
own mailbox. Asterisk says nothing after ``#`` when review is off (the dialplan hangs up);
imapvm is the whole dialplan, so it says goodbye once the message is safe, and hangs up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from imapvm.audio import language
from imapvm.audio.core import Audio as AudioValue
from imapvm.audio.formats import decode
from imapvm.channel import Audio, Channel, ChannelHangup
from imapvm.ivr import say as speech
from imapvm.ivr.record import RecordSettings, Take, record_with_review
from imapvm.ivr.session import Exit, Session
from imapvm.message import FLAG_NONE, FLAG_PRIORITY, FLAG_URGENT, Deposit, build_voicemail
from imapvm.storage.base import GreetingKind, MailboxRef, StoreError
from imapvm.storage.recording import Journal, RecordingMeta, new_meta

log = logging.getLogger(__name__)

Status = Literal["SUCCESS", "USEREXIT", "FAILED"]


@dataclass(frozen=True)
class LeaveOptions:
    """``VoiceMail()`` options: ``b``/``u`` (greeting), ``s``/``S``, ``U``, ``P``, ``t(x)``,
    ``d(c)``, ``g(#)`` (``ivr.dialplan.leave_options`` reads them from Asterisk's syntax)."""

    #: "busy" or "unavailable"; None = no greeting at all (Asterisk without b or u).
    greeting: Literal["busy", "unavailable"] | None = "unavailable"
    skip_instructions: bool = False  # s
    skip_instructions_after_greeting: bool = False  # S
    urgent: bool = False  # U
    priority: bool = False  # P
    #: The tone before recording; None = no beep (``t`` with no argument).
    beep: str | None = "beep"
    #: ``d(context)``: a digit pressed during the greeting or the instructions leaves to that
    #: extension of ``context`` (through the exit resolver), as Asterisk's dialplan jump.
    exit_context: str | None = None
    #: ``g(#)``: gain in dB applied to the recording.
    gain_db: float = 0.0


@dataclass
class LeaveResult:
    """What happened, as Asterisk's VMSTATUS plus where the caller asked to go."""

    status: Status
    exit: Exit | None = None
    #: Outbox ids of the deposits, per recipient.
    deposits: dict[MailboxRef, str] = field(default_factory=dict)
    urgent: bool = False


async def leave_message(
    channel: Channel,
    session: Session,
    boxes: Sequence[MailboxRef] | None = None,
    options: LeaveOptions | None = None,
    *,
    hangup: bool = True,
) -> LeaveResult:
    """Run the leave-a-message flow; hangs up at the end unless ``hangup`` is False (a reply
    from VoiceMailMain goes back to its menu) or the caller was transferred."""
    if options is None:
        options = LeaveOptions(greeting=channel.target.greeting or "unavailable")
    try:
        await channel.answer()
        if not boxes:
            if channel.target.mailbox:
                boxes = target_boxes(channel, session)
            else:
                boxes = await _ask_mailbox(channel, session)
        result = await _leave(channel, session, list(boxes), options)
    except ChannelHangup:
        return LeaveResult("FAILED")
    except (OSError, StoreError, ValueError) as exc:
        # The message could not be made durable: never say goodbye as if it were safe.
        log.error("leave a message: %s", exc)
        result = LeaveResult("FAILED")
    if result.exit is not None:
        target = session.exit_target(result.exit)
        if target is not None and await channel.transfer(target):
            return result
    if hangup:
        await channel.hangup()
    return result


def target_boxes(channel: Channel, session: Session) -> list[MailboxRef]:
    """The mailboxes the network named (first its ``mailbox``, then ``also``), known ones only:
    an unknown one is logged, the others still get the message."""
    target = channel.target
    specs = [(target.mailbox or "", target.context)]
    specs += [(b, c or target.context) for b, _, c in (a.partition("@") for a in target.also)]
    boxes: list[MailboxRef] = []
    for number, context in specs:
        found = session.find(number, context)
        if found is None:
            log.warning("leave a message: no mailbox %s%s", number,
                        f"@{context}" if context else "")
        elif found not in boxes:
            boxes.append(found)
    return boxes


async def _ask_mailbox(channel: Channel, session: Session) -> list[MailboxRef]:
    """No mailbox given: ``vm-whichbox`` until a known one is entered (three tries)."""
    from imapvm.ivr.keys import read_string

    for _ in range(3):
        number = await read_string(channel, ["vm-whichbox"])
        box = session.find(number)
        if box is not None:
            return [box]
    return []


def record_settings(session: Session, box: MailboxRef) -> RecordSettings:
    """The caller's recording limits; ``0`` reaches the operator only when there is one."""
    s = session.settings(box)
    operator = s.operator and session.exit_target(session.operator_exit(box)) is not None
    return RecordSettings(max_seconds=s.maxsecs, max_silence=s.maxsilence,
                          silence_threshold=s.silencethreshold, review=s.review,
                          operator=operator, leaveurgent=s.leaveurgent)


async def _leave(channel: Channel, session: Session, boxes: list[MailboxRef],
                 options: LeaveOptions) -> LeaveResult:
    known = [b for b in boxes if _known(session, b)]
    if not known:
        return LeaveResult("FAILED")
    first = known[0]
    settings = session.settings(first)
    language.set_current(session.call_language(channel.target.language, first))
    operator = session.operator_exit(first)
    star = session.star_exit(first)
    exit_keys = "#"
    if settings.operator and session.exit_target(operator) is not None:
        exit_keys += "0"
    if session.exit_target(star) is not None:
        exit_keys += "*"
    goto_keys = ""
    if options.exit_context is not None:
        goto_keys = "".join(d for d in "0123456789*" if d not in exit_keys
                            and session.exit_target(Exit("goto", d, options.exit_context))
                            is not None)
        exit_keys += goto_keys

    digit, greeted = await _play_greeting(channel, session, first, options, exit_keys)
    if settings.maxmsg == 0:  # a greetings-only mailbox
        return LeaveResult("SUCCESS")
    skip = options.skip_instructions or (options.skip_instructions_after_greeting and greeted)
    if digit == "#":
        skip, digit = True, None
    if digit is None and not skip:
        digit = await channel.play("vm-intro", exit_keys)
        if digit == "#":
            digit = None
    if digit is not None and digit in goto_keys:
        assert options.exit_context is not None
        return LeaveResult("USEREXIT", exit=Exit("goto", digit, options.exit_context, first))
    if digit == "*":
        return LeaveResult("USEREXIT", exit=star)
    if digit == "0":
        await channel.play("transfer")
        return LeaveResult("USEREXIT", exit=operator)

    if await _full(session, first):
        await channel.play("vm-mailboxfull")
        return LeaveResult("FAILED")
    if options.beep:
        await channel.play(options.beep)
    journal = await _begin_journal(channel, session, known, options)
    try:
        take = await record_with_review(channel, record_settings(session, first), caller=True,
                                        urgent=options.urgent, journal=journal)
        result = await _keep(channel, session, known, take, options, settings.minsecs,
                             journal.meta if journal is not None else None)
    except BaseException:
        if journal is not None:  # the next start-up delivers what was kept
            await journal.keep()
        raise
    if journal is not None:
        await journal.finish()
    if take.outcome == "operator":
        await channel.play("transfer")
        result.status = "USEREXIT"
        result.exit = operator
        return result
    if take.outcome != "hangup":
        await channel.play("vm-goodbye")
    return result


def _known(session: Session, box: MailboxRef) -> bool:
    try:
        session.settings(box)
    except KeyError:
        log.warning("leave a message: no mailbox %s", box)
        return False
    return True


async def _full(session: Session, box: MailboxRef) -> bool:
    """Asterisk's imap_check_limits; an unreachable store does not refuse the caller (the
    outbox keeps the message until the store is back)."""
    try:
        return (await session.store.quota(box)).full()
    except StoreError as exc:
        log.warning("leave a message for %s: quota unknown (%s); recording anyway", box, exc)
        return False


async def _play_greeting(channel: Channel, session: Session, box: MailboxRef,
                         options: LeaveOptions, exit_keys: str) -> tuple[str | None, bool]:
    """The greeting (temp over busy/unavail), or the invented one; (digit, recorded one?).

    As in Asterisk, a temporary greeting plays even when neither b nor u was asked for, and
    nothing is invented then."""
    kinds = [GreetingKind.TEMP]
    if options.greeting is not None:
        kinds.append(GreetingKind.BUSY if options.greeting == "busy" else GreetingKind.UNAVAIL)
    for kind in kinds:
        audio = await load_greeting(session, box, kind)
        if audio is not None:
            return await channel.play(audio, exit_keys), True
    if options.greeting is None:
        return None, False
    return await _invented(channel, session, box, options.greeting == "busy", exit_keys), False


async def load_greeting(session: Session, box: MailboxRef, kind: GreetingKind) -> Audio | None:
    """A recorded greeting as samples, or None (missing, unreadable or store down)."""
    try:
        part = await session.store.get_greeting(box, kind)
        if part is None:
            return None
        decoded = await asyncio.to_thread(decode, part.data, part.fmt)
    except Exception as exc:  # a broken greeting must not stop the caller leaving a message
        log.warning("greeting %s of %s unusable: %s", kind.value, box, exc)
        return None
    return decoded.samples


async def _invented(channel: Channel, session: Session, box: MailboxRef, busy: bool,
                    exit_keys: str) -> str | None:
    name = await load_greeting(session, box, GreetingKind.NAME)
    if name is not None:
        digit = await channel.play(name, exit_keys)
    else:
        digit = await channel.play("vm-theperson", exit_keys)
        for prompt in speech.digits(box.mailbox):
            digit = digit or await channel.play(prompt, exit_keys)
    return digit or await channel.play("vm-isonphone" if busy else "vm-isunavail", exit_keys)


async def _begin_journal(channel: Channel, session: Session, boxes: list[MailboxRef],
                         options: LeaveOptions) -> Journal | None:
    """Start keeping the caller's audio on disk as it arrives (when the server does that)."""
    if session.recordings is None:
        return None
    flag = FLAG_URGENT if options.urgent else (FLAG_PRIORITY if options.priority else FLAG_NONE)
    meta = new_meta([(b.mailbox, b.context) for b in boxes],
                    caller_num=channel.caller.number or "",
                    caller_name=channel.caller.name or "", orig_time=int(session.clock()),
                    flag=flag, hostname=session.email_settings(boxes[0]).hostname)
    return await session.recordings.begin(meta)


async def _keep(channel: Channel, session: Session, boxes: list[MailboxRef], take: Take,
                options: LeaveOptions, minsecs: int,
                journal: RecordingMeta | None = None) -> LeaveResult:
    """Deposit the take to every recipient through the outbox (or drop it when too short)."""
    urgent = take.urgent
    if take.audio is None or len(take.audio) == 0 or take.seconds < max(minsecs, 0):
        if take.audio is not None:
            log.info("leave a message: %.1f s is under minsecs %d; discarded", take.seconds,
                     minsecs)
        return LeaveResult("FAILED", urgent=urgent)
    if take.wide is not None and len(take.wide):
        # A wideband (G.722) call: stored at 16 kHz where the format holds it (wav16, sln16),
        # resampled to 8 kHz for the others.
        recording = AudioValue(apply_gain(take.wide, options.gain_db), 16000)
    else:
        recording = AudioValue(apply_gain(take.audio, options.gain_db))
    flag = FLAG_URGENT if urgent else (FLAG_PRIORITY if options.priority else FLAG_NONE)
    result = LeaveResult("SUCCESS", urgent=urgent)
    for box in boxes:
        if box != boxes[0] and await _full(session, box):
            log.warning("leave a message: %s is full; not delivered there", box)
            continue
        result.deposits[box] = await deposit(
            session, box, recording, flag=flag, caller_num=channel.caller.number or "",
            caller_name=channel.caller.name or "",
            message_id=journal.message_id(box.mailbox, box.context) if journal else None)
        await session.notify_changed(box)
    return result


def apply_gain(samples: Audio, gain_db: float) -> Audio:
    """``g(#)``: the recording louder (or softer) by ``gain_db``, clipped to 16 bits."""
    if not gain_db:
        return samples
    scaled = samples.astype(np.float64) * (10.0 ** (gain_db / 20.0))
    clipped: Audio = np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)
    return clipped


async def next_number(session: Session, box: MailboxRef) -> int:
    """X-Asterisk-VM-Message-Num of the next message: messages in the box plus one; 0 (not
    known, left out of the subject) when the store cannot say. The server numbers it again
    when it is delivered (``storage.numbering``)."""
    try:
        c = await session.store.counts(box)
    except StoreError:
        return 0
    return c.new + c.old + c.urgent + 1


async def deposit(session: Session, box: MailboxRef, recording: AudioValue, *, flag: str,
                  caller_num: str, caller_name: str, message_id: str | None = None) -> str:
    """Build the e-mail for ``box`` and hand it to the outbox; durable on return."""
    number = await next_number(session, box)
    dep = Deposit(number=number, caller_id_num=caller_num, caller_id_name=caller_name,
                  orig_time=int(session.clock()), flag=flag, message_id=message_id)
    built = await asyncio.to_thread(build_voicemail, dep, session.email_settings(box), recording)
    return await session.outbox.submit(box, built.raw, urgent=flag == FLAG_URGENT)
