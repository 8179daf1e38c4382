"""voicemail.conf -> `VoicemailConfig`: general settings, zones, aliases, contexts of mailboxes.

The loader reads the file the way app_voicemail does (which section is which, how a mailbox line
splits, which spelling of a directive wins) and validates everything in one pass, reporting every
problem with its file and line. Where Asterisk's behaviour is a bug (reference §6 #29), it does the
sensible thing; `README.md` lists each difference.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from imapvm.config import directives as d
from imapvm.config.asterisk import ConfigText, Item, Section, parse_file
from imapvm.config.diagnostics import Diagnostics, Location, did_you_mean
from imapvm.config.effective import resolve
from imapvm.config.model import (
    Alias,
    GeneralSettings,
    Mailbox,
    MailboxSettings,
    StorageKind,
    Zone,
)

RESERVED_SECTIONS = ("general", "zonemessages")
__all__ = ["GeneralSettings", "VoicemailConfig", "build", "load_voicemail_conf"]


@dataclass
class VoicemailConfig:
    """The whole voicemail.conf. Build it with `load_voicemail_conf`."""

    general: GeneralSettings
    zones: dict[str, Zone] = field(default_factory=dict)
    aliases: list[Alias] = field(default_factory=list)
    contexts: dict[str, dict[str, Mailbox]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    _effective: dict[tuple[str, str], MailboxSettings] = field(default_factory=dict, repr=False)
    _index: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict, repr=False)
    """(context, number) in lower case -> the spelling used as keys of `contexts`."""
    _passwords: dict[str, str] = field(default_factory=dict, repr=False)
    """imapuser -> the first imappassword given for it (Asterisk's mm_login fallback)."""

    def mailboxes(self) -> Iterator[Mailbox]:
        for boxes in self.contexts.values():
            yield from boxes.values()

    def find(self, number: str, context: str | None = None) -> Mailbox | None:
        """Look a mailbox up as app_voicemail does: case-insensitive context and number; with no
        context, `default`, or every context when `searchcontexts=yes`."""
        key = self._effective_key(number, context)
        return None if key is None else self.contexts[key[0]][key[1]]

    def effective(self, mailbox: Mailbox | str, context: str | None = None) -> MailboxSettings:
        """Settings of one mailbox after precedence; `mailbox` is a Mailbox, `"1234@ctx"`, or a
        number with an optional `context` (as `find`). Raises KeyError for an unknown mailbox."""
        if isinstance(mailbox, Mailbox):
            number, context = mailbox.number, mailbox.context
        elif context is None and "@" in mailbox:
            number, _, context = mailbox.partition("@")
        else:
            number = mailbox
        key = self._effective_key(number, context)
        if key is None:
            raise KeyError(f"{number}@{context or 'default'}")
        return self._effective[key]

    @property
    def imap_passwords(self) -> Mapping[str, str]:
        """imapuser -> imappassword as voicemail.conf gives them (Asterisk's mm_login looks
        for another mailbox with the same imapuser)."""
        return self._passwords

    def all_effective(self) -> list[MailboxSettings]:
        return list(self._effective.values())

    @property
    def storage(self) -> StorageKind:
        """IMAP when any mailbox uses IMAP, else the file spool."""
        if any(s.storage is StorageKind.IMAP for s in self._effective.values()):
            return StorageKind.IMAP
        return StorageKind.SPOOL

    def resolve_alias(self, name: str) -> str | None:
        for alias in self.aliases:
            if alias.alias == name:
                return alias.target
        return None

    def _context_key(self, context: str) -> str | None:
        for name in self.contexts:
            if name.lower() == context.lower():
                return name
        return None

    def _effective_key(self, number: str, context: str | None) -> tuple[str, str] | None:
        if context is None and self.general["searchcontexts"]:
            # Numbers are unique across contexts when searchcontexts=yes (checked at load).
            return next(
                (key for (_, num), key in self._index.items() if num == number.lower()), None
            )
        return self._index.get(((context or "default").lower(), number.lower()))

    def _add(self, mailbox: Mailbox) -> None:
        self.contexts.setdefault(mailbox.context, {})[mailbox.number] = mailbox
        self._index[(mailbox.context.lower(), mailbox.number.lower())] = (
            mailbox.context,
            mailbox.number,
        )


def load_voicemail_conf(path: str | os.PathLike[str], diags: Diagnostics) -> VoicemailConfig:
    """Read voicemail.conf and its includes; every problem is added to `diags`."""
    text = parse_file(path, diags)
    return build(text, diags)


def build(text: ConfigText, diags: Diagnostics) -> VoicemailConfig:
    """Turn parsed sections into the model and validate it, without touching the disk."""
    general = _load_general(text, diags)
    config = VoicemailConfig(general=general, files=list(text.files))
    config.zones = _load_zones(text, diags)
    aliases_context = str(general["aliasescontext"])
    for section in text.sections:
        if section.template:
            continue
        lowered = section.name.lower()
        if lowered in RESERVED_SECTIONS:
            continue
        if aliases_context and lowered == aliases_context.lower():
            config.aliases.extend(_load_aliases(section, diags))
            continue
        hint = did_you_mean(lowered, RESERVED_SECTIONS)
        if hint:
            diags.warning(
                f"[{section.name}] is read as a voicemail context{hint}", section.location
            )
        _load_context(section, config, general, diags)
    if aliases_context and not text.sections_named(aliases_context):
        diags.warning(
            f"aliasescontext names [{aliases_context}], but no such section exists",
            general.explicit.get("aliasescontext"),
        )
    _check_search_contexts(config, general, diags)
    for mailbox in config.mailboxes():
        settings = resolve(mailbox, config, general, diags)
        config._effective[(mailbox.context, mailbox.number)] = settings
    _check_aliases(config, diags)
    shared = [
        m.id
        for m in config.mailboxes()
        if "imapuser" not in m.options and config.effective(m).imap is not None
    ]
    if shared and general["authuser"]:
        listed = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
        diags.info(
            f"{len(shared)} mailbox(es) without imapuser ({listed}) use the authuser account "
            f"'{general['authuser']}', told apart by the X-Asterisk-VM-Extension header",
            general.explicit.get("authuser"),
        )
    return config


# ----------------------------------------------------------------------------------- [general]


def _load_general(text: ConfigText, diags: Diagnostics) -> GeneralSettings:
    sections = text.sections_named("general")
    for extra in sections[1:]:
        diags.warning(
            "a second [general] section is ignored, as Asterisk ignores it; "
            "merge it into the first or write [general](+)",
            extra.location,
        )
    values: dict[str, object] = {name: dr.default for name, dr in d.DIRECTIVES.items()}
    explicit: dict[str, Location] = {}
    spelling: dict[str, str] = {}
    if not sections:
        return GeneralSettings(MappingProxyType(values), MappingProxyType(explicit))
    chosen: dict[str, Item] = {}
    for item in sections[0].items:
        name = item.key.lower()
        directive = d.NAMES.get(name)
        if directive is None:
            diags.warning(
                f"unknown directive '{item.key}' in [general] ignored"
                + did_you_mean(name, d.GENERAL_NAMES),
                item.location,
            )
            continue
        if not directive.scope & d.Scope.GENERAL:
            diags.warning(
                f"'{item.key}' can only be set per mailbox; ignored in [general]",
                item.location,
            )
            continue
        if name in directive.deprecated:
            diags.warning(
                f"'{item.key}' is deprecated; write '{directive.name}' instead", item.location
            )
        previous = chosen.get(directive.name)
        # As in Asterisk, the canonical spelling wins over an alias wherever it is written.
        if (
            previous is not None
            and previous.key.lower() == directive.name
            and name != directive.name
        ):
            continue
        chosen[directive.name] = item
    imap_configured = "imapserver" in chosen or "authuser" in chosen
    for name, item in chosen.items():
        directive = d.DIRECTIVES[name]
        value = _parse_value(directive, item, diags)
        if value is _INVALID:
            continue
        values[name] = value
        explicit[name] = item.location
        spelling[name] = item.key.lower()
        if directive.note and (imap_configured or not directive.imap_only_note):
            diags.info(f"'{item.key}' is read but not used: {directive.note}", item.location)
    if values["authuser"] and not values["authpassword"]:
        diags.error(
            "authuser is set but authpassword is not; the master login has no password",
            explicit.get("authuser"),
        )
    minsecs, maxsilence = values["minsecs"], values["maxsilence"]
    if (
        "minsecs" in explicit
        and isinstance(minsecs, int)
        and isinstance(maxsilence, int)
        and 0 < minsecs <= maxsilence
    ):
        diags.warning(
            f"maxsilence ({maxsilence}) should be less than minsecs ({minsecs}), "
            "or silent callers leave empty messages that are then discarded",
            explicit.get("maxsilence", explicit["minsecs"]),
        )
    return GeneralSettings(MappingProxyType(values), MappingProxyType(explicit),
                           MappingProxyType(spelling))


_INVALID = object()


def _parse_value(directive: d.Directive, item: Item, diags: Diagnostics) -> object:
    """Parse one value; an invalid one is an error at its line and keeps the default."""

    def warn(message: str) -> None:
        diags.warning(f"{item.key}: {message}", item.location)

    try:
        return directive.parse(item.value, warn)
    except d.BadValue as exc:
        diags.error(f"{item.key}: {exc}", item.location)
        return _INVALID


# ------------------------------------------------------------------------------ zones, aliases


def _load_zones(text: ConfigText, diags: Diagnostics) -> dict[str, Zone]:
    zones: dict[str, Zone] = {}
    for section in text.sections_named("zonemessages"):
        for item in section.items:
            tzname, sep, say_format = _split_zone(item.value)
            if not sep:
                diags.error(
                    f"zone '{item.key}' needs 'Olson/Zone|say format', got '{item.value}'",
                    item.location,
                )
                continue
            if not _valid_timezone(tzname):
                diags.error(
                    f"zone '{item.key}': '{tzname}' is not a known time zone "
                    "(see /usr/share/zoneinfo)",
                    item.location,
                )
                continue
            if item.key in zones:
                diags.warning(
                    f"zone '{item.key}' defined again; this definition replaces the one at "
                    f"{zones[item.key].location}",
                    item.location,
                )
            zones[item.key] = Zone(item.key, tzname, say_format.strip(), item.location)
    return zones


def _split_zone(value: str) -> tuple[str, str, str]:
    """Split at the first '|' or ',' (Asterisk accepts either)."""
    cut = min((i for i in (value.find("|"), value.find(",")) if i >= 0), default=-1)
    if cut < 0:
        return value.strip(), "", ""
    return value[:cut].strip(), value[cut], value[cut + 1 :]


def _valid_timezone(name: str) -> bool:
    if not name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _load_aliases(section: Section, diags: Diagnostics) -> list[Alias]:
    result = []
    for item in section.items:
        if "@" not in item.value:
            diags.warning(
                f"alias '{item.key}' should point at mailbox@context, got '{item.value}'",
                item.location,
            )
        result.append(Alias(item.key, item.value, item.location))
    return result


def _check_aliases(config: VoicemailConfig, diags: Diagnostics) -> None:
    for alias in config.aliases:
        number, _, context = alias.target.partition("@")
        if config.find(number, context or "default") is None:
            diags.warning(
                f"alias '{alias.alias}' points at {alias.target}, which is not a mailbox",
                alias.location,
            )


# ----------------------------------------------------------------------------------- contexts


_SAFE_NAME = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_+\-.]*")


