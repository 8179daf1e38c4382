"""Secrets out of every output: `imapvm check --json` (and text) of a configuration with every
kind of secret shows none of them; an #include of a file that is not configuration (say
/etc/shadow) is one error that quotes nothing of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imapvm.cli import main

SECRETS = {
    "pin": "73519",
    "imappassword": "imap-Pw-0001",
    "authpassword": "m4ster-Pw-0002",
    "ami": "ami-Secret-0003",
    "webhook": "hook-Pw-0004",
    "token-arg": "tenant-Token-0005",
    "sip-secret": "sip-Secret-long-random-0006",
    "sip-file-secret": "sip-File-secret-long-0007",
    "smtp": "smtp-Pw-0008",
    "imap-url": "url-Pw-0009",
    "push-token": "push-Token-long-random-0010",
}


def write(tmp_path: Path) -> tuple[Path, Path]:
    s = SECRETS
    (tmp_path / "sip-secrets.toml").write_text(f'"1235" = "{s["sip-file-secret"]}"\n')
    conf = tmp_path / "voicemail.conf"
    conf.write_text(
        "[general]\nimapserver=imap.example.com\nauthuser=vmadmin\n"
        f"authpassword={s['authpassword']}\n"
        f"externnotify=/usr/local/bin/notify http://u:{s['imap-url']}@h/x\n\n"
        f"[default]\n1234 => {s['pin']},Alice,,,imapuser=alice|imappassword={s['imappassword']}\n"
        f"1235 => {s['pin']}1,Bob\n")
    toml = tmp_path / "imapvm.toml"
    toml.write_text(
        f'[sip]\ncredentials_file = "{tmp_path / "sip-secrets.toml"}"\n'
        f'[sip.credentials]\n"1234" = "{s["sip-secret"]}"\n'
        f'[mwi]\nwebhook_url = "https://hooks:{s["webhook"]}@hooks.example.com/mwi"\n'
        f'watch = "push"\npush_token = "{s["push-token"]}"\n'
        f'[mwi.ami]\nusername = "imapvm"\nsecret = "{s["ami"]}"\n'
        f'[imap]\noauth2_token_command = "/usr/local/bin/m365-token --tenant '
        f'{s["token-arg"]} {{user}}"\n'
        f'[smtp]\nhost = "smtp.example.com"\nusername = "vm"\npassword = "{s["smtp"]}"\n')
    return conf, toml


@pytest.mark.parametrize("mode", [["--json"], [], ["--full"]])
def test_check_output_of_a_config_with_every_secret_shows_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: list[str]) -> None:
    conf, toml = write(tmp_path)
    main(["check", "--config", str(conf), "--settings", str(toml), *mode])
    out = capsys.readouterr()
    for name, secret in SECRETS.items():
        assert secret not in out.out + out.err, name
    if mode == ["--json"]:
        doc = json.loads(out.out)
        settings = doc["settings"]
        assert settings["sip"]["credentials"] == {"1234": "***", "1235": "***"}  # names kept
        assert settings["mwi"]["webhook_url"] == "https://hooks:***@hooks.example.com/mwi"
        assert settings["imap"]["oauth2_token_command"] == ["/usr/local/bin/m365-token", "***"]
        assert settings["mwi"]["ami"]["secret"] == "***"
        assert settings["mwi"]["push_token"] == "***"


def test_include_of_a_file_that_is_not_configuration_is_one_error_without_its_content(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$Zx8Hash.Salt$KpQ0wHashedSecretValue:19700:0:99999:7:::\n"
                      "daemon:*:19700:0:99999:7:::\n")
    conf = tmp_path / "voicemail.conf"
    conf.write_text(f'[general]\nformat=wav\n#include "{shadow}"\n[default]\n1234 => 1,A\n')
    for argv in (["--json"], []):
        status = main(["check", "--config", str(conf), *argv])
        out = capsys.readouterr()
        text = out.out + out.err
        assert status == 1
        assert "HashedSecretValue" not in text
        assert "daemon" not in text
        assert text.count("not an Asterisk configuration file") == 1
    binary = tmp_path / "blob"
    binary.write_bytes(b"\x7fELF\x00\x01key=value\n")
    conf.write_text(f"[general]\n#include {binary}\n")
    main(["check", "--json", "--config", str(conf)])
    doc = json.loads(capsys.readouterr().out)
    assert [d["message"].split(":")[0] for d in doc["diagnostics"]
            if d["severity"] == "error"] == [f"#include {binary}"]
