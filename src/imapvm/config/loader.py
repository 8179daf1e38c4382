"""Load voicemail.conf and imapvm.toml together: the one call the server and `imapvm check` make.

Both files are optional when their default paths are used (a fresh install has no mailboxes yet
and runs on defaults); a file named explicitly must exist.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imapvm.config.asterisk import ConfigText
from imapvm.config.commands import check_commands
from imapvm.config.diagnostics import Diagnostics, Location
from imapvm.config.settings import DEFAULT_SETTINGS_PATH, ServerSettings, load_settings
from imapvm.config.voicemail import VoicemailConfig, build, load_voicemail_conf

DEFAULT_VOICEMAIL_PATH = Path("/etc/asterisk/voicemail.conf")


@dataclass
class LoadedConfig:
    """Both files, their problems, and how to read them again (for reload)."""

    voicemail: VoicemailConfig
    settings: ServerSettings
    diagnostics: Diagnostics
    voicemail_path: Path | None
    settings_path: Path | None
    voicemail_required: bool = True
    settings_required: bool = True
    overrides: Mapping[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.diagnostics.has_errors


def load(
    voicemail_path: str | os.PathLike[str] | None = None,
    settings_path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    voicemail_required: bool | None = None,
    settings_required: bool | None = None,
) -> LoadedConfig:
    """Read both files. `None` paths mean the defaults, which may be absent."""
    if voicemail_required is None:
        voicemail_required = voicemail_path is not None
    if settings_required is None:
        settings_required = settings_path is not None
    vm_path = Path(voicemail_path) if voicemail_path is not None else DEFAULT_VOICEMAIL_PATH
    st_path = Path(settings_path) if settings_path is not None else DEFAULT_SETTINGS_PATH
    diags = Diagnostics()
    if vm_path.exists() or voicemail_required:
        voicemail = load_voicemail_conf(vm_path, diags)
    else:
        diags.info(f"{vm_path} does not exist; no mailboxes are configured", Location(str(vm_path)))
        voicemail = build(ConfigText(), diags)
    settings = load_settings(st_path, diags, overrides, required=settings_required)
    check_commands(voicemail, settings, diags)
    return LoadedConfig(
        voicemail=voicemail,
        settings=settings,
        diagnostics=diags,
        voicemail_path=vm_path,
        settings_path=st_path,
        voicemail_required=voicemail_required,
        settings_required=settings_required,
        overrides=dict(overrides or {}),
    )
