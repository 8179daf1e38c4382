"""Prompt audio for calls: a prompt name (with voicemail.conf overrides applied) to 8 kHz samples,
read once from the sounds directory and cached. A missing prompt never breaks a call: it is
logged once and played as a short silence."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imapvm.audio import formats, prompts

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]
SILENCE = np.zeros(1600, dtype=np.int16)  # 200 ms


class PromptLoader:
    def __init__(self, sounds: Path, override: Callable[[str], str] | None = None,
                 extra: tuple[Path, ...] = (prompts.SYNTH_DIR,)) -> None:
        self.sounds = sounds
        self.extra = extra
        self._override = override or (lambda name: name)
        self._cache: dict[str, Samples] = {}
        self._missing: set[str] = set()

    async def __call__(self, name: str) -> Samples:
        name = self._override(name)
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        path = prompts.find(self.sounds, name, self.extra)
        if path is None:
            if name not in self._missing:
                self._missing.add(name)
                log.warning("prompt %s not found under %s; playing silence", name, self.sounds)
            return SILENCE
        audio = await asyncio.to_thread(formats.read_file, path)
        samples = np.asarray(audio.samples, dtype=np.int16)
        self._cache[name] = samples
        return samples
