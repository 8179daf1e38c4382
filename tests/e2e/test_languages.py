"""A call in Spanish, end to end: baresip asks for Spanish in the Request-URI and leaves a
message through `imapvm serve`; what it heard is the Spanish recordings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile

from imapvm.audio import language, prompts
from tests.e2e.serve import serve_config
from tests.support.baresip import start_baresip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _prompt(code: str, name: str) -> np.ndarray:
    path = prompts.find(language.sounds_dir(prompts.DEFAULT_SOUNDS, code), name, ())
    assert path is not None, (code, name)
    data, _ = soundfile.read(path, dtype="int16")
    return np.asarray(data)


async def test_a_call_in_spanish_leaves_a_message(tmp_path: Path) -> None:
    from tests.support.speech import speech
    from tests.telephony.conftest import best_correlation, read_pcm

    # The mailbox has no language of its own: the call's ;language=es decides. maxsecs ends
    # the recording by itself, so nothing here waits on a guessed prompt length.
    serve = await serve_config(tmp_path, "[general]\nformat=wav\nmaxsecs=3\nminsecs=0\n\n"
                                         "[default]\n1234 => 4242,Ana\n")
    caller = tmp_path / "caller.wav"
    await asyncio.to_thread(soundfile.write, caller, speech(60.0).samples, 8000,
                            subtype="PCM_16")
    phone = await start_baresip(tmp_path / "caller", caller,
                                dial=f"sip:1234@127.0.0.1:{serve.sip_port};language=es")
    try:
        await phone.wait_event("CALL_ESTABLISHED", within=10)
        await phone.wait_event("CALL_CLOSED", within=60)  # imapvm hangs up after "adiós"
    finally:
        await phone.stop()
    heard = np.concatenate([read_pcm(p) for p in phone.recordings])
    for name in ("vm-theperson", "vm-isunavail", "vm-goodbye"):
        spanish = best_correlation(_prompt("es", name), heard)
        english = best_correlation(_prompt("en", name), heard)
        assert spanish > 0.9, (name, spanish)
        assert english < 0.8, (name, english)
    # the message itself is stored (spool: INBOX of 1234 in context default)
    inbox = tmp_path / "spool" / "default" / "1234" / "INBOX"
    async with asyncio.timeout(10):
        while not list(inbox.glob("msg0000.txt")):  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.1)
    assert await serve.stop() == 0
