"""How a notification leaves: Asterisk's ``mailcmd`` or, for hosts without an MTA, SMTP.

* ``mailcmd`` (default ``/usr/sbin/sendmail -t``): the message is written to the command's
  standard input with LF line ends, as Asterisk pipes it; ``-t`` makes sendmail take the
  recipients from the headers. No shell; a timeout; a non-zero exit is a failed send.
* ``[smtp]`` in imapvm.toml: submission with aiosmtplib (STARTTLS and AUTH when configured),
  envelope sender ``serveremail`` and the mailbox's addresses as recipients.

Either raises :class:`SendError` with a one-line reason; the queue retries later. An SMTP
server's permanent refusal of this message (every recipient refused with 5xx, or DATA answered
5xx) raises :class:`RefusedForGood`: the queue sets the item aside instead of retrying it. A 5xx
that would refuse every message alike (the sender address, the login) stays a retry: once the
configuration is fixed, what waited goes out by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import aiosmtplib

from imapvm.config.settings import SmtpSettings
from imapvm.external import CommandError, describe, run_command

log = logging.getLogger(__name__)


class SendError(Exception):
    """The message was not accepted; sending again later may work."""


class RefusedForGood(SendError):
    """The server refused this message permanently (5xx); sending it again will not work."""


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
            refused, _ = await aiosmtplib.send(
                message, sender=sender, recipients=list(recipients), hostname=s.host,
                port=s.port, start_tls=s.starttls, use_tls=False,
                username=s.username or None, password=s.password or None,
                timeout=s.timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            why = "; ".join(f"{r.recipient}: {r.code} {_squash(r.message)}" for r in exc.recipients)
            if all(r.code >= 500 for r in exc.recipients):
                raise RefusedForGood(f"{self}: every recipient refused: {why}") from None
            raise SendError(f"{self}: recipients refused for now: {why}") from None
        except aiosmtplib.SMTPDataError as exc:
            error = RefusedForGood if exc.code >= 500 else SendError
            raise error(f"{self}: message refused: {exc.code} {_squash(exc.message)}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"{self}: {_one_line(exc)}") from None
        for rcpt, response in refused.items():  # sent to the others: say who did not get it
            log.warning("%s refused recipient %s: %s %s", self, rcpt, response.code,
                        _squash(response.message))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _squash(text: str) -> str:
    return " ".join(text.split())[:200]
