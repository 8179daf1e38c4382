"""imapvm.toml's SIP security keys: credentials (table and file), digest algorithms, lockout,
rate limits; each mistake named by its key, and a secrets file never echoed."""

from __future__ import annotations

from pathlib import Path

from imapvm.config.diagnostics import Diagnostics
from imapvm.config.settings import load_settings


def settings(tmp_path: Path, text: str) -> tuple[object, list[str]]:
    path = tmp_path / "imapvm.toml"
    path.write_text(text)
    diags = Diagnostics()
    return load_settings(path, diags), [str(d) for d in diags]


def test_credentials_from_the_table_and_the_file(tmp_path: Path) -> None:
    secrets_file = tmp_path / "sip-secrets.toml"
    secrets_file.write_text('"1235@default" = "file-secret-0123456789ab"\n')
    loaded, problems = settings(tmp_path, (
        f'[sip]\ncredentials_file = "{secrets_file}"\ndigest_algorithms = ["md5", "SHA-256"]\n'
        'rate_limit = 5\ntrusted_rate_limit = 50\n'
        '[sip.credentials]\n"1234" = "table-secret-0123456789ab"\n'
        '[sip.lockout]\nlock_after = 4\nfree_failures = 0\n'))
    assert problems == []
    sip = loaded.sip  # type: ignore[attr-defined]
    assert sip.credentials == {"1234": "table-secret-0123456789ab",
                               "1235@default": "file-secret-0123456789ab"}
    assert sip.digest_algorithms == ("MD5", "SHA-256")
    assert (sip.rate_limit, sip.trusted_rate_limit) == (5.0, 50.0)
    assert (sip.lockout.lock_after, sip.lockout.free_failures) == (4, 0)
    assert sip.pin_as_sip_password is False


def test_mistakes_are_named_by_key_and_the_secrets_file_is_not_echoed(tmp_path: Path) -> None:
    secrets_file = tmp_path / "bad.toml"
    secrets_file.write_text('"1234" = "hunter2-unterminated\n')
    _, problems = settings(tmp_path, (
        f'[sip]\ncredentials_file = "{secrets_file}"\ndigest_algorithms = ["SHA-512"]\n'
        'rate_limit = 0\n[sip.credentials]\n"1234" = "with\\"quote"\n'
        '[sip.lockout]\nlock_after = 2\nfree_failures = 3\n'))
    text = "\n".join(problems)
    for key in ("sip.credentials_file", "sip.digest_algorithms", "sip.rate_limit",
                "sip.credentials.1234", "sip.lockout.lock_after"):
        assert key in text, key
    assert "hunter2" not in text
