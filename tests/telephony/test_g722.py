"""G.722 on the line with the Python phone: chosen over G.711 whatever the offer's order, RTP
clock at 8000 Hz (RFC 3551), and prompts played from the wideband sound set when it has them."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from imapvm.audio import g722
from imapvm.audio.prompt_loader import PromptLoader
from imapvm.telephony.channel import SipChannel
from imapvm.telephony.rtp.packet import parse_rtp
from imapvm.telephony.server import SipServer, SipSettings

from .pyphone import PyPhone

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
pytestmark = [pytest.mark.timeout(60)]


def high_band(pcm: np.ndarray) -> float:
    """Share of the energy between 4.5 and 7.5 kHz (nothing an 8 kHz prompt can carry)."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 16000)
    return float(spectrum[(freqs >= 4500) & (freqs < 7500)].sum() / spectrum.sum())


async def heard_prompt(sounds: Path) -> tuple[np.ndarray, list[int], list[int]]:
    """Call with "PCMU then G.722", hear vm-goodbye; (16 kHz audio, payload types, ts steps)."""
    done = asyncio.Event()

    async def handler(channel: SipChannel) -> None:
        await channel.answer()
        await channel.play("vm-goodbye")
        done.set()
        await channel.hangup()

    settings = SipSettings(host="127.0.0.1", port=0, rtp_ports=(35000, 35998))
    async with SipServer(settings, handler, prompt_loader=PromptLoader(sounds, extra=())) as srv:
        phone = PyPhone("127.0.0.1", srv.address)
        await phone.open()
        try:
            resp = await phone.call(codecs="0 9")
            assert resp.status == 200
            assert b"m=audio" in resp.body
            assert b"a=rtpmap:9 G722/8000" in resp.body
            await asyncio.wait_for(done.wait(), 15)
            packets = []
            while not phone.rtp.queue.empty():
                data, _ = phone.rtp.queue.get_nowait()
                packet = parse_rtp(data)
                if packet is not None:
                    packets.append(packet)
        finally:
            phone.close()
    decoder = g722.G722Decoder()
    audio = np.concatenate([decoder.decode(p.payload) for p in packets])
    steps = sorted({(b.timestamp - a.timestamp) & 0xFFFFFFFF
             for a, b in itertools.pairwise(packets)})
    return audio, sorted({p.payload_type for p in packets}), steps


async def test_g722_is_chosen_and_plays_wideband_prompts(tmp_path: Path) -> None:
    assert (SOUNDS / "vm-goodbye.g722").is_file(), "asterisk-core-sounds-en-g722 missing"
    wide, types, steps = await heard_prompt(SOUNDS)
    assert types == [9]
    assert steps == [160]  # 20 ms is 160 ticks of the 8000 Hz RTP clock, 320 samples
    narrow_set = tmp_path / "narrow"
    narrow_set.mkdir()
    shutil.copy(SOUNDS / "vm-goodbye.wav", narrow_set)  # no .g722 beside it: upsampled
    narrow, _, _ = await heard_prompt(narrow_set)
    loud = np.abs(wide) > 500
    assert loud.sum() > 8000  # the prompt, not silence
    print(f"high band: wideband prompt {high_band(wide):.4f}, upsampled {high_band(narrow):.6f}")
    assert high_band(wide) > 0.0005
    assert high_band(wide) > 20 * high_band(narrow)
