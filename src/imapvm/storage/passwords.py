"""Mailbox passwords changed by phone, persisted where voicemail.conf says (`passwordlocation`).

- `voicemail.conf` (the default): the mailbox line's password field is rewritten in place, in
  the file and at the line it was read from. Asterisk regenerates the whole file instead, losing
  comments and layout; only that one field changes here, atomically (temp file + rename).
- `spooldir`: `<spool>/<context>/<mailbox>/secret.conf` holds `[general]` / `password=`, as
  Asterisk writes it; it overrides voicemail.conf when present.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from imapvm.config.model import MailboxSettings
from imapvm.config.voicemail import VoicemailConfig
from imapvm.storage.base import MailboxRef
from imapvm.storage.fsutil import write_durably

_LINE = re.compile(rb"^(\s*)([^=;\s]+)(\s*=>?\s*)(-?)([^,;\r\n]*)(.*)$", re.S)


class PasswordError(Exception):
    """The password cannot be stored (locked, or the file changed under us)."""


def secret_path(spool: Path, box: MailboxRef) -> Path:
    return spool / box.context / box.mailbox / "secret.conf"


def read_secret(spool: Path, box: MailboxRef) -> str | None:
    path = secret_path(spool, box)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "password":
            return value.strip()
    return None


def spooldir_passwords(config: VoicemailConfig, spool: Path) -> dict[MailboxRef, str]:
    """Passwords from secret.conf for the mailboxes that keep them there."""
    out = {}
    for ms in config.all_effective():
        if ms.passwordlocation == "spooldir":
            box = MailboxRef(ms.mailbox, ms.context)
            secret = read_secret(spool, box)
            if secret is not None:
                out[box] = secret
    return out


def rewrite_mailbox_line(line: bytes, mailbox: str, new_password: str) -> bytes:
    """The same `ext => password,name,...` line with only the password replaced."""
    m = _LINE.match(line)
    if m is None or m.group(2).decode("latin-1").strip() != mailbox:
        raise PasswordError(f"line is not the definition of mailbox {mailbox}: {line[:60]!r}")
    if m.group(4) == b"-":
        raise PasswordError(f"mailbox {mailbox}: the password is locked ('-')")
    return m.group(1) + m.group(2) + m.group(3) + new_password.encode() + m.group(6)


def save_in_voicemail_conf(ms: MailboxSettings, new_password: str) -> Path:
    loc = ms.location
    if loc is None or not loc.line:
        raise PasswordError(f"mailbox {ms.id}: do not know where it is defined")
    path = Path(loc.file)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if loc.line > len(lines):
        raise PasswordError(f"{path} changed since it was read (line {loc.line} is gone)")
    lines[loc.line - 1] = rewrite_mailbox_line(lines[loc.line - 1], ms.mailbox, new_password)
    write_durably(path, b"".join(lines))
    return path


async def save_password(config: VoicemailConfig, spool: Path, box: MailboxRef,
                        new_password: str) -> Path:
    """Persist a new password as `passwordlocation` says; returns the file written."""
    if not re.fullmatch(r"[0-9*#]{1,64}", new_password):
        raise PasswordError("a mailbox password is 1-64 keypad characters")
    ms = config.effective(box.mailbox, box.context)
    if ms.password_locked:
        raise PasswordError(f"mailbox {box}: the password is locked ('-')")
    if ms.passwordlocation == "spooldir":
        path = secret_path(spool, box)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(path, f";\n; Password for {box}\n;\n[general]\npassword={new_password}\n"
                          .encode())

        await asyncio.to_thread(write)
        return path
    return await asyncio.to_thread(save_in_voicemail_conf, ms, new_password)