def unsafe_name(name: str) -> str | None:
    """Why a context or mailbox name cannot be a spool directory and an IMAP header value
    safely (a path separator, `..`, spaces, quotes, control or non-ASCII characters), or None."""
    if _SAFE_NAME.fullmatch(name) and ".." not in name:
        return None
    bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9_+\-.]", c)})
    shown = " ".join(repr(c) for c in bad) if bad else "a leading '.' or '..'"
    return (f"contains {shown}; names may use letters, digits and _ + - . "
            "(they become spool directories and IMAP header values)")


def _load_context(
    section: Section, config: VoicemailConfig, general: GeneralSettings, diags: Diagnostics
) -> None:
    problem = unsafe_name(section.name)
    if problem is not None:
        diags.error(f"context [{section.name}] {problem}; its mailboxes are not loaded",
                    section.location)
        return
    context = config._context_key(section.name) or section.name
    config.contexts.setdefault(context, {})
    for item in section.items:
        number = item.key
        lowered = number.lower()
        if lowered in d.GENERAL_NAMES or lowered == "directoryintro":
            if lowered == "directoryintro":
                diags.info(
                    f"directoryintro in [{section.name}] belongs to app_directory; ignored",
                    item.location,
                )
            else:
                diags.warning(
                    f"'{number}' in voicemail context [{section.name}] looks like a directive, "
                    "not a mailbox; not loaded as a mailbox (did you mean to put it in "
                    "[general]?)",
                    item.location,
                )
            continue
        if number.startswith("*"):
            diags.error(
                f"mailbox '{number}' begins with '*', which callers use to leave the mailbox; "
                "it cannot be dialled and is not loaded",
                item.location,
            )
            continue
        problem = unsafe_name(number)
        if problem is not None:
            diags.error(f"mailbox '{number}' {problem}; not loaded", item.location)
            continue
        duplicate = config.find(number, context) if context else None
        if duplicate is not None:
            diags.error(
                f"mailbox {number} defined twice in context [{context}] "
                f"(first at {duplicate.location}); Asterisk would silently use the first",
                item.location,
            )
            continue
        mailbox = _parse_mailbox(context, item, diags)
        config._add(mailbox)
        user, password = mailbox.options.get("imapuser"), mailbox.options.get("imappassword")
        if user and password:
            config._passwords.setdefault(str(user), str(password))


