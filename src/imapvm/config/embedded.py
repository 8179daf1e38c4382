"""The embedded default configuration, and the one rule that picks it.

`imapvm serve` with no voicemail.conf (none given, none at the default path) runs on a demo
mailbox in a file spool under ./var. The operator commands (`ls`, `mwi`, ...) resolve the
configuration the same way, so that what `serve` announces is what they show.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from imapvm.config.loader import DEFAULT_VOICEMAIL_PATH, LoadedConfig, load
from imapvm.config.settings import Endpoint, PathSettings

EMBEDDED_CONFIG = "embedded-voicemail.conf"


def embedded_config_path() -> Path:
    return Path(str(resources.files("imapvm") / "data" / EMBEDDED_CONFIG))


def resolve_config(config: str | None, settings: str | None,
                   overrides: dict[str, object]) -> tuple[LoadedConfig, bool]:
    """Load the configuration; without any, the embedded default (second value True)."""
    embedded = config is None and not DEFAULT_VOICEMAIL_PATH.exists()
    path = str(embedded_config_path()) if embedded else config
    loaded = load(path, settings, overrides)
    if embedded:  # ./var instead of system paths, unless imapvm.toml or --set chose others
        defaults = PathSettings()
        paths = loaded.settings.paths
        loaded.settings = replace(loaded.settings, paths=replace(
            paths,
            spool=Path("var/spool") if paths.spool == defaults.spool else paths.spool,
            outbox=Path("var/outbox") if paths.outbox == defaults.outbox else paths.outbox,
            cache=Path("var/cache") if paths.cache == defaults.cache else paths.cache,
        ))
        sip = loaded.settings.sip
        if "sip.listen" not in overrides and settings is None:
            loaded.settings = replace(loaded.settings, sip=replace(
                sip, listen=(Endpoint("127.0.0.1", 5060),)))
    return loaded, embedded
