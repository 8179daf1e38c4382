"""How a notification leaves: Asterisk's ``mailcmd`` or, for hosts without an MTA, SMTP.

* ``mailcmd`` (default ``/usr/sbin/sendmail -t``): the message is written to the command's
  standard input with LF line ends, as Asterisk pipes it; ``-t`` makes sendmail take the
  recipients from the headers. No shell; a timeout; a non-zero exit is a failed send.
* ``[smtp]`` in imapvm.toml: submission with aiosmtplib (STARTTLS and AUTH when configured),
  envelope sender ``serveremail`` and the mailbox's addresses as recipients.

Either raises :class:`SendError` with a one-line reason; the queue retries later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import aiosmtplib

from imapvm.config.settings import SmtpSettings
from imapvm.external import CommandError, describe, run_command


class SendError(Exception):
    """The message was not accepted; sending again later may work."""


class Transport(Protocol):
    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None: ...


class MailCommand:
    """``mailcmd``: the message on the command's standard input."""

    def __init__(self, command: str, timeout: float = 60.0) -> None:
        self.command = command
        self.timeout = timeout

    def __str__(self) -> str:
        return describe(self.command)

    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
        try:
            result = await run_command(self.command, stdin=message.replace(b"\r\n", b"\n"),
                                       timeout=self.timeout)
        except CommandError as exc:
            raise SendError(str(exc)) from None
        if not result.ok:
            why = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SendError(f"{self} exited with status {result.returncode}"
                            + (f": {why[0][:200]}" if why else ""))


class Smtp:
    """SMTP submission as configured in ``[smtp]``."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def __str__(self) -> str:
        return f"smtp://{self.settings.host}:{self.settings.port}"

    async def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                message, sender=sender, recipients=list(recipients), hostname=s.host,
                port=s.port, start_tls=s.starttls, use_tls=False,
                username=s.username or None, password=s.password or None,
                timeout=s.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"{self}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
