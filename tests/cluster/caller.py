"""A caller that leaves a message through any SIP hop: the Python phone, paced like a phone.

It calls a mailbox, presses ``#`` to skip the greeting to the beep, then speaks (G.711 u-law
RTP every 20 ms) until told to stop, so a test can kill the server while the caller talks.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np

from imapvm.audio.g711 import ulaw_encode
from imapvm.telephony.sip.message import SipRequest, SipResponse
from tests.support.speech import speech
from tests.telephony.pyphone import PyPhone

FRAME = 160


class TalkingCaller:
    def __init__(self, server: tuple[str, int], mailbox: str = "1234",
                 user_host: str | None = None) -> None:
        self.phone = PyPhone("127.0.0.1", server)
        self.mailbox = mailbox
        self.user_host = user_host
        self.sent_samples = 0
        self._talk: asyncio.Task[None] | None = None
        self._seq = 1
        self.status: int | None = None

    async def start(self, within: float = 10.0) -> int:
        """Call and, once answered, skip the greeting and start talking; the final status."""
        await self.phone.open()
        async with asyncio.timeout(within):
            resp = await self.phone.call(self.mailbox, codecs="0")
        self.status = resp.status
        if resp.status != 200:
            return resp.status
        await asyncio.sleep(0.3)  # the greeting starts playing (pacing, not synchronisation)
        self._seq = await self.phone.send_dtmf("#", seq=self._seq, ts=self._seq * FRAME)
        self._talk = asyncio.create_task(self._speak())
        return 200

    async def _speak(self) -> None:
        audio = speech(60.0).samples
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            chunk = audio[(n * FRAME) % (len(audio) - FRAME):][:FRAME]
            self.phone.send_rtp(self._seq, ulaw_encode(np.asarray(chunk, dtype=np.int16)),
                                pt=0, ts=self._seq * FRAME)
            self._seq += 1
            n += 1
            self.sent_samples += FRAME
            self.phone.drain_rtp()
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    async def hang_up(self, within: float = 10.0) -> int:
        """Stop talking and send BYE; the status of the BYE's response (0 if none came)."""
        await self.stop_talking()
        uri = getattr(self.phone, "uri", None)
        if uri is None:
            return 0
        self.phone.send_request("BYE", uri, extra=self.phone.route)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    msg = await self.phone.next_sip(within)
                    if isinstance(msg, SipResponse) and msg.headers.get("CSeq", "").endswith(
                            "BYE"):
                        return msg.status
                    if isinstance(msg, SipRequest):
                        self.phone.respond(msg, 200)
        return 0

    async def stop_talking(self) -> None:
        if self._talk is not None:
            self._talk.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._talk
            self._talk = None

    async def close(self) -> None:
        await self.stop_talking()
        self.phone.close()


def journal_bytes(outbox: Path) -> int:
    """Audio bytes the server has written into its recording journal so far."""
    return sum(p.stat().st_size for p in (outbox / "recording").glob("*/audio.s16"))
