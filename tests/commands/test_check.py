"""`imapvm check`: exit status, text and JSON output, secrets masked, default paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imapvm.cli import main
from imapvm.config import loader, settings

DATA = Path(__file__).parent.parent / "config" / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(["check", *argv])
    return status, capsys.readouterr().out


def test_clean_configuration_exits_zero_and_masks_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out = run(
        capsys, "--config", str(DATA / "voicemail.conf"), "--settings", str(DATA / "imapvm.toml")
    )
    assert status == 0
    for mailbox in ("1234@default", "4069@default", "111@acme"):
        assert mailbox in out
    assert "imap2.example.com:143" in out
    assert "0 error(s), 0 warning(s)" in out
    for secret in ("m4st3r-s3cret", "ex4mple", "amis3cret"):
        assert secret not in out


def test_full_listing_masks_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(capsys, "--config", str(DATA / "voicemail.conf"), "--full")
    assert status == 0
    assert "imap.password = '***'" in out
    assert "password = '***'" in out
    assert "g3tbusy" not in out


def test_errors_exit_one_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(
        "[general]\nimapserver=imap\nmaxmsg=lots\n[default]\n1 => 1,A\n", encoding="utf-8"
    )
    status, out = run(capsys, "--config", str(conf))
    assert status == 1
    assert f"{conf}:3: error: maxmsg: 'lots' is not an integer" in out
    assert f"{conf}:5: error: mailbox 1@default: IMAP storage is configured" in out


def test_warnings_alone_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\nmaxmgs=3\n[default]\n1 => 1\n", encoding="utf-8")
    status, out = run(capsys, "--config", str(conf))
    assert status == 0
    assert "did you mean 'maxmsg'" in out


def test_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text(
        "[general]\nimapserver=imap\n[default]\n1 => 1,A,,,imapuser=a|imappassword=topsecret\n"
        "2 => 2,B\n",
        encoding="utf-8",
    )
    status, out = run(capsys, "--config", str(conf), "--json")
    assert status == 1
    document = json.loads(out)
    assert document["storage"] == "imap"
    assert document["errors"] == 1
    boxes = {m["mailbox"]: m for m in document["mailboxes"]}
    assert boxes["1"]["imap"]["password"] == "***"
    assert boxes["1"]["imap"]["user"] == "a"
    assert boxes["1"]["password"] == "***"
    assert document["diagnostics"][0] == {
        "severity": "error",
        "file": str(conf),
        "line": 5,
        "message": "mailbox 2@default: IMAP storage is configured but the mailbox has neither "
        "imapuser nor a [general] authuser",
    }
    assert "topsecret" not in out


def test_missing_explicit_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(capsys, "--config", str(tmp_path / "nope.conf"))
    assert status == 1
    assert "file not found" in out
    status, out = run(
        capsys,
        "--config",
        str(DATA / "voicemail.conf"),
        "--settings",
        str(tmp_path / "nope.toml"),
    )
    assert status == 1
    assert "settings file not found" in out


def test_missing_default_files_are_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "DEFAULT_VOICEMAIL_PATH", tmp_path / "voicemail.conf")
    monkeypatch.setattr(loader, "DEFAULT_SETTINGS_PATH", tmp_path / "imapvm.toml")
    monkeypatch.setattr(settings, "DEFAULT_SETTINGS_PATH", tmp_path / "imapvm.toml")
    status, out = run(capsys)
    assert status == 0
    assert "no mailboxes configured" in out
    status, out = run(capsys, "--json")
    assert status == 0
    assert json.loads(out)["mailboxes"] == []


def test_set_overrides_settings_and_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    conf = str(DATA / "voicemail.conf")
    toml = str(DATA / "imapvm.toml")
    status, out = run(
        capsys, "--config", conf, "--settings", toml, "--json",
        "--set", 'sip.listen=["127.0.0.1:5999"]', "--set", "paths.outbox=/srv/outbox",
    )  # fmt: skip
    assert status == 0
    document = json.loads(out)
    assert document["settings"]["sip"]["listen"] == ["127.0.0.1:5999"]
    assert document["settings"]["paths"]["outbox"] == "/srv/outbox"
    status, out = run(capsys, "--config", conf, "--settings", toml, "--set", "mwi.ami.port=0")
    assert status == 1
    assert "command line: error: mwi.ami.port" in out


def test_bad_set_syntax_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--set", "no-equals-sign"])
    assert exit_info.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_external_commands_are_checked(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    """externpass* must name an executable program; mailcmd and delete=yes get warnings."""
    script = tmp_path / "check-pass"
    script.write_text("#!/bin/sh\necho VALID\n")
    script.chmod(0o755)
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f"[general]\nexternpasscheck={script}\nexternpass={tmp_path}/missing\n"
                    f"externpassnotify={conf}\nmailcmd=/nonexistent/sendmail -t\n"
                    "[default]\n1234 => 4242,Alice,alice@example.com\n"
                    "5678 => 1111,Bob,,,delete=yes\n")
    status, out = run(capsys, "--config", str(conf), "--json")
    assert status == 1
    messages = [d["message"] for d in json.loads(out)["diagnostics"]]
    assert f"externpass: {tmp_path}/missing does not exist" in messages
    assert f"externpassnotify: {conf} is not executable" in messages
    assert not [m for m in messages if m.startswith("externpasscheck")]
    assert any(m.startswith("mailcmd: /nonexistent/sendmail does not exist") for m in messages)
    assert any("5678@default: delete=yes without an e-mail address" in m for m in messages)

def test_maxsilence_warning_points_at_maxsilence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17 item 12: the warning names the line that set maxsilence, not minsecs."""
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\nminsecs=3\nformat=wav\nmaxsilence=5\n[default]\n1 => 1\n")
    status, out = run(capsys, "--config", str(conf))
    assert status == 0
    assert f"{conf}:4: warning: maxsilence (5) should be less than minsecs (3)" in out


