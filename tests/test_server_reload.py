"""SIGHUP hands the new configuration to every part: the SIP server's next call plays prompts
with the reloaded overrides (they used to stay as at start), applied exactly once."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from imapvm.config.loader import load
from imapvm.server import VoicemailServer
from tests.support.net import free_port_udp_and_tcp

CONF = """[general]
format=wav
{override}

[default]
1234 => 4242,Alice Example
"""


def _wav(path: Path, samples: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.full(samples, 1000, dtype=np.int16).tobytes())


async def test_prompt_overrides_reach_calls_after_a_reload(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(CONF.format(override=""))
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    _wav(sounds / "vm-login.wav", 800)
    _wav(sounds / "my-login.wav", 1600)
    _wav(sounds / "vm-password.wav", 2400)
    port = free_port_udp_and_tcp()
    loaded = load(conf, None, {
        "sip.listen": [f"127.0.0.1:{port}"], "http.listen": "",
        "paths.spool": str(tmp_path / "spool"), "paths.outbox": str(tmp_path / "outbox"),
        "paths.sounds": str(sounds), "sip.rtp_ports": "35000-35998",
    })
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    server = VoicemailServer(loaded)
    await server.start()
    try:
        assert server.sip is not None
        loader = server.sip.prompt_loader
        assert loader is not None
        assert len(await loader("vm-login")) == 800
        conf.write_text(CONF.format(override="vm-login=my-login"))
        assert await server.reload()
        loader = server.sip.prompt_loader
        assert loader is server.prompts
        assert loader is not None
        assert loader.name_for("vm-login") == "my-login"
        assert len(await loader("vm-login")) == 1600
        # applied once: vm-login plays vm-password's file, not what vm-password is mapped to
        conf.write_text(CONF.format(override="vm-login=vm-password\nvm-password=my-login"))
        assert await server.reload()
        loader = server.sip.prompt_loader
        assert loader is not None
        assert len(await loader("vm-login")) == 2400
        assert len(await loader("vm-password")) == 1600
    finally:
        await server.stop(grace=5)
