"""``SipChannel``: the ivr ``Channel`` protocol implemented over one SIP call and its RTP.

Everything here runs on the event loop; the channel never touches the SIP core directly but
asks its ``CallControl`` (the server) to answer, hang up or redirect, so this module stays
about media and digits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from ..channel import (
    Audio,
    CallerId,
    CallTarget,
    ChannelHangup,
    RecordResult,
)
from .rtp.session import RtpSession
from .sdp import NegotiatedMedia
from .sip.kinds import EndReason
from .sip.message import SipRequest

log = logging.getLogger(__name__)

PromptLoader = Callable[[str], Audio | Awaitable[Audio]]


class CallControl(Protocol):
    async def answer_call(self, channel: SipChannel) -> RtpSession: ...
    def hangup_call(self, channel: SipChannel) -> None: ...
    def redirect_call(self, channel: SipChannel, target: str) -> bool: ...
    async def refer_call(self, channel: SipChannel, target: str) -> bool: ...


class SipChannel:
    """One call. Created by the server for each accepted INVITE and passed to the handler."""

    def __init__(
        self,
        handle: str,
        request: SipRequest,
        caller: CallerId,
        target: CallTarget,
        media: NegotiatedMedia | None,
        control: CallControl,
        prompt_loader: PromptLoader | None = None,
    ) -> None:
        self.handle = handle
        self.request = request
        self.caller = caller
        self.target = target
        self.media = media
        self.hangup_event = asyncio.Event()
        self.hangup_reason: EndReason | None = None
        self.transfer_target: str | None = None
        self.rtp: RtpSession | None = None
        self.confirmed = asyncio.Event()
        self._control = control
        self._prompt_loader = prompt_loader
        self._digits: deque[str] = deque(maxlen=64)
        self.digits_received = 0  # a count, never the values (a PIN)
        self._digit_event = asyncio.Event()
        self._answering: asyncio.Task[RtpSession] | None = None

    # ---- state from the server --------------------------------------------------------
    @property
    def hung_up(self) -> bool:
        return self.hangup_event.is_set()

    def on_digit(self, digit: str, duration_ms: int = 0) -> None:
        # Never the digit's value: during a login it is part of a password (issue 12).
        log.debug("call %s: DTMF digit received (%d ms)", self.handle, duration_ms)
        self._digits.append(digit)
        self.digits_received += 1
        self._digit_event.set()

    def on_media(self, media: NegotiatedMedia) -> None:
        self.media = media
        if self.rtp is not None:
            self.rtp.set_media(media)

    def on_ended(self, reason: EndReason) -> None:
        if self.hung_up:
            return
        self.hangup_reason = reason
        self.hangup_event.set()
        if self.rtp is not None:
            self.rtp.close()

    # ---- the Channel protocol ---------------------------------------------------------
    async def answer(self) -> None:
        self._check()
        if self._answering is None:
            self._answering = asyncio.ensure_future(self._control.answer_call(self))
        self.rtp = await self._answering
        self.rtp.digit_sink = self.on_digit
        await self._wait(self.confirmed)
        self._check()

    async def play(self, audio: Audio | str, interrupt_digits: str = "") -> str | None:
        await self.answer()
        assert self.rtp is not None
        pcm = await self._resolve(audio)
        # Type-ahead: an interrupt digit already waiting ends the prompt before it starts
        # (with everything typed before it); other waiting digits stay for get_digits.
        for index, digit in enumerate(self._digits):
            if digit in interrupt_digits:
                for _ in range(index + 1):
                    self._digits.popleft()
                return digit
        waiting = len(self._digits)
        rate = 8000
        if isinstance(audio, str) and self.rtp.codec.wideband:
            wide = await self._wide_prompt(audio)
            if wide is not None:
                pcm, rate = wide, 16000
        done = self.rtp.play(pcm, rate)
        try:
            while not done.done():
                self._digit_event.clear()
                await self._wait_any(done, self._digit_event)
                self._check()
                while len(self._digits) > waiting:  # pressed during this prompt
                    digit = self._digits[waiting]
                    del self._digits[waiting]
                    if digit in interrupt_digits:
                        return digit
        finally:
            if not done.done():
                self.rtp.stop_playback()
        return None

    async def record(
        self,
        max_seconds: float,
        silence_seconds: float | None = None,
        silence_threshold: int = 128,
        terminators: str = "#",
        tap: Callable[[Audio], None] | None = None,
    ) -> RecordResult:
        if self.hung_up:
            return RecordResult(np.zeros(0, dtype=np.int16), "hangup")
        try:
            await self.answer()
        except ChannelHangup:
            return RecordResult(np.zeros(0, dtype=np.int16), "hangup")
        assert self.rtp is not None
        loop = asyncio.get_running_loop()
        frames: list[Audio] = []
        wide: list[Audio] | None = [] if self.rtp.codec.wideband else None
        start = loop.time()
        state = {"total": 0, "loud_at": start, "loud_samples": 0}

        # The loudness test only matters when silence ends the recording; it is the costliest
        # step per frame, so it runs only then (and as an integer sum, not a float mean).
        def sink(pcm: Audio) -> None:
            frames.append(pcm)
            if tap is not None:
                tap(pcm)
            start = state["total"]
            state["total"] += len(pcm)
            if silence_seconds is None or not len(pcm):
                return
            # 20 ms frames judged one by one (RTP hands over a few frames at a time): the
            # recording is trimmed after the last loud frame, not the last loud chunk.
            last = _last_loud_frame(pcm, silence_threshold)
            if last is not None:
                state["loud_at"] = loop.time()
                state["loud_samples"] = start + last

        self.flush_digits()
        self.rtp.audio_sink = sink
        if wide is not None:
            self.rtp.wide_sink = wide.append
        reason = "max"
        try:
            while True:
                now = loop.time()
                waits = [start + max_seconds - now]
                if silence_seconds is not None:
                    waits.append(state["loud_at"] + silence_seconds - now)
                timeout = min(waits)
                if timeout <= 0:
                    reason = "max" if waits[0] <= 0 else "silence"
                    break
                self._digit_event.clear()
                await self._wait_any(self._digit_event, limit=timeout)
                if self.hung_up:
                    reason = "hangup"
                    break
                digit = next((d for d in self._digits if d in terminators), None)
                self._digits.clear()
                if digit is not None:
                    reason = digit
                    break
        finally:
            if self.rtp is not None:
                if reason != "hangup":  # on hangup, close() has flushed already
                    self.rtp.flush_audio()
                self.rtp.audio_sink = None
                self.rtp.wide_sink = None
        audio = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        wide_audio = None
        if wide is not None:
            wide_audio = np.concatenate(wide) if wide else np.zeros(0, dtype=np.int16)
            ratio = self.rtp.codec.rate // 8000
            wide_audio = wide_audio[: len(audio) * ratio]
        if reason == "silence":
            audio = audio[: int(state["loud_samples"])]
            if wide_audio is not None:
                wide_audio = wide_audio[: len(audio) * (self.rtp.codec.rate // 8000)]
        return RecordResult(audio, reason, wide_audio)

    async def get_digits(self, count: int, digit_timeout: float, terminators: str = "#") -> str:
        await self.answer()
        collected = ""
        while len(collected) < count:
            if self._digits:
                digit = self._digits.popleft()
                if digit in terminators:
                    break
                collected += digit
                continue
            self._digit_event.clear()
            got = await self._wait_any(self._digit_event, limit=digit_timeout)
            self._check()
            if not got:
                break
        return collected

    def flush_digits(self) -> None:
        self._digits.clear()

    async def transfer(self, target: str) -> bool:
        """Transfer the caller to ``target`` (a SIP URI): 302 while unanswered, REFER once
        answered. True when the network accepted it; the caller's phone then calls the
        target and ends this call itself. ``transfer_target`` records the request either way."""
        self.transfer_target = target
        if self.hung_up:
            return False
        if self._answering is None:
            return self._control.redirect_call(self, target)
        await self._answering
        accepted = await self._control.refer_call(self, target)
        log.info("call %s: transfer to %s %s", self.handle, target,
                 "accepted" if accepted else "refused")
        return accepted

    async def hangup(self) -> None:
        if not self.hung_up:
            self._control.hangup_call(self)

    # ---- helpers ----------------------------------------------------------------------
    def _check(self) -> None:
        if self.hung_up:
            raise ChannelHangup(self.hangup_reason or "hangup")

    async def _resolve(self, audio: Audio | str) -> Audio:
        if not isinstance(audio, str):
            return np.asarray(audio, dtype=np.int16)
        if self._prompt_loader is None:
            raise ValueError(f"prompt {audio!r} given but no prompt loader configured")
        loaded = self._prompt_loader(audio)
        if isinstance(loaded, Awaitable):
            loaded = await loaded
        return np.asarray(loaded, dtype=np.int16)

    async def _wide_prompt(self, name: str) -> Audio | None:
        """The 16 kHz version of a prompt for a G.722 call, when the sound set has one."""
        wide = getattr(self._prompt_loader, "wide", None)
        if wide is None:
            return None
        found = await wide(name)
        return None if found is None else np.asarray(found, dtype=np.int16)

    async def _wait(self, event: asyncio.Event) -> None:
        await self._wait_any(event)

    async def _wait_any(
        self, *waitables: asyncio.Event | asyncio.Future[bool], limit: float | None = None
    ) -> bool:
        """Wait for any of ``waitables`` or the hangup; False on timeout."""
        tasks: list[asyncio.Future[object]] = [asyncio.ensure_future(self.hangup_event.wait())]
        for w in waitables:
            if isinstance(w, asyncio.Event):
                tasks.append(asyncio.ensure_future(w.wait()))
            else:
                tasks.append(w)  # type: ignore[arg-type]
        try:
            done, _ = await asyncio.wait(tasks, timeout=limit,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                if isinstance(t, asyncio.Task) and not t.done():
                    t.cancel()
        return bool(done)


def _last_loud_frame(pcm: Audio, threshold: int, frame: int = 160) -> int | None:
    """The end (in samples) of the last 20 ms frame of ``pcm`` whose mean level reaches
    ``threshold``, or None when every frame is quieter."""
    level = np.abs(pcm, dtype=np.int32)
    whole = len(level) // frame * frame
    ends: list[int] = []
    if whole:
        sums = level[:whole].reshape(-1, frame).sum(axis=1)
        loud = np.flatnonzero(sums >= threshold * frame)
        if loud.size:
            ends.append(int(loud[-1] + 1) * frame)
    rest = level[whole:]
    if len(rest) and int(rest.sum()) >= threshold * len(rest):
        ends.append(len(level))
    return max(ends) if ends else None
