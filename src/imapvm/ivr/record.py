"""Recording with the review menu: messages, forward comments and greetings (reference §5.2).

One function serves the three, because Asterisk's differ only in who records:

* a **caller** leaving a message goes straight from the beep to recording, and sees the review
  menu only with ``review=yes`` (``1`` accept, ``2`` listen, ``3`` re-record, ``4`` urgent when
  ``leaveurgent``, ``0`` operator when ``operator``); hanging up or timing out keeps the message;
* a **forward comment** always gets the review menu, and is kept silently (no vm-msgsaved);
* the **owner** recording a greeting hears the instruction and the beep before every take,
  always gets the review menu, and loses the take on hang-up or timeout.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from imapvm.channel import Audio, Channel, ChannelHangup
from imapvm.ivr.keys import ANY, menu_key, say

log = logging.getLogger(__name__)

#: Logged (debug) as recording starts (after the beep): what end-to-end tests wait for.
RECORDING = "recording: the beep was played, recording"

#: Asterisk's maxsecs=0 means no limit; a call still needs one.
UNLIMITED_SECONDS = 3 * 3600.0
REVIEW_WAIT = 6.0
MAX_REVIEW_TIMEOUTS = 3

Outcome = Literal["accepted", "operator", "hangup", "timeout", "discarded"]


@dataclass(frozen=True)
class Take:
    """What came of a recording: the audio to keep (None = nothing kept) and how it ended."""

    audio: Audio | None
    outcome: Outcome
    urgent: bool = False
    #: ``audio`` at 16 kHz when the call was wideband (G.722), for wav16/sln16 storage.
    wide: Audio | None = None

    @property
    def seconds(self) -> float:
        return 0.0 if self.audio is None else len(self.audio) / 8000


class RecordingJournal(Protocol):
    """Where a caller's audio goes as it arrives (``storage.recording.Journal``)."""

    def append(self, pcm: Audio) -> None: ...
    def restart(self) -> None: ...


@dataclass(frozen=True)
class RecordSettings:
    max_seconds: int
    max_silence: int  # seconds, 0 = off
    silence_threshold: int
    review: bool
    operator: bool
    leaveurgent: bool


async def record_with_review(
    channel: Channel,
    rs: RecordSettings,
    *,
    caller: bool,
    forward_intro: bool = False,
    instruction: str | None = None,
    urgent: bool = False,
    journal: RecordingJournal | None = None,
) -> Take:
    """Record until the caller accepts, then return the take (see the module docstring).

    ``instruction`` is the owner's prompt before each take (``vm-rec-unv``...); callers' first
    take starts at once (the beep was played by the caller of this function). ``journal``
    receives every take's audio as it arrives, and is restarted for each new take.
    """
    audio: Audio | None = None
    recorded = False
    timeouts = 0
    cmd: str | None = "3"
    wide: Audio | None = None
    try:
        while True:
            if cmd == "3":
                audio = None
                if instruction is not None:
                    cmd = await say(channel, [instruction, "beep"], "")
                elif recorded and caller:
                    await channel.play("vm-record-prepend" if forward_intro else "vm-intro")
                    await channel.play("beep")
                recorded = True
                stop = "#" + ("0" if rs.operator else "")
                limits = (float(rs.max_seconds) if rs.max_seconds > 0 else UNLIMITED_SECONDS,
                          float(rs.max_silence) if rs.max_silence > 0 else None,
                          rs.silence_threshold, stop)
                log.debug(RECORDING)
                if journal is None:
                    result = await channel.record(*limits)
                else:
                    journal.restart()
                    result = await channel.record(*limits, tap=journal.append)
                wide = result.wide
                if result.reason == "hangup":
                    if caller and len(result.audio):
                        return Take(np.asarray(result.audio, dtype=np.int16), "hangup", urgent,
                                    wide)
                    return Take(None, "hangup", urgent)
                if result.reason == "0":
                    audio = np.asarray(result.audio, dtype=np.int16)
                    cmd = "0"
                    continue
                audio = np.asarray(result.audio, dtype=np.int16)
                cmd = None
            elif cmd == "1":
                if audio is None:
                    cmd = "3"
                    continue
                if not forward_intro:
                    # accepted is accepted: hanging up during "message saved" keeps it
                    with contextlib.suppress(ChannelHangup):
                        await channel.play("vm-msgsaved")
                return Take(audio, "accepted", urgent, wide)
            elif cmd == "2":
                cmd = (await channel.play(audio, ANY) if audio is not None else None) or None
            elif cmd == "4" and caller and rs.leaveurgent:
                urgent = not urgent
                await channel.play("vm-marked-urgent" if urgent else "vm-marked-nonurgent")
                cmd = None
            elif cmd == "0":
                if not (caller and rs.operator):
                    cmd = await channel.play("vm-sorry", ANY) or None
                    continue
                if audio is None and not recorded:
                    return Take(None, "operator", urgent)
                choice = await menu_key(channel, ["vm-saveoper"], 3.0)
                if choice == "1":
                    await channel.play("vm-msgsaved")
                    return Take(audio, "operator", urgent, wide)
                if choice == "4":
                    await channel.play("vm-marked-urgent")
                    await channel.play("vm-msgsaved")
                    return Take(audio, "operator", True, wide)
                await channel.play("vm-deleted")
                return Take(None, "operator", urgent)
            elif cmd is not None:
                cmd = await channel.play("vm-sorry", ANY) or None
            else:
                if caller and not rs.review and not forward_intro:
                    return Take(audio, "accepted", urgent, wide)
                prompts: list[str] = []
                if audio is not None:
                    prompts.append("vm-review")
                    if caller and rs.leaveurgent and not forward_intro:
                        prompts.append("vm-review-nonurgent" if urgent else "vm-review-urgent")
                else:
                    prompts.append("vm-torerecord")
                if caller and rs.operator:
                    prompts.append("vm-reachoper")
                key = await menu_key(channel, prompts, REVIEW_WAIT)
                if key:
                    cmd = key
                    continue
                timeouts += 1
                if timeouts > MAX_REVIEW_TIMEOUTS:
                    if caller and audio is not None:
                        return Take(audio, "timeout", urgent, wide)
                    return Take(None, "timeout", urgent)
    except ChannelHangup:
        if caller and audio is not None and len(audio):
            return Take(audio, "hangup", urgent, wide)  # hanging up is how most callers finish
        raise