def _parse_mailbox(context: str, item: Item, diags: Diagnostics) -> Mailbox:
    """`password,full name,email,pager,options`: the first four split on ',', the rest is options
    split on '|'; an option without '=' is ignored as in Asterisk."""
    fields = item.value.split(",", 4)
    fields += [""] * (5 - len(fields))
    password, fullname, email, pager, option_text = (f.strip() for f in fields)
    if password.startswith("*"):
        diags.error(
            f"mailbox {item.key}: a password cannot begin with '*' (Asterisk ignores it)",
            item.location,
        )
        password = ""
    options: dict[str, object] = {}
    directory_aliases: list[str] = []
    for raw in option_text.split("|"):
        key, eq, value = raw.partition("=")
        key = key.strip()
        if not eq:
            if key:
                diags.warning(
                    f"mailbox {item.key}: option '{key}' has no '=value'; ignored", item.location
                )
            continue
        name = key.lower()
        value = value.strip()
        if name == "alias":
            directory_aliases.append(value)
            continue
        directive = d.NAMES.get(name)
        if directive is None:
            hint = (
                "; authuser is a [general] directive"
                if name == "authuser"
                else did_you_mean(name, d.MAILBOX_NAMES | {"alias"})
            )
            diags.warning(f"mailbox {item.key}: unknown option '{key}' ignored{hint}",
                          item.location)  # fmt: skip
            continue
        if not directive.scope & d.Scope.MAILBOX:
            diags.warning(
                f"mailbox {item.key}: '{key}' can only be set in [general]; ignored here",
                item.location,
            )
            continue
        if name in directive.deprecated:
            diags.warning(
                f"mailbox {item.key}: '{key}' is deprecated; write '{directive.name}'",
                item.location,
            )
        parsed = _parse_value(directive, Item(key, value, item.location), diags)
        if parsed is _INVALID:
            continue
        if directive.name == "maxsecs" and parsed == 0:
            diags.warning(
                f"mailbox {item.key}: maxsecs=0 per mailbox means 'use the [general] value', "
                "as in Asterisk",
                item.location,
            )
            continue
        options[directive.name] = parsed
    return Mailbox(
        context=context,
        number=item.key,
        password=password,
        fullname=fullname,
        email=email,
        pager=pager,
        options=options,
        directory_aliases=tuple(directory_aliases),
        location=item.location,
    )


def _check_search_contexts(
    config: VoicemailConfig, general: GeneralSettings, diags: Diagnostics
) -> None:
    """With searchcontexts=yes a bare mailbox number must name one mailbox in all contexts."""
    if not general["searchcontexts"]:
        return
    seen: dict[str, Mailbox] = {}
    for mailbox in config.mailboxes():
        first = seen.setdefault(mailbox.number.lower(), mailbox)
        if first is not mailbox:
            diags.error(
                f"mailbox {mailbox.number} exists in [{first.context}] and "
                f"[{mailbox.context}]; with searchcontexts=yes a number must be unique",
                mailbox.location,
            )
