"""Mailbox passwords changed by phone, persisted where voicemail.conf says (`passwordlocation`).

- `voicemail.conf` (the default): the mailbox line's password field is rewritten in place, in
  the file and at the line it was read from. Asterisk regenerates the whole file instead, losing
  comments and layout; only that one field changes here, atomically (temp file + rename).
- `spooldir`: `<spool>/<context>/<mailbox>/secret.conf` holds `[general]` / `password=`, as
  Asterisk writes it; it overrides voicemail.conf when present.

The site's own policies, as Asterisk runs them (but without a shell, with a timeout, and never
logging a password):

- `minpassword`: shorter passwords are refused; so is one starting with `*` (the menu key).
- `externpasscheck = /path/check`: run as `check <mailbox> <context> <old> <new>`; the first line
  of its output decides: `VALID...` accepts, `FAILURE...` (the script could not check) accepts
  with a warning, anything else (`INVALID`...) refuses and the caller hears
  `vm-invalid-password`. A script that cannot be run or outlives the timeout counts as
  `FAILURE`, as a failed fork does in Asterisk.
- `externpass = /path/set`: the password is changed by the site's command only, run as
  `set <context> <mailbox> <new>`; a non-zero exit means it was not changed.
- `externpassnotify = /path/notify`: the password is stored as usual, then the command is run
  with the same arguments to tell the site (its failure is logged, the change stands).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from imapvm.config.model import MailboxSettings
from imapvm.config.voicemail import VoicemailConfig
from imapvm.external import CommandError, describe, run_command
from imapvm.storage.base import MailboxRef
from imapvm.storage.fsutil import write_durably

log = logging.getLogger(__name__)

#: How long a caller may wait for the site's password commands.
COMMAND_TIMEOUT = 10.0

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


async def check_new_password(config: VoicemailConfig, ms: MailboxSettings, old: str, new: str
                             ) -> bool:
    """Asterisk's check_password: `minpassword`, no leading `*`, then `externpasscheck`."""
    if len(new) < ms.minpassword or new.startswith("*"):
        return False
    command = config.general.text("externpasscheck").strip()
    if not command:
        return True
    try:
        result = await run_command(command, (ms.mailbox, ms.context, old, new),
                                   timeout=COMMAND_TIMEOUT)
    except CommandError as exc:
        log.warning("externpasscheck for %s could not check the new password (%s); accepted, "
                    "as Asterisk does", ms.id, exc)
        return True
    verdict = result.first_line()
    if verdict[:5].upper() == "VALID":
        return True
    if verdict[:7].upper() == "FAILURE":
        log.warning("externpasscheck %s for %s failed (exit %d); the new password is accepted, "
                    "as Asterisk does", describe(command), ms.id, result.returncode)
        return True
    log.info("externpasscheck %s refused the new password of %s", describe(command), ms.id)
    return False


async def change_password(config: VoicemailConfig, spool: Path, box: MailboxRef,
                          new_password: str) -> str:
    """Change a password as voicemail.conf says: stored (`save_password`), or handed to
    `externpass`, with `externpassnotify` told afterwards. Returns where it went; raises
    PasswordError when it was not changed."""
    external = config.general.text("externpass").strip()
    notify = config.general.text("externpassnotify").strip()
    ms = config.effective(box.mailbox, box.context)
    if external:
        if ms.password_locked:
            raise PasswordError(f"mailbox {box}: the password is locked ('-')")
        try:
            result = await run_command(external, (ms.context, ms.mailbox, new_password),
                                       timeout=COMMAND_TIMEOUT)
        except CommandError as exc:
            raise PasswordError(f"externpass: {exc}") from None
        if not result.ok:
            raise PasswordError(f"externpass {describe(external)} exited with status "
                                f"{result.returncode}; the password is unchanged")
        return f"externpass {describe(external)}"
    path = await save_password(config, spool, box, new_password)
    if notify:
        try:
            result = await run_command(notify, (ms.context, ms.mailbox, new_password),
                                       timeout=COMMAND_TIMEOUT)
            if not result.ok:
                log.warning("externpassnotify %s exited with status %d for %s",
                            describe(notify), result.returncode, box)
        except CommandError as exc:
            log.warning("externpassnotify for %s: %s", box, exc)
    return str(path)
