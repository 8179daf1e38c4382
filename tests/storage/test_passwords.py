"""Changed passwords persist where passwordlocation says, touching nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapvm.config import load
from imapvm.storage.base import MailboxRef
from imapvm.storage.passwords import (
    PasswordError,
    rewrite_mailbox_line,
    save_password,
    spooldir_passwords,
)

CONF = """; my voicemail.conf -- comments and layout must survive
[general]
format=wav

[default]
1234 => 4242,Alice Example,alice@example.org,,imapuser=alice ; Alice's box
1235 => -9999,Locked Bob
1236=>1111,Carol
[other]
1234 => 5555,Other Alice
"""


async def test_rewrites_only_the_password_field(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_bytes(CONF.encode())
    loaded = load(conf, None)
    await save_password(loaded.voicemail, tmp_path, MailboxRef("1234", "default"), "8642")
    await save_password(loaded.voicemail, tmp_path, MailboxRef("1236", "default"), "2468")
    after = conf.read_text()
    assert after == CONF.replace("1234 => 4242,", "1234 => 8642,").replace(
        "1236=>1111,", "1236=>2468,")
    reloaded = load(conf, None)
    assert reloaded.voicemail.effective("1234@default").password == "8642"
    assert reloaded.voicemail.effective("1234@other").password == "5555"
    with pytest.raises(PasswordError, match="locked"):
        await save_password(loaded.voicemail, tmp_path, MailboxRef("1235", "default"), "1")
    with pytest.raises(PasswordError, match="keypad"):
        await save_password(loaded.voicemail, tmp_path, MailboxRef("1234", "default"), "12 34")


async def test_spooldir_secret_conf(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\npasswordlocation=spooldir\n[default]\n100 => 1111,Dave\n")
    loaded = load(conf, None)
    path = await save_password(loaded.voicemail, tmp_path / "spool", MailboxRef("100"), "7777")
    assert path == tmp_path / "spool" / "default" / "100" / "secret.conf"
    assert "password=7777" in path.read_text()
    assert spooldir_passwords(loaded.voicemail, tmp_path / "spool") == {MailboxRef("100"): "7777"}
    assert "1111" in conf.read_text()  # voicemail.conf untouched


def test_rewrite_refuses_the_wrong_line() -> None:
    with pytest.raises(PasswordError, match="not the definition"):
        rewrite_mailbox_line(b"1235 => 1,Bob\n", "1234", "9")
    assert rewrite_mailbox_line(b"  1234 =>  42,A\r\n", "1234", "99") == b"  1234 =>  99,A\r\n"
