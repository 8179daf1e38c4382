"""What the message builder needs to know about one mailbox, and nothing more.

The config layer (``voicemail.conf``) resolves mailbox-over-global precedence and hands the
builder an :class:`EmailSettings`. Keeping this a small frozen value instead of importing the
config model keeps ``message`` independent of how configuration is parsed, and makes every build
reproducible in tests from one literal.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from imapvm.audio.formats import lookup

#: Asterisk's default for ``emaildateformat`` (``%r`` is the locale's 12-hour time).
DEFAULT_DATE_FORMAT = "%A, %B %d, %Y at %r"


def _hostname() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class EmailSettings:
    """Per-mailbox inputs of the stored e-mail, already resolved (mailbox value over global).

    Template strings (``fromstring``, ``emailsubject``, ``emailbody``) are the raw config text:
    the builder applies the ``\\n \\r \\t \\\\`` escapes and ``${VM_*}`` substitution itself, so
    the config layer must not pre-expand escapes.
    """

    context: str
    mailbox: str
    #: ``imapvmshareid``: written to X-Asterisk-VM-Extension instead of the mailbox number.
    imapvmshareid: str = ""
    fullname: str = ""
    #: The mailbox's ``email`` field split on ``|`` (several To: recipients).
    emails: tuple[str, ...] = ()
    #: Used as the To: address when ``emails`` is empty, as Asterisk does (§2.1 step 6).
    imapuser: str = ""
    #: ``serveremail``; ``@hostname`` is appended when it has no ``@``.
    serveremail: str = "asterisk"
    #: Effective ``fromstring`` (mailbox value, else global): the From: display name template.
    fromstring: str = ""
    #: The *global* ``fromstring``, which Asterisk writes raw to X-Asterisk-VM-Server-Name.
    global_fromstring: str = ""
    emailsubject: str | None = None
    emailbody: str | None = None
    emaildateformat: str = DEFAULT_DATE_FORMAT
    charset: str = "ISO-8859-1"
    pbxskip: bool = False
    #: IANA zone name (from the mailbox's ``tz`` → ``[zonemessages]``), None = system local time.
    tz: str | None = None
    #: The ``format`` list; its first entry is the stored format unless ``attachfmt`` is set.
    formats: tuple[str, ...] = ("wav",)
    attachfmt: str | None = None
    #: Extra formats for mail clients only (e.g. ``("mp3",)``), nested away from Asterisk.
    client_formats: tuple[str, ...] = ()
    hostname: str = field(default_factory=_hostname)

    @property
    def extension(self) -> str:
        """Value of X-Asterisk-VM-Extension: the share id if set, else the mailbox number."""
        return self.imapvmshareid or self.mailbox

    @property
    def sender(self) -> str:
        """The From: address (``serveremail``, qualified with the host name when bare)."""
        if "@" in self.serveremail:
            return self.serveremail
        return f"{self.serveremail}@{self.hostname}"

    @property
    def recipients(self) -> tuple[str, ...]:
        """To: addresses; falls back to ``imapuser`` like Asterisk's IMAP store path."""
        addrs = tuple(a.strip() for a in self.emails if a.strip())
        if addrs:
            return addrs
        return (self.imapuser,) if self.imapuser else ()

    @property
    def requested_format(self) -> str:
        """``attachfmt``, else the first ``format`` entry (canonical name)."""
        return lookup(self.attachfmt or (self.formats[0] if self.formats else "wav")).name

    @property
    def preferred_format(self) -> str:
        """The format of MIME part 2, the one Asterisk plays: :attr:`requested_format`.

        Formats Asterisk cannot play (mp3, opus) are never put where Asterisk looks; part 2 then
        falls back to ``gsm`` and the requested format goes to :attr:`extra_formats`.
        """
        fmt = lookup(self.requested_format)
        return fmt.name if fmt.asterisk_playable else "gsm"

    @property
    def extra_formats(self) -> tuple[str, ...]:
        """Formats attached for mail clients only (nested in part 1), without duplicates."""
        out: list[str] = []
        for name in ("gsm", self.requested_format, *self.client_formats):
            canonical = lookup(name).name
            if canonical != self.preferred_format and canonical not in out:
                out.append(canonical)
        return tuple(out)
