"""Every voicemail.conf directive: its type, Asterisk's default, and where it may be written.

One table instead of a chain of `if name == ...` branches: the loader, the "did you mean"
suggestions, the per-mailbox precedence and `imapvm check` all read the same list, so a directive
cannot be known to one of them and unknown to another.
"""

from __future__ import annotations

import codecs
import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

Warn = Callable[[str], None]


class BadValue(ValueError):
    """A value that cannot mean anything; reported as an error at the directive's line."""


class Scope(enum.Flag):
    GENERAL = enum.auto()
    MAILBOX = enum.auto()
    BOTH = GENERAL | MAILBOX


TRUE_WORDS = frozenset({"yes", "true", "y", "t", "1", "on"})
FALSE_WORDS = frozenset({"no", "false", "n", "f", "0", "off"})
"""Asterisk's `ast_true`/`ast_false` vocabularies."""

MAXMSG_LIMIT = 9999
DTMF = frozenset("0123456789*#ABCDabcd")
KNOWN_FORMATS = frozenset(
    {
        "wav49", "gsm", "wav", "wav16", "ulaw", "alaw", "g722", "g729", "g723sf", "g726-40",
        "g726-32", "g726-24", "g726-16", "sln", "sln12", "sln16", "sln24", "sln32", "sln44",
        "sln48", "sln96", "sln192", "raw", "ilbc", "siren7", "siren14", "vox", "ogg",
    }
)  # fmt: skip


def parse_bool(raw: str, warn: Warn) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadValue(f"'{raw}' is not a boolean (use yes or no)")


def parse_int(raw: str, warn: Warn, minimum: int = 0, maximum: int | None = None) -> int:
    text = raw.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise BadValue(f"'{raw}' is not an integer")
    value = int(text)
    if value < minimum:
        raise BadValue(f"{value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise BadValue(f"{value} is above the maximum {maximum}")
    return value


def parse_positive(raw: str, warn: Warn) -> int:
    return parse_int(raw, warn, 1)


def parse_str(raw: str, warn: Warn) -> str:
    return raw


def parse_float(raw: str, warn: Warn) -> float:
    text = raw.strip()
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", text) or not math.isfinite(float(text)):
        raise BadValue(f"'{raw}' is not a number")
    return float(text)


def parse_maxmsg(raw: str, warn: Warn) -> int:
    return parse_int(raw, warn, 0, MAXMSG_LIMIT)


def parse_port(raw: str, warn: Warn) -> int:
    return parse_int(raw, warn, 1, 65535)


def parse_backupdeleted(raw: str, warn: Warn) -> int:
    """A count, or yes (= 100, Asterisk's default maxmsg) / no (= 0)."""
    word = raw.strip().lower()
    if word in TRUE_WORDS - {"1"}:
        return 100
    if word in FALSE_WORDS - {"0"}:
        return 0
    return parse_int(raw, warn, 0, MAXMSG_LIMIT)


def parse_formats(raw: str, warn: Warn) -> tuple[str, ...]:
    """`wav49|gsm|wav` (commas accepted too): known names, duplicates dropped, order kept."""
    result: list[str] = []
    for part in raw.replace(",", "|").split("|"):
        name = part.strip().lower()
        if not name:
            continue
        if name not in KNOWN_FORMATS:
            warn(f"format '{name}' is not a known Asterisk file format; ignored")
            continue
        if name not in result:
            result.append(name)
    if not result:
        raise BadValue(f"'{raw}' names no usable format")
    return tuple(result)


def parse_charset(raw: str, warn: Warn) -> str:
    try:
        codecs.lookup(raw.strip())
    except (LookupError, ValueError):
        raise BadValue(f"'{raw}' is not a character set Python knows") from None
    return raw.strip()


def parse_dtmf(raw: str, warn: Warn) -> str:
    keys = raw.strip()
    if not keys or any(c not in DTMF for c in keys):
        raise BadValue(f"'{raw}' is not a string of DTMF keys (0-9, *, #, A-D)")
    return keys


def parse_passwordlocation(raw: str, warn: Warn) -> str:
    word = raw.strip().lower()
    if word not in {"voicemail.conf", "spooldir"}:
        raise BadValue(f"'{raw}' is neither 'voicemail.conf' nor 'spooldir'")
    return word


def parse_csv(raw: str, warn: Warn) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def substitute_escapes(raw: str, warn: Warn) -> str:
    """Asterisk's escapes for emailsubject/emailbody: `\\n \\r \\t \\\\`.

    `\\n` becomes a bare line feed: the message layer writes CRLF line ends itself, which avoids
    Asterisk's CR CR LF (reference §6 #28). An unsupported escape is dropped, as Asterisk drops
    it, but with a warning.
    """
    out: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, None)
        if following is None:
            warn("incomplete escape '\\' at the end of the value; dropped")
            break
        replacement = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}.get(following)
        if replacement is None:
            warn(f"unsupported escape '\\{following}' dropped (only \\n \\r \\t \\\\ exist)")
            continue
        out.append(replacement)
    return "".join(out)


