"""Can this host listen where imapvm.toml says? Asked by `imapvm check` only.

Loading the settings checks their syntax; a host name such as `garbage` is valid syntax, so only
asking the resolver (and the kernel, for an address of another host) tells the operator before
`serve` fails. This blocks on the resolver, which is fine for a command and never done in the
server's event loop.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from imapvm.config.diagnostics import Diagnostics, Location
from imapvm.config.loader import LoadedConfig
from imapvm.config.settings import Endpoint, key_lines


def check_listen_addresses(loaded: LoadedConfig, diags: Diagnostics) -> None:
    """An error per `sip.listen` / `http.listen` entry this host cannot bind."""
    settings = loaded.settings
    entries = [(f"sip.listen[{i}]", e, socket.SOCK_DGRAM)
               for i, e in enumerate(settings.sip.listen)]
    if settings.http.listen is not None:
        entries.append(("http.listen", settings.http.listen, socket.SOCK_STREAM))
    for key, endpoint, kind in entries:
        problem = _cannot_listen(endpoint, kind)
        if problem is not None:
            diags.error(f"{key}: cannot listen on {endpoint}: {problem}", _where(loaded, key))


def _cannot_listen(endpoint: Endpoint, kind: socket.SocketKind) -> str | None:
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=kind)
    except (socket.gaierror, UnicodeError) as exc:
        return f"'{endpoint.host}' does not resolve to an address ({exc})"
    for family, _, _, _, address in infos:
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((address[0], 0, *address[2:]))  # any port: only the address is asked
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    return f"{address[0]} is not an address of this host"
                return f"{address[0]}: {exc.strerror or exc}"
    return None


def _where(loaded: LoadedConfig, key: str) -> Location:
    bare = key.partition("[")[0]
    if bare in loaded.overrides:
        return Location("command line")
    source = loaded.settings.source
    if source is None:
        return Location("defaults")
    try:
        lines = key_lines(Path(source).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return Location(source)
    return Location(source, lines.get(bare, lines.get(bare.partition(".")[0], 0)))
