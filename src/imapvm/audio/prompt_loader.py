"""Prompt audio for calls: a prompt name (with voicemail.conf overrides applied) to 8 kHz samples,
read once from the sounds directory and cached. A missing prompt never breaks a call: it is
logged once and played as a short silence.

The call's language (``imapvm.audio.language``) picks the directory: that language's prompt
first, then the English one (as Asterisk falls back), then the synthesised set."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imapvm.audio import formats, g722, language, prompts

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]
SILENCE = np.zeros(1600, dtype=np.int16)  # 200 ms


class PromptLoader:
    def __init__(self, sounds: Path, override: Callable[[str], str] | None = None,
                 extra: tuple[Path, ...] = (prompts.SYNTH_DIR,)) -> None:
        self.sounds = sounds
        self.extra = extra
        self._override = override or (lambda name: name)
        self._cache: dict[tuple[str, str], Samples] = {}
        self._missing: set[tuple[str, str]] = set()
        self._wide: dict[tuple[str, str], Samples | None] = {}

    def find(self, name: str, code: str | None = None) -> Path | None:
        """The file a prompt of language ``code`` (default: the call's) is played from."""
        code = language.normalize(code or language.current())
        synth, *others = self.extra or (None,)
        first, *rest = language.search_path(self.sounds, code, synth)
        return prompts.find(first, name, (*rest, *(p for p in others if p is not None)))

    def name_for(self, name: str) -> str:
        """The prompt played for `name`: voicemail.conf's override (`vm-login=...`) applied.
        This is the one place overrides are applied; flows ask for the standard names."""
        return self._override(name)

    async def wide(self, name: str) -> Samples | None:
        """The prompt at 16 kHz for wideband (G.722) calls: the ``.g722`` file beside the one
        :meth:`__call__` plays (Debian's asterisk-core-sounds-*-g722), or None when there is
        none (the call then plays the 8 kHz prompt, upsampled)."""
        name = self.name_for(name)
        key = (language.current(), name)
        if key in self._wide:
            return self._wide[key]
        path = self.find(name, key[0])
        found = None
        if path is not None and path.with_suffix(".g722").is_file():
            data = await asyncio.to_thread(path.with_suffix(".g722").read_bytes)
            try:
                found = await asyncio.to_thread(g722.decode, data)
            except Exception as exc:  # a damaged file plays narrowband, it never breaks a call
                log.warning("prompt %s: %s unusable (%s)", name, path.with_suffix(".g722"), exc)
        self._wide[key] = found
        return found

    async def __call__(self, name: str) -> Samples:
        name = self.name_for(name)
        key = (language.current(), name)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        path = self.find(name, key[0])
        if path is None:
            if key not in self._missing:
                self._missing.add(key)
                log.warning("prompt %s (%s) not found under %s; playing silence", name, key[0],
                            self.sounds)
            return SILENCE
        audio = await asyncio.to_thread(formats.read_file, path)
        samples = np.asarray(audio.samples, dtype=np.int16)
        self._cache[key] = samples
        return samples
