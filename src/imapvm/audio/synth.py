"""Prompts the installed sound set lacks, synthesised with espeak-ng.

`scripts/bootstrap.sh` runs this at install time (`python -m imapvm.audio.synth DIR`): every
required prompt that the sounds directory does not have is spoken into DIR as an 8 kHz WAV, so
a call never meets a silent gap. With Debian's asterisk-core-sounds-en-wav nothing is missing
today; the step guards against older or other sound sets. The texts follow what the Asterisk
prompts say; a prompt with no text here is spoken from its name.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from imapvm.audio import formats, prompts
from imapvm.audio.convert import to_telephony
from imapvm.audio.core import Audio

TEXTS = {
    "vm-intro": "Please leave your message after the tone. When done, hang up, or press the "
                "pound key.",
    "vm-login": "Comedian Mail. Mailbox?",
    "vm-password": "Password.",
    "vm-goodbye": "Goodbye.",
    "vm-youhave": "You have",
    "vm-no": "no",
    "vm-and": "and",
    "vm-message": "message",
    "vm-messages": "messages",
    "vm-INBOX": "new",
    "vm-Old": "old",
    "vm-Urgent": "urgent",
    "vm-first": "First message.",
    "vm-last": "Last message.",
    "vm-nomore": "No more messages.",
    "vm-deleted": "Message deleted.",
    "vm-undeleted": "Message undeleted.",
    "vm-incorrect": "Login incorrect.",
    "vm-incorrect-mailbox": "Login incorrect. Mailbox?",
    "vm-mailboxfull": "Sorry, but the user's mailbox is full.",
    "vm-theperson": "The person at extension",
    "vm-isunavail": "is unavailable.",
    "vm-isonphone": "is on the phone.",
    "vm-received": "received",
    "vm-sorry": "I'm sorry, I did not understand your response.",
    "vm-prepend-timeout": "then press pound.",
}


#: What the other languages' Debian sets lack and their grammar plays (``imapvm.ivr.lang``),
#: spoken by espeak-ng in that language into ``<out>/<code>/``.
LANGUAGE_TEXTS: dict[str, dict[str, str]] = {
    "es": {"digits/100": "cien", "vm-msgforwarded": "Mensaje reenviado.",
           "digits/billion": "mil millones"},
    "fr": {"digits/billion": "milliard", "digits/oh": "zéro"},
    "it": {},
    "ru": {"digits/100": "сто", "digits/200": "двести", "digits/300": "триста",
           "digits/400": "четыреста", "digits/500": "пятьсот", "digits/600": "шестьсот",
           "digits/700": "семьсот", "digits/800": "восемьсот", "digits/900": "девятьсот",
           "digits/1f": "одна", "digits/2f": "две", "digits/thousands-i": "тысячи",
           "digits/thousands": "тысяч", "digits/million-a": "миллиона",
           "digits/millions": "миллионов"},
}


def text_for(name: str) -> str:
    if name in TEXTS:
        return TEXTS[name]
    if name.startswith("digits/") and name[7:].isdigit():
        return name[7:]
    return name.rsplit("/", 1)[-1].removeprefix("vm-").replace("-", " ")


def speak(text: str, voice: str = "en-us") -> Audio:
    """espeak-ng at 150 words a minute, as 8 kHz telephony audio."""
    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "p.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text],
                       check=True, capture_output=True)
        data, rate = soundfile.read(wav, dtype="int16")
    return to_telephony(data, rate)


def beep() -> Audio:
    t = np.arange(int(0.4 * 8000)) / 8000
    return Audio(np.rint(np.sin(2 * np.pi * 1000 * t) * 0.4 * 32767).astype(np.int16))


def synthesise_missing(sounds: Path, out: Path) -> list[str]:
    """Write each required prompt missing from `sounds` (and `out`) into `out`."""
    made = []
    for name in prompts.missing(sounds, extra=(out,)):
        target = out / f"{name}.wav"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        audio = beep() if name == "beep" else speak(text_for(name))
        formats.write_file(target, audio, "wav")
        made.append(name)
    return made


def synthesise_languages(sounds: Path, out: Path) -> list[str]:
    """For each language whose set is installed beside ``sounds``, the prompts it lacks."""
    from imapvm.audio import language

    made = []
    for code, texts in LANGUAGE_TEXTS.items():
        own = language.sounds_dir(sounds, code)
        if own == sounds:
            continue  # that language is not installed
        for name, text in texts.items():
            target = out / code / f"{name}.wav"
            if prompts.find(own, name, ()) is not None or target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            formats.write_file(target, speak(text, code), "wav")
            made.append(f"{code}:{name}")
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, nargs="?", default=prompts.SYNTH_DIR,
                    help=f"where synthesised prompts go (default: {prompts.SYNTH_DIR})")
    ap.add_argument("--sounds", type=Path, default=prompts.DEFAULT_SOUNDS)
    args = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed; cannot synthesise missing prompts", file=sys.stderr)
        return 1
    made = synthesise_missing(args.sounds, args.out) + synthesise_languages(args.sounds,
                                                                            args.out)
    print(f"{len(made)} prompt(s) synthesised into {args.out}" + (f": {', '.join(made)}"
                                                                    if made else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