Parser = Callable[[str, Warn], object]


@dataclass(frozen=True)
class Directive:
    name: str
    parse: Parser
    default: object
    scope: Scope
    aliases: tuple[str, ...] = ()
    deprecated: tuple[str, ...] = ()
    """Aliases that still work but earn a warning."""
    note: str = ""
    """Set when imapvm reads the directive but does not act on it; shown as information."""
    secret: bool = False
    imap_only_note: bool = False
    """The note applies only when IMAP storage is in use."""

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")


_NO_ADSI = "ADSI phones are not supported by imapvm"
_NO_ODBC = "ODBC storage is not supported by imapvm"
_NO_SMDI = "SMDI notification is not supported by imapvm"
_NO_TPS = "Asterisk task-processor tuning has no equivalent in imapvm"
_IMAP_NOOP = "has no effect with IMAP storage, as in Asterisk"
DATE_FORMAT = "%A, %B %d, %Y at %r"

PROMPTS = (
    "vm-login", "vm-newuser", "vm-password", "vm-newpassword", "vm-passchanged",
    "vm-reenterpassword", "vm-mismatch", "vm-invalid-password", "vm-pls-try-again",
)  # fmt: skip
"""Prompt overrides: each defaults to the sound file of the same name."""

G, M, B = Scope.GENERAL, Scope.MAILBOX, Scope.BOTH
_TABLE: list[Directive] = [
    # E-mail and message creation
    Directive("attach", parse_bool, True, B),
    Directive("attachfmt", parse_str, "", M),
    Directive("attachextrecs", parse_bool, False, B),
    Directive("format", parse_formats, ("wav",), G),
    Directive("serveremail", parse_str, "asterisk", B),
    Directive("fromstring", parse_str, "", B),
    Directive("emailsubject", substitute_escapes, None, B),
    Directive("emailbody", substitute_escapes, None, B),
    Directive("emaildateformat", parse_str, DATE_FORMAT, G),
    Directive("charset", parse_charset, "ISO-8859-1", G),
    Directive("pbxskip", parse_bool, False, G),
    Directive("mailcmd", parse_str, "/usr/sbin/sendmail -t", G),
    Directive("pagerfromstring", parse_str, "", G),
    Directive("pagersubject", substitute_escapes, None, G),
    Directive("pagerbody", substitute_escapes, None, G),
    Directive("pagerdateformat", parse_str, DATE_FORMAT, G),
    Directive("delete", parse_bool, False, M, aliases=("deletevoicemail",)),
    Directive("volgain", parse_float, 0.0, B),
    # Locale and time
    Directive("language", parse_str, "", B),
    Directive("locale", parse_str, "", B),
    Directive("tz", parse_str, "", B),
    # Limits
    Directive("maxmsg", parse_maxmsg, 100, B),
    Directive("maxsecs", parse_int, 0, B, deprecated=("maxmessage",)),
    Directive("minsecs", parse_int, 0, B, deprecated=("minmessage",)),
    Directive("maxgreet", parse_int, 0, G),
    Directive("maxsilence", parse_int, 0, G),
    Directive("silencethreshold", parse_int, 128, G),
    Directive("maxlogins", parse_int, 3, G),
    Directive("minpassword", parse_int, 0, G),
    Directive("skipms", parse_int, 3000, G),
    Directive(
        "backupdeleted",
        parse_backupdeleted,
        0,
        B,
        note=f"backupdeleted {_IMAP_NOOP}",
        imap_only_note=True,
    ),
    # Session behaviour
    Directive("saycid", parse_bool, False, B),
    Directive("cidinternalcontexts", parse_csv, (), G),
    Directive("sayduration", parse_bool, True, B),
    Directive("saydurationm", parse_int, 2, B),
    Directive("sendvoicemail", parse_bool, False, B),
    Directive("review", parse_bool, False, B),
    Directive("leaveurgent", parse_bool, True, B),
    Directive("tempgreetwarn", parse_bool, False, B),
    Directive("messagewrap", parse_bool, False, B),
    Directive("operator", parse_bool, False, B),
    Directive("envelope", parse_bool, True, B),
    Directive(
        "moveheard", parse_bool, True, B, note=f"moveheard {_IMAP_NOOP}", imap_only_note=True
    ),
    Directive("forcename", parse_bool, False, B),
    Directive("forcegreetings", parse_bool, False, B),
    Directive("nextaftercmd", parse_bool, False, B),
    Directive("callback", parse_str, "", B),
    Directive("dialout", parse_str, "", B),
    Directive("exitcontext", parse_str, "", B),
    Directive("searchcontexts", parse_bool, False, G),
    Directive("usedirectory", parse_bool, False, G),
    Directive("forward_urgent_auto", parse_bool, False, G),
    Directive("hidefromdir", parse_bool, False, M),
    Directive("directoryintro", parse_str, "", G),
    # Passwords
    Directive("passwordlocation", parse_passwordlocation, "voicemail.conf", B),
    Directive("externpass", parse_str, "", G),
    Directive("externpassnotify", parse_str, "", G),
    Directive("externpasscheck", parse_str, "", G),
    # Notification
    Directive("externnotify", parse_str, "", G),
    Directive("pollmailboxes", parse_bool, False, G),
    Directive("pollfreq", parse_positive, 30, G),
    Directive("smdienable", parse_bool, False, G, note=_NO_SMDI),
    Directive("smdiport", parse_str, "/dev/ttyS0", G, note=_NO_SMDI),
    # Sections
    Directive("aliasescontext", parse_str, "", G),
    Directive("userscontext", parse_str, "default", G, note="users.conf is not read by imapvm"),
    # IMAP
    Directive("imapserver", parse_str, "localhost", B),
    Directive("imapport", parse_port, 143, B),
    Directive("imapflags", parse_str, "", B),
    Directive("imapfolder", parse_str, "INBOX", B),
    Directive("imapparentfolder", parse_str, "", G),
    Directive("imapgreetings", parse_bool, False, G),
    Directive("greetingfolder", parse_str, "", G, aliases=("greetingsfolder",)),
    Directive("authuser", parse_str, "", G),
    Directive("authpassword", parse_str, "", G, secret=True),
    Directive("expungeonhangup", parse_bool, True, G),
    Directive("imapopentimeout", parse_positive, 60, G),
    Directive("imapclosetimeout", parse_positive, 60, G),
    Directive("imapreadtimeout", parse_positive, 60, G),
    Directive("imapwritetimeout", parse_positive, 60, G),
    Directive("imap_poll_logout", parse_bool, False, G),
    Directive("imapuser", parse_str, "", M),
    Directive("imappassword", parse_str, "", M, aliases=("imapsecret",), secret=True),
    Directive("imapvmshareid", parse_str, "", M),
    # Prompt overrides and playback keys
    *(Directive(name, parse_str, name, G) for name in PROMPTS),
    Directive("vm-prepend-timeout", parse_str, "vm-then-pound", G),
    Directive("listen-control-forward-key", parse_dtmf, "#", G),
    Directive("listen-control-reverse-key", parse_dtmf, "*", G),
    Directive("listen-control-pause-key", parse_dtmf, "0", G),
    Directive("listen-control-restart-key", parse_dtmf, "2", G),
    Directive("listen-control-stop-key", parse_dtmf, "13456789", G),
    # Read and ignored
    Directive("adsifdn", parse_str, "0000000F", G, note=_NO_ADSI),
    Directive("adsisec", parse_str, "9BDBF7AC", G, note=_NO_ADSI),
    Directive("adsiver", parse_str, "1", G, note=_NO_ADSI),
    Directive("odbcstorage", parse_str, "asterisk", G, note=_NO_ODBC),
    Directive("odbctable", parse_str, "voicemessages", G, note=_NO_ODBC),
    Directive("odbc_audio_on_disk", parse_bool, False, G, note=_NO_ODBC),
    Directive("tps_queue_high", parse_int, 500, G, note=_NO_TPS),
    Directive("tps_queue_low", parse_str, "-1", G, note=_NO_TPS),
]

DIRECTIVES: dict[str, Directive] = {d.name: d for d in _TABLE}
"""Canonical name -> directive."""

NAMES: dict[str, Directive] = {
    name: d for d in _TABLE for name in (d.name, *d.aliases, *d.deprecated)
}
"""Every accepted spelling (lower case) -> directive."""

GENERAL_NAMES = frozenset(n for n, d in NAMES.items() if d.scope & Scope.GENERAL)
MAILBOX_NAMES = frozenset(n for n, d in NAMES.items() if d.scope & Scope.MAILBOX)
MULTI_VALUED_MAILBOX_OPTIONS = frozenset({"alias"})
"""`alias=` may be repeated per mailbox: extra names for the Directory application."""
