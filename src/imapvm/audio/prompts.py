"""The prompt set the voice menus use, and where to find it.

Prompts are Asterisk's core sounds (Debian's asterisk-core-sounds-en-wav), found by name under
the configured sounds directory as `<name>.<ext>`; names may contain a subdirectory
(`digits/1`). `missing()` is what `imapvm doctor` reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
#: Prompts the sound set lacks, synthesised at install time (`imapvm.audio.synth`), in the
#: environment imapvm is installed in; searched after the sounds directory.
SYNTH_DIR = Path(sys.prefix) / "share" / "imapvm" / "prompts"
EXTENSIONS = ("wav", "WAV", "gsm", "ulaw", "alaw", "sln")

#: Every prompt app_voicemail's leave-message and VoiceMailMain flows play (reference §4-§5),
#: plus the digits and words English number and date saying needs.
REQUIRED: tuple[str, ...] = (
    "beep", "transfer",
    "vm-INBOX", "vm-Old", "vm-Urgent", "vm-Work", "vm-Family", "vm-Friends",
    "vm-advopts", "vm-and", "vm-calldiffnum", "vm-changeto", "vm-delete", "vm-deleted",
    "vm-dialout", "vm-duration", "vm-enter-num-to-call", "vm-extension", "vm-first", "vm-for",
    "vm-forward", "vm-forwardoptions", "vm-from-extension", "vm-from-phonenumber", "vm-goodbye",
    "vm-helpexit", "vm-incorrect", "vm-incorrect-mailbox", "vm-intro", "vm-invalid-password",
    "vm-isonphone", "vm-isunavail", "vm-last", "vm-leavemsg", "vm-login", "vm-mailboxfull",
    "vm-marked-nonurgent", "vm-marked-urgent", "vm-message", "vm-messages", "vm-minutes",
    "vm-mismatch", "vm-msgforwarded", "vm-msgsaved", "vm-newpassword", "vm-newuser", "vm-next",
    "vm-no", "vm-nobox", "vm-nomore", "vm-nonumber", "vm-num-i-have", "vm-onefor", "vm-options",
    "vm-opts", "vm-passchanged", "vm-password", "vm-pls-try-again", "vm-press", "vm-prev",
    "vm-reachoper", "vm-rec-busy", "vm-rec-name", "vm-rec-temp", "vm-rec-unv", "vm-received",
    "vm-record-prepend", "vm-reenterpassword", "vm-repeat", "vm-review", "vm-review-nonurgent",
    "vm-review-urgent", "vm-savedto", "vm-savefolder", "vm-savemessage", "vm-saveoper",
    "vm-sorry", "vm-star-cancel", "vm-starmain", "vm-tempgreetactive", "vm-tempgreeting2",
    "vm-tempremoved", "vm-then-pound", "vm-theperson", "vm-tmpexists", "vm-tocallback",
    "vm-tocallnum", "vm-tocancel", "vm-toforward", "vm-tohearenv", "vm-tomakecall",
    "vm-toreply", "vm-torerecord", "vm-undelete", "vm-undeleted", "vm-unknown-caller",
    "vm-whichbox", "vm-youhave",
    "vm-Cust1", "vm-Cust2", "vm-Cust3", "vm-Cust4", "vm-Cust5", "vm-onefor-full",
    "vm-opts-full", "pbx-invalid",
    "digits/oh", "digits/star", "digits/pound", "digits/minus", "digits/million",
    "digits/billion",
    *(f"digits/{n}" for n in (*range(0, 21), 30, 40, 50, 60, 70, 80, 90)),
    "digits/hundred", "digits/thousand", "digits/oclock", "digits/at", "digits/a-m",
    "digits/p-m", "digits/today", "digits/yesterday",
    *(f"digits/day-{d}" for d in range(7)),
    *(f"digits/mon-{m}" for m in range(12)),
    *(f"digits/h-{n}" for n in (*range(1, 21), 30)),  # 21st = "twenty" + "h-1", as Asterisk
)


def find(sounds: Path, name: str, extra: tuple[Path, ...] = (SYNTH_DIR,)) -> Path | None:
    """The file of a prompt, in the first extension present: the sounds directory first, then
    the synthesised prompts."""
    for directory in (sounds, *extra):
        for ext in EXTENSIONS:
            p = directory / f"{name}.{ext}"
            if p.is_file():
                return p
    return None


def missing(sounds: Path, names: tuple[str, ...] = REQUIRED,
            extra: tuple[Path, ...] = (SYNTH_DIR,)) -> list[str]:
    return [n for n in names if find(sounds, n, extra) is None]