def test_bad_set_key_is_reported_as_a_set_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 12: never against an /etc/imapvm/imapvm.toml that does not exist."""
    status, out = run(capsys, "--set", "sip.listen.x=1")
    assert status == 1
    assert "command line: error: sip.listen: must be a list of strings" in out
    assert "imapvm.toml: error" not in out
    assert "imapvm.toml: warning" not in out
    with pytest.raises(SystemExit):
        main(["check", "--set", ".x=1"])
    assert "argument --set: '.x' is not a setting name" in capsys.readouterr().err


def test_json_uses_the_greetingsfolder_spelling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17 item 12: the JSON key is the directive as written (the sample's spelling)."""
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\ngreetingsfolder=Greetings\n[default]\n1 => 1\n")
    status, out = run(capsys, "--config", str(conf), "--json")
    assert status == 0
    general = json.loads(out)["general"]
    assert general == {"greetingsfolder": "Greetings"}


def test_unsafe_context_and_mailbox_names_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17 item 19: `[de/fault]` cannot be a spool directory: an error at its line, and its
    mailboxes are not loaded, so a call to them is refused instead of acknowledged and lost."""
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\n[de/fault]\n1234 => 1,A\n[default]\n../x => 1,B\n"
                    "1 => 1,C\n[ok-ctx.2]\n5 => 1,D\n")
    status, out = run(capsys, "--config", str(conf))
    assert status == 1
    assert f"{conf}:2: error: context [de/fault] contains '/'" in out
    assert f"{conf}:5: error: mailbox '../x' contains '/'" in out
    loaded = loader.load(conf)
    assert loaded.voicemail.find("1234", "de/fault") is None
    assert loaded.voicemail.find("1", "default") is not None
    assert loaded.voicemail.find("5", "ok-ctx.2") is not None
    assert not loaded.ok  # so `serve` refuses to start and a reload is refused


def test_listen_address_that_does_not_resolve_fails_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 17 item 20: `sip.listen = ["garbage"]` is valid syntax but no address to bind."""
    status, out = run(capsys, "--set", 'sip.listen=["garbage"]')
    assert status == 1
    assert "command line: error: sip.listen[0]: cannot listen on garbage:5060: 'garbage' " \
        "does not resolve" in out
    status, out = run(capsys, "--set", 'sip.listen=["192.0.2.7:5070"]')
    assert status == 1
    assert "192.0.2.7 is not an address of this host" in out
    status, out = run(capsys, "--set", 'sip.listen=["127.0.0.1:5070"]')
    assert status == 0


def test_smtp_settings_are_validated_and_the_password_masked(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    toml = tmp_path / "imapvm.toml"
    toml.write_text('[smtp]\nhost = "smtp.example.com"\nport = 587\nusername = "vm"\n'
                    'password = "sm7p-s3cret"\n')
    status, out = run(capsys, "--settings", str(toml), "--json")
    assert status == 0
    assert "sm7p-s3cret" not in out
    smtp = json.loads(out)["settings"]["smtp"]
    assert (smtp["host"], smtp["port"], smtp["starttls"], smtp["password"]) == (
        "smtp.example.com", 587, True, "***")
    toml.write_text('[smtp]\nport = 99999\npassword = "x"\n')
    status, out = run(capsys, "--settings", str(toml), "--json")
    assert status == 1
    messages = [d["message"] for d in json.loads(out)["diagnostics"]]
    assert any(m.startswith("smtp.host: is required") for m in messages)
