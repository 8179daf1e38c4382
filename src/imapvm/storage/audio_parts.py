"""Find the recording (and a forward-with-comment intro) inside a stored voicemail email.

Storage hands audio to the voice menus without caring which layout wrote the email: Asterisk's
(audio as the 2nd top-level part, intro as the 3rd) or any additive layout that keeps the audio
attachments named `msgNNNN.<fmt>` / `msgintroNNNN.<fmt>` / `<greeting>.<fmt>`. Every leaf part
whose file name has an audio extension counts; the intro is the one whose name has "intro".
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import Message

AUDIO_EXTENSIONS = ("wav", "gsm", "wav49", "ulaw", "alaw", "g722", "sln", "mp3", "ogg", "opus",
                    "wav16", "sln16")
MAX_PART = 128 << 20  # Asterisk refuses bigger parts (ASTERISK-25899); so do we


class AudioMissing(ValueError):
    """The email carries no recognisable audio attachment."""


@dataclass(frozen=True)
class AudioPart:
    data: bytes
    fmt: str  # the file extension, lower-case ("wav", "gsm", "wav49" for WAV)
    filename: str


@dataclass(frozen=True)
class VoicemailAudio:
    message: AudioPart
    intro: AudioPart | None = None
    alternatives: tuple[AudioPart, ...] = ()


def _fmt(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1] if "." in filename else ""
    if ext == "WAV":  # Asterisk attaches wav49 (GSM in WAV) as .WAV
        return "wav49"
    return ext.lower()


def _filename(part: Message) -> str:
    name = part.get_filename() or part.get_param("name") or ""
    return str(name)


def extract_audio(raw: bytes, prefer: tuple[str, ...] = ("wav", "wav49", "gsm")) -> VoicemailAudio:
    """The recording in the first preferred format present, the intro, and every alternative."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    message_parts: list[AudioPart] = []
    intros: list[AudioPart] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = _filename(part)
        fmt = _fmt(name)
        if fmt not in AUDIO_EXTENSIONS:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        if len(payload) > MAX_PART:
            raise AudioMissing(f"audio part {name} is larger than 128 MiB")
        target = intros if "intro" in name.lower() else message_parts
        target.append(AudioPart(payload, fmt, name))
    if not message_parts:
        raise AudioMissing("no audio attachment in the message")
    ranked = sorted(message_parts, key=lambda p: prefer.index(p.fmt) if p.fmt in prefer
                    else len(prefer))
    intro = None
    if intros:
        intro = sorted(intros, key=lambda p: prefer.index(p.fmt) if p.fmt in prefer
                       else len(prefer))[0]
    return VoicemailAudio(message=ranked[0], intro=intro, alternatives=tuple(ranked))
