"""Reload: re-read both files, report what changed, refuse files with errors."""

from __future__ import annotations

from pathlib import Path

from imapvm.config.loader import load
from imapvm.config.reload import reload

BASE = (
    "[general]\nimapserver=imap.example.com\nmaxmsg=100\n[default]\n"
    "1 => 1,One,,,imapuser=one|imappassword=pw1\n"
    "2 => 2,Two,,,imapuser=two|imappassword=pw2\n"
)


def setup(tmp_path: Path) -> tuple[Path, Path]:
    vm = tmp_path / "voicemail.conf"
    toml = tmp_path / "imapvm.toml"
    vm.write_text(BASE, encoding="utf-8")
    toml.write_text('[paths]\noutbox = "/a"\n', encoding="utf-8")
    return vm, toml


def test_no_change_is_an_empty_diff(tmp_path: Path) -> None:
    vm, toml = setup(tmp_path)
    current = load(vm, toml)
    result = reload(current)
    assert result.applied
    assert result.diff.empty


def test_added_removed_changed_general_and_settings(tmp_path: Path) -> None:
    vm, toml = setup(tmp_path)
    current = load(vm, toml)
    vm.write_text(
        "[general]\nimapserver=imap.example.com\nmaxmsg=50\n[default]\n"
        "; a comment moves every line: not a change\n"
        "1 => 1,One,,,imapuser=one|imappassword=NEW\n"
        "3 => 3,Three,,,imapuser=three|imappassword=pw3\n",
        encoding="utf-8",
    )
    toml.write_text('[paths]\noutbox = "/b"\n', encoding="utf-8")
    result = reload(current)
    assert result.applied
    assert result.active is not current
    diff = result.diff
    assert diff.added == ("3@default",)
    assert diff.removed == ("2@default",)
    assert len(diff.changed) == 1
    assert diff.changed[0].id == "1@default"
    assert diff.changed[0].fields == ("imap.password", "maxmsg")
    assert diff.general == ("maxmsg",)
    assert diff.settings == ("paths.outbox",)
    assert not diff.aliases_changed
    assert diff.to_json()["changed"] == {"1@default": ["imap.password", "maxmsg"]}


def test_reload_with_errors_keeps_the_running_configuration(tmp_path: Path) -> None:
    vm, toml = setup(tmp_path)
    current = load(vm, toml)
    vm.write_text(BASE + "[zonemessages]\nbad=Nowhere/Special|x\n", encoding="utf-8")
    result = reload(current)
    assert not result.applied
    assert result.active is current
    assert result.diagnostics.has_errors
    assert result.diagnostics.errors[0].line == 8


def test_zone_changes_are_reported(tmp_path: Path) -> None:
    vm, toml = setup(tmp_path)
    vm.write_text(BASE + "[zonemessages]\nz=Europe/Paris|x\n", encoding="utf-8")
    current = load(vm, toml)
    vm.write_text(BASE + "[zonemessages]\nz=Europe/Berlin|x\n", encoding="utf-8")
    assert reload(current).diff.zones == ("z",)


def test_moving_lines_is_not_a_change(tmp_path: Path) -> None:
    vm, toml = setup(tmp_path)
    zones = "[zonemessages]\nz=Europe/Paris|x\n"
    vm.write_text(BASE.replace("[default]", "tz=z\n[default]") + zones, encoding="utf-8")
    current = load(vm, toml)
    vm.write_text(
        "; new comment\n\n" + BASE.replace("[default]", "tz=z\n[default]") + "\n" + zones,
        encoding="utf-8",
    )
    result = reload(current)
    assert result.applied
    assert result.diff.empty, result.diff
