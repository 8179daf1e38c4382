"""Re-read the configuration (on SIGHUP) and say exactly what changed.

A reload whose files now have errors is not applied: the running configuration stays, and the
result carries the errors so the server can log them. That is the opposite of Asterisk, which
applies whatever it could parse and falls back to defaults for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imapvm.config.diagnostics import Diagnostics
from imapvm.config.loader import LoadedConfig, load
from imapvm.config.render import flatten


@dataclass(frozen=True)
class MailboxChange:
    id: str
    fields: tuple[str, ...]
    """Dotted names of the effective settings that differ, e.g. `imap.password`, `maxmsg`."""


@dataclass(frozen=True)
class ConfigDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[MailboxChange, ...] = ()
    general: tuple[str, ...] = ()
    """[general] directives whose value changed (canonical names)."""
    zones: tuple[str, ...] = ()
    aliases_changed: bool = False
    settings: tuple[str, ...] = ()
    """imapvm.toml keys whose value changed, dotted."""

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.general
            or self.zones
            or self.aliases_changed
            or self.settings
        )

    def to_json(self) -> dict[str, object]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": {c.id: list(c.fields) for c in self.changed},
            "general": list(self.general),
            "zones": list(self.zones),
            "aliases_changed": self.aliases_changed,
            "settings": list(self.settings),
        }


@dataclass
class ReloadResult:
    active: LoadedConfig
    """The configuration to run with: the new one if applied, else the previous one."""
    diff: ConfigDiff
    applied: bool
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    """Problems of the files as read now."""


def _is_location(key: str) -> bool:
    """Where a setting is written is not a change of what it means."""
    return key == "location" or key.endswith(".location")


def diff(old: LoadedConfig, new: LoadedConfig) -> ConfigDiff:
    old_boxes = {s.id: s for s in old.voicemail.all_effective()}
    new_boxes = {s.id: s for s in new.voicemail.all_effective()}
    changed = []
    for box_id in old_boxes.keys() & new_boxes.keys():
        before = flatten(old_boxes[box_id], mask=False)
        after = flatten(new_boxes[box_id], mask=False)
        fields = sorted(
            k
            for k in before.keys() | after.keys()
            if not _is_location(k) and before.get(k) != after.get(k)
        )
        if fields:
            changed.append(MailboxChange(box_id, tuple(fields)))
    old_general = old.voicemail.general.values
    new_general = new.voicemail.general.values
    general = sorted(k for k in old_general if old_general[k] != new_general.get(k))
    old_zones = {n: (z.timezone, z.say_format) for n, z in old.voicemail.zones.items()}
    new_zones = {n: (z.timezone, z.say_format) for n, z in new.voicemail.zones.items()}
    zones = sorted(
        n for n in old_zones.keys() | new_zones.keys() if old_zones.get(n) != new_zones.get(n)
    )
    old_aliases = [(a.alias, a.target) for a in old.voicemail.aliases]
    new_aliases = [(a.alias, a.target) for a in new.voicemail.aliases]
    before_settings = flatten(old.settings, mask=False)
    after_settings = flatten(new.settings, mask=False)
    settings = sorted(
        k
        for k in before_settings.keys() | after_settings.keys()
        if before_settings.get(k) != after_settings.get(k)
    )
    return ConfigDiff(
        added=tuple(sorted(new_boxes.keys() - old_boxes.keys())),
        removed=tuple(sorted(old_boxes.keys() - new_boxes.keys())),
        changed=tuple(sorted(changed, key=lambda c: c.id)),
        general=tuple(general),
        zones=tuple(zones),
        aliases_changed=old_aliases != new_aliases,
        settings=tuple(settings),
    )


def reload(current: LoadedConfig) -> ReloadResult:
    """Read the same files again; apply them only if they have no errors."""
    fresh = load(
        current.voicemail_path,
        current.settings_path,
        current.overrides,
        voicemail_required=current.voicemail_required,
        settings_required=current.settings_required,
    )
    changes = diff(current, fresh)
    if fresh.ok:
        return ReloadResult(fresh, changes, True, fresh.diagnostics)
    return ReloadResult(current, changes, False, fresh.diagnostics)
