"""A scripted caller: the Channel double the flow tests drive.

The script is what the caller does, in order:

* ``"1"`` or ``Press("1234#")``: keys, pressed as soon as the flow can take them: during the
  next prompt they interrupt, or at the next wait for digits. ``Press(k, after="vm-intro")``
  waits until that prompt has been heard in full (type the key *after* listening).
  ``Press(k, during="vm-intro")`` presses it while that prompt plays: lost if the prompt
  does not take it.
* ``Wait()``: the caller says nothing: the next wait for digits times out.
* ``Rec(seconds, reason)``: what the next recording returns (a tone of that length; reason
  ``"#"``, ``"silence"``, ``"max"``, ``"0"`` or ``"hangup"``).
* ``Hangup()``: the caller hangs up at the next wait.

Every prompt name played must exist in the installed Asterisk sound set. When the script
runs out, the caller hangs up (so a flow always ends). Everything heard is in
``played``: prompt names, and ``audio:N.Ns`` for audio (consecutive pieces merged). Keys typed
ahead (left in the buffer from a longer ``Press``) interrupt the next prompt before it is heard,
so that prompt is not listed, as on a real phone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imapvm.audio import language, prompts
from imapvm.channel import Audio, CallerId, CallTarget, ChannelHangup, RecordResult


@dataclass(frozen=True)
class Press:
    keys: str
    after: str | None = None
    #: Pressed while this prompt plays: it interrupts if the prompt allows, else it is lost.
    during: str | None = None


@dataclass(frozen=True)
class Wait:
    pass


@dataclass(frozen=True)
class Rec:
    seconds: float
    reason: str = "#"
    freq: int = 440


@dataclass(frozen=True)
class Hangup:
    pass


Step = Press | Wait | Rec | Hangup | str


def tone(seconds: float, freq: int = 440) -> Audio:
    t = np.arange(int(seconds * 8000)) / 8000
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


@dataclass
class RecordCall:
    max_seconds: float
    silence_seconds: float | None
    silence_threshold: int
    terminators: str


class ScriptedChannel:
    def __init__(self, script: list[Step], *, caller: CallerId | None = None,
                 target: CallTarget | None = None, transfer_ok: bool = True) -> None:
        self.script: deque[Press | Wait | Rec | Hangup] = deque(
            Press(s) if isinstance(s, str) else s for s in script)
        self.caller = caller or CallerId("5551234", "Alice Caller")
        self.target = target or CallTarget("deposit", "1234")
        self.hangup_event = asyncio.Event()
        self.played: list[str] = []
        self.buffer: deque[str] = deque()
        self.recorded: list[Audio] = []
        self.record_calls: list[RecordCall] = []
        self.transfers: list[str] = []
        self.transfer_ok = transfer_ok
        self.answered = False
        self._heard: set[str] = set()
        self._last_audio = False

    # -- helpers -------------------------------------------------------------------------
    @property
    def hung_up(self) -> bool:
        return self.hangup_event.is_set()

    def _check(self) -> None:
        if self.hung_up:
            raise ChannelHangup("scripted hangup")

    def _head(self) -> Press | Wait | Rec | Hangup | None:
        return self.script[0] if self.script else None

    def _feed(self, only: str | None = None) -> bool:
        """Move the next Press into the buffer if it may be pressed now."""
        head = self._head()
        if isinstance(head, Hangup):
            self.script.popleft()
            self.hangup_event.set()
            raise ChannelHangup("scripted hangup")
        if not isinstance(head, Press):
            return False
        if head.after is not None and head.after not in self._heard:
            return False
        if head.during is not None:
            return False
        if only is not None and head.keys[:1] not in only:
            return False
        self.script.popleft()
        self.buffer.extend(head.keys)
        self._heard.clear()  # "after" counts from the previous key on
        return True

    def _label(self, audio: Audio | str) -> str:
        if isinstance(audio, str):
            return audio
        return f"audio:{len(audio) / 8000:.1f}s"

    def _heard_it(self, audio: Audio | str) -> None:
        if isinstance(audio, str):
            # every prompt a flow plays must be a real Asterisk sound file, in the call's
            # language or (as Asterisk falls back) in English
            first, *rest = language.search_path(prompts.DEFAULT_SOUNDS, language.current(),
                                                prompts.SYNTH_DIR)
            assert prompts.find(first, audio, tuple(rest)) is not None, audio
            self.played.append(audio)
            self._heard.add(audio)
            self._last_audio = False
            return
        seconds = len(audio) / 8000
        if self._last_audio and self.played:
            prev = float(self.played[-1][len("audio:"):-1])
            self.played[-1] = f"audio:{prev + seconds:.1f}s"
        else:
            self.played.append(self._label(audio))
        self._last_audio = True

    # -- the Channel protocol ------------------------------------------------------------
    async def answer(self) -> None:
        self._check()
        self.answered = True

    async def play(self, audio: Audio | str, interrupt_digits: str = "") -> str | None:
        self._check()
        await asyncio.sleep(0)
        head = self._head()
        if isinstance(head, Press) and head.during is not None and head.during == audio:
            self.script.popleft()
            self._heard.clear()
            if head.keys[:1] and head.keys[0] in interrupt_digits:
                self.buffer.extend(head.keys)
                self._heard_it(audio)
                self._heard.discard(audio if isinstance(audio, str) else "")
                self._last_audio = False
                return self.buffer.popleft()
            self._heard_it(audio)  # a key the prompt does not take is lost, as on a real call
            return None
        if self.buffer:
            if self.buffer[0] in interrupt_digits:
                self._last_audio = False
                return self.buffer.popleft()
        elif interrupt_digits and self._feed(only=interrupt_digits):
            self._heard_it(audio)  # pressed during it: it was (partly) heard...
            self._heard.discard(audio if isinstance(audio, str) else "")  # ...not in full
            self._last_audio = False
            return self.buffer.popleft()
        self._heard_it(audio)
        return None

    async def record(self, max_seconds: float, silence_seconds: float | None = None,
                     silence_threshold: int = 128, terminators: str = "#",
                     tap: Callable[[np.ndarray], None] | None = None) -> RecordResult:
        self.record_calls.append(RecordCall(max_seconds, silence_seconds, silence_threshold,
                                            terminators))
        self._last_audio = False
        if self.hung_up:
            return RecordResult(np.zeros(0, dtype=np.int16), "hangup")
        self.buffer.clear()
        head = self._head()
        if head is None or isinstance(head, Hangup):
            if head is not None:
                self.script.popleft()
            self.hangup_event.set()
            return RecordResult(np.zeros(0, dtype=np.int16), "hangup")
        if not isinstance(head, Rec):
            raise AssertionError(f"the flow records but the script says {head}")
        self.script.popleft()
        seconds = min(head.seconds, max_seconds)
        reason = "max" if head.seconds > max_seconds else head.reason
        audio = tone(seconds, head.freq)
        self.recorded.append(audio)
        if tap is not None:
            for start in range(0, len(audio), 160):  # as RTP brings it: 20 ms at a time
                tap(audio[start:start + 160])
        if reason == "hangup":
            self.hangup_event.set()
        return RecordResult(audio, reason)

    async def get_digits(self, count: int, digit_timeout: float, terminators: str = "#") -> str:
        self._check()
        await asyncio.sleep(0)
        self._last_audio = False
        got = ""
        while len(got) < count:
            if not self.buffer and not self._feed():
                if got:
                    return got  # the caller stopped typing: the inter-digit timeout
                head = self._head()
                if head is None:
                    self.hangup_event.set()
                    raise ChannelHangup("script exhausted")
                if isinstance(head, Wait):
                    self.script.popleft()
                    return got
                raise AssertionError(f"the flow waits for digits but the script says {head}")
            digit = self.buffer.popleft()
            if digit in terminators:
                return got
            got += digit
        return got

    def flush_digits(self) -> None:
        self.buffer.clear()

    async def transfer(self, target: str) -> bool:
        self.transfers.append(target)
        return self.transfer_ok

    async def hangup(self) -> None:
        self.hangup_event.set()
