"""The call as the voice menus see it: the only interface between ``ivr`` and any front end.

Defined here, not in ``telephony``, so that flows import no SIP code and can be driven by a
scripted channel in tests (DESIGN.md, Layers). Audio is mono int16 numpy at 8 kHz.

Hang-up semantics follow what voicemail needs: ``play``, ``get_digits`` and ``answer`` raise
``ChannelHangup`` once the caller is gone, so a flow unwinds without checking after every step;
``record`` instead *returns* what was recorded with reason ``"hangup"``, because hanging up is
how most callers finish a message and that message must be kept.

Digits are buffered (type-ahead): digits pressed between prompts wait for the next
``get_digits`` or interrupt the next ``play`` at once. A digit pressed *during* a ``play`` that
it does not interrupt is discarded, as Asterisk does; ``flush_digits`` discards the buffer.
``record`` starts with an empty buffer so an early ``#`` cannot end it before it began.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
Audio = npt.NDArray[np.int16]
DTMF_DIGITS = "0123456789*#ABCD"


class ChannelHangup(Exception):
    """The caller hung up (or the call failed); the flow should stop."""


@dataclass(frozen=True)
class CallerId:
    """Who is calling: number (URI user part) and display name, as far as the network says."""

    number: str | None
    name: str | None = None
    uri: str | None = None
    #: The network address the call came from (the SIP peer: often the PBX, not the phone);
    #: login failures are counted per source by it.
    address: str | None = None


@dataclass(frozen=True)
class CallTarget:
    """What the call is for.

    ``purpose`` is ``"deposit"`` (leave a message for ``mailbox``) or ``"check"`` (the caller
    wants to hear messages; ``mailbox`` is the caller's own when the network told us, else
    None and the flow asks) or ``"play"`` (``VoiceMailPlayMsg``: play one message). ``greeting``
    is the busy or unavailable greeting the network's cause asked for (None = it said nothing).
    ``language`` is the language the network asked the call to speak (``es``, ``fr_CA``...),
    None when it did not say.
    """

    purpose: Literal["deposit", "check", "play"]
    mailbox: str | None
    greeting: Literal["busy", "unavailable"] | None = None
    dialed: str | None = None
    #: The voicemail context of ``mailbox`` when the network named one (None: looked up as
    #: ``VoiceMail()`` does without ``@context``).
    context: str | None = None
    #: Further recipients of a deposit, as Asterisk writes them (``1235``, ``1236@sales``).
    also: tuple[str, ...] = ()
    #: ``VoiceMail()`` / ``VoiceMailMain()`` option letters as Asterisk's dialplan writes them
    #: (``Us``, ``d(sales)g(6)``); "" = none given.
    options: str = ""
    #: ``VoiceMailPlayMsg``: which message of ``mailbox`` to play (purpose "play"): a number
    #: N (the Nth message of the INBOX, oldest first) or an ``X-Asterisk-VM-Message-ID``.
    message: str | None = None
    language: str | None = None


RecordReason = str
"""``"silence"``, ``"max"``, ``"hangup"``, or the terminating digit itself (e.g. ``"#"``)."""


class RecordResult(NamedTuple):
    audio: Audio
    reason: RecordReason
    #: The same recording at the line's full bandwidth when it is wider than the menus' 8 kHz
    #: (16 kHz on a G.722 call), for storing in formats that can hold it; None otherwise.
    wide: Audio | None = None


@runtime_checkable
class Channel(Protocol):
    caller: CallerId
    target: CallTarget
    hangup_event: asyncio.Event

    @property
    def hung_up(self) -> bool: ...

    async def answer(self) -> None:
        """Answer the call (idempotent); media flows both ways afterwards."""

    async def play(self, audio: Audio | str, interrupt_digits: str = "") -> str | None:
        """Play audio or a prompt by name; the digit that interrupted it, or None."""

    async def record(
        self,
        max_seconds: float,
        silence_seconds: float | None = None,
        silence_threshold: int = 128,
        terminators: str = "#",
        tap: Callable[[Audio], None] | None = None,
    ) -> RecordResult:
        """Record until a terminator digit, ``silence_seconds`` of quiet, the maximum or hangup.

        Trailing silence is trimmed when the recording ended on silence. ``tap`` is given the
        caller's samples as they arrive (the durable journal of a message being left).
        """

    async def get_digits(self, count: int, digit_timeout: float, terminators: str = "#") -> str:
        """Up to ``count`` digits; stops at a terminator (not returned) or when
        ``digit_timeout`` seconds pass without a new digit (type-ahead digits count)."""

    def flush_digits(self) -> None:
        """Discard type-ahead digits."""

    async def transfer(self, target: str) -> bool:
        """Ask the front end to transfer the call; True if it was carried out."""

    async def hangup(self) -> None:
        """End the call (idempotent)."""
