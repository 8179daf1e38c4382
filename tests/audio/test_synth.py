"""Prompts missing from the sound set are synthesised and then found like the real ones."""

from __future__ import annotations

from pathlib import Path

from imapvm.audio import formats, prompts
from imapvm.audio.prompt_loader import SILENCE, PromptLoader
from imapvm.audio.synth import synthesise_missing, text_for


async def test_missing_prompts_are_synthesised_and_played(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    real = prompts.DEFAULT_SOUNDS
    for name in prompts.REQUIRED:  # a sound set that lacks three prompts
        if name not in ("vm-intro", "digits/7", "beep"):
            src = prompts.find(real, name, extra=())
            assert src is not None
            (sounds / f"{name}{src.suffix}").write_bytes(src.read_bytes())
    out = tmp_path / "synth"
    made = synthesise_missing(sounds, out)
    assert sorted(made) == ["beep", "digits/7", "vm-intro"]
    intro = formats.read_file(out / "vm-intro.wav")
    assert 3 < intro.whole_seconds < 10  # the whole instruction, spoken
    assert synthesise_missing(sounds, out) == []  # idempotent
    assert prompts.missing(sounds, extra=(out,)) == []
    loader = PromptLoader(sounds, extra=(out,))
    assert len(await loader("digits/7")) > 1000
    assert (await loader("no-such-prompt") == SILENCE).all()


def test_texts() -> None:
    assert text_for("digits/7") == "7"
    assert text_for("vm-login") == "Comedian Mail. Mailbox?"
    assert text_for("vm-tempgreeting2") == "tempgreeting2"
