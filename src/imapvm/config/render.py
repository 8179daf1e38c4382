"""Turn the configuration into JSON-ready data or a readable report, with secrets masked.

Masking happens here and only here, so no caller can forget it: `jsonable(..., mask=True)` is
what `imapvm check` prints, and the reload diff compares unmasked values (a changed password is
a change) but reports only the names of the fields.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from imapvm.config.diagnostics import Diagnostic, Location, Severity
from imapvm.config.model import MailboxSettings
from imapvm.config.settings import Endpoint

if TYPE_CHECKING:
    from imapvm.config.loader import LoadedConfig

MASK = "***"
SECRET_KEYS = frozenset({"password", "secret", "authpassword", "imappassword", "sipsecret"})
# Any key whose name contains one of these is a secret too (credentials tables, tokens, ...).
_SECRET_WORDS = ("password", "passwd", "secret", "credential", "token", "apikey", "api_key")
# user:password@ in any URL (webhook_url, imap://, http://...): the password goes, the rest stays.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:)[^@/\s]*@")


_NOT_SECRET = frozenset({"passwordlocation"})


def is_secret_key(name: str) -> bool:
    low = name.lower()
    return low in SECRET_KEYS or (
        low not in _NOT_SECRET and not low.startswith("vm-")  # vm-password: a prompt's name
        and any(word in low for word in _SECRET_WORDS)
    )


def mask_text(text: str) -> str:
    """A string with the passwords of the URLs in it replaced by `***`."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)


def jsonable(value: object, mask: bool = True) -> object:
    """Plain JSON types for any configuration object; secret fields become `***`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Location | Endpoint):
            return str(value)
        return {
            f.name: _masked(f.name, getattr(value, f.name), mask)
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return {str(k): _masked(str(k), v, mask) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, frozenset | set):
        return sorted(jsonable(v, mask) for v in value)  # type: ignore[type-var]
    if isinstance(value, list | tuple):
        return [jsonable(v, mask) for v in value]
    if isinstance(value, Path | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, str):
        return mask_text(value) if mask else value
    if value is None or isinstance(value, int | float | bool):
        return value
    return mask_text(str(value)) if mask else str(value)


def _masked(name: str, value: object, mask: bool) -> object:
    if not mask or not value or isinstance(value, bool | int | float):
        return jsonable(value, mask)
    low = name.lower()
    if low.endswith("command") and isinstance(value, list | tuple):
        # argv: the program may be named, its arguments (tokens, tenants, keys) may not
        return [jsonable(value[0], mask), *([MASK] if len(value) > 1 else [])]
    if is_secret_key(name):
        if isinstance(value, Mapping):  # a table of secrets: keep the names, hide the values
            return {str(k): MASK for k in value}
        return MASK
    return jsonable(value, mask)


def flatten(value: object, mask: bool = True, prefix: str = "") -> dict[str, object]:
    """`{"imap.server": ..., "maxmsg": ...}`: one entry per leaf, for diffs and detail lists."""
    data = jsonable(value, mask)
    result: dict[str, object] = {}
    if isinstance(data, dict):
        for key, item in data.items():
            name = f"{prefix}{key}"
            if isinstance(item, dict) and item:
                result.update(flatten(item, mask=False, prefix=f"{name}."))
            else:
                result[name] = item
    else:
        result[prefix.rstrip(".")] = data
    return result


def report_json(loaded: LoadedConfig) -> dict[str, object]:
    vm = loaded.voicemail
    diags = loaded.diagnostics
    return {
        "voicemail_conf": str(loaded.voicemail_path) if loaded.voicemail_path else None,
        "files": list(vm.files),
        "settings_file": loaded.settings.source,
        "storage": vm.storage.value,
        "mailboxes": [jsonable(s) for s in vm.all_effective()],
        "zones": {name: jsonable(zone) for name, zone in vm.zones.items()},
        "aliases": [jsonable(a) for a in vm.aliases],
        "general": {
            vm.general.spelling.get(name, name): _masked(name, vm.general.values[name], True)
            for name in vm.general.explicit
        },
        "settings": jsonable(loaded.settings),
        "diagnostics": [jsonable(d.to_json()) for d in diags.sorted()],
        "errors": len(diags.errors),
        "warnings": len(diags.warnings),
    }


_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "dim"}


def print_report(loaded: LoadedConfig, console: Console, full: bool = False) -> None:
    vm = loaded.voicemail
    extra = len(vm.files) - 1
    included = f" (+{extra} included)" if extra > 0 else ""
    console.print(f"voicemail.conf: {loaded.voicemail_path}{included}", highlight=False)
    console.print(
        f"imapvm.toml:    {loaded.settings.source or 'not found, defaults used'}",
        highlight=False,
    )
    console.print(f"storage:        {vm.storage.value}", highlight=False)
    mailboxes = vm.all_effective()
    if mailboxes:
        console.print(_summary(mailboxes))
    else:
        console.print("no mailboxes configured")
    if full:
        for settings in mailboxes:
            console.print(f"\n[bold]{settings.id}[/bold]")
            for key, value in flatten(settings).items():
                console.print(f"  {key} = {value!r}", highlight=False, markup=False)
    diags = loaded.diagnostics
    if len(diags):
        console.print()
    for diagnostic in diags.sorted():
        console.print(
            _line(diagnostic),
            style=_STYLE[diagnostic.severity],
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    console.print(
        f"\n{len(diags.errors)} error(s), {len(diags.warnings)} warning(s)", highlight=False
    )


def _line(diagnostic: Diagnostic) -> str:
    return mask_text(str(diagnostic))


def _summary(mailboxes: list[MailboxSettings]) -> Table:
    table = Table(title="Effective configuration per mailbox", title_justify="left")
    for column in ("mailbox", "name", "storage", "IMAP login", "server", "TLS", "folder", "tz",
                   "maxmsg", "e-mail"):  # fmt: skip
        table.add_column(column, overflow="fold", no_wrap=column in {"mailbox", "server", "TLS"})
    for s in mailboxes:
        imap = s.imap
        login = ""
        server = tls = folder = ""
        if imap is not None:
            login = (imap.user or "(no user)") + (
                f" via {imap.auth_user}" if imap.auth_user else ""
            )
            login += "" if imap.password else " (no password)"
            server = f"{imap.server}:{imap.port}"
            tls = imap.security.describe()
            folder = imap.folder
        table.add_row(
            s.id,
            s.fullname,
            s.storage.value,
            login,
            server,
            tls,
            folder,
            s.zone.timezone if s.zone else (s.tz or "local"),
            str(s.maxmsg),
            ", ".join(s.emails),
        )
    return table
