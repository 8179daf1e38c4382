"""The site's password policies in the password-change menu (0 -> 5) and the new-user set-up:
minpassword, externpasscheck (Asterisk's VALID / FAILURE / anything-else protocol),
externpass (the site's command changes it) and externpassnotify (stored, then told). Real
scripts are run; none sees a shell, and no password reaches the log."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from imapvm.ivr.main import MainOptions, voicemail_main
from imapvm.storage import passwords
from imapvm.storage.base import MailboxRef
from imapvm.storage.passwords import change_password
from tests.ivr.conftest import BOX, World, WorldFactory
from tests.ivr.scripted import Press, Rec, ScriptedChannel
from tests.ivr.test_main import OWN

POLICY = ("vm-invalid-password", "vm-mismatch", "vm-passchanged")

SCRIPT = """#!{python}
# Records its arguments; answers as told by its name.
import json, sys, pathlib
log = pathlib.Path({log!r})
with log.open("a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
mode = {mode!r}
new = sys.argv[-1]
if mode == "check":
    print("INVALID: too simple" if new in ("1111", "1234") else "VALID")
elif mode == "failure":
    print("FAILURE: could not reach the policy server")
elif mode == "refuse":
    sys.exit(3)
elif mode == "hang":
    import time
    time.sleep(60)
"""


def script(tmp_path: Path, name: str, mode: str) -> tuple[Path, Path]:
    log = tmp_path / f"{name}.log"
    path = tmp_path / name
    path.write_text(SCRIPT.format(python=sys.executable, log=str(log), mode=mode))
    path.chmod(0o755)
    return path, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def wire(w: World, tmp_path: Path) -> None:
    """The server's saver: passwords.change_password over this world's configuration."""
    async def save(box: MailboxRef, password: str) -> None:
        await change_password(w.session.config, tmp_path / "spool", box, password)

    w.session.save_password = save


def change_twice(*attempts: tuple[str, str]) -> ScriptedChannel:
    """Into the options menu, then one 5 (change password) per attempt, then out."""
    keys: list[str | Press] = [Press("0", after="vm-messages")]
    first = True
    for new, again in attempts:
        keys.append("5" if first else Press("5", after="vm-options"))
        first = False
        keys += [f"{new}#", f"{again}#"] if again else [f"{new}#"]
    keys += [Press("*", after="vm-options"), Press("#", after="vm-helpexit")]
    return ScriptedChannel(keys, target=OWN)


async def test_externpasscheck_refuses_then_accepts(make_world: WorldFactory,
                                                    tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    check, log = script(tmp_path, "check", "check")
    w = await make_world(general=f"minpassword=4\nexternpasscheck={check}")
    wire(w, tmp_path)
    caplog.set_level(logging.DEBUG)
    # 12 is under minpassword (the script is not even asked), 1111 is refused by the script
    ch = change_twice(("12", ""), ("1111", ""), ("5678", "5678"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert [p for p in ch.played if p in POLICY] == [
        "vm-invalid-password", "vm-invalid-password", "vm-passchanged"]
    # Asterisk's arguments: mailbox, context, old password, new password
    assert calls(log) == [["1234", "default", "4321", "1111"],
                          ["1234", "default", "4321", "5678"]]
    assert w.session.password(BOX) == "5678"
    assert "5678" in (tmp_path / "w0" / "voicemail.conf").read_text()
    assert "1111" not in caplog.text
    assert "5678" not in caplog.text


async def test_externpasscheck_failure_or_hang_accepts_as_asterisk(
        make_world: WorldFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing, _ = script(tmp_path, "failing", "failure")
    w = await make_world(general=f"externpasscheck={failing}")
    wire(w, tmp_path)
    ch = change_twice(("2468", "2468"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert [p for p in ch.played if p in POLICY] == ["vm-passchanged"]
    hanging, _ = script(tmp_path, "hanging", "hang")
    monkeypatch.setattr(passwords, "COMMAND_TIMEOUT", 0.5)
    w = await make_world(general=f"externpasscheck={hanging}")
    assert await passwords.check_new_password(w.session.config, w.session.settings(BOX),
                                              "4321", "97531")


async def test_externpass_changes_it_through_the_sites_command(make_world: WorldFactory,
                                                               tmp_path: Path) -> None:
    setter, log = script(tmp_path, "setpass", "ok")
    w = await make_world(general=f"externpass={setter}")
    wire(w, tmp_path)
    before = (tmp_path / "w0" / "voicemail.conf").read_text()
    ch = change_twice(("8642", "8642"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert [p for p in ch.played if p in POLICY] == ["vm-passchanged"]
    assert calls(log) == [["default", "1234", "8642"]]  # context, mailbox, new password
    assert (tmp_path / "w0" / "voicemail.conf").read_text() == before  # the command's job
    assert w.session.password(BOX) == "8642"


async def test_externpass_refusing_keeps_the_old_password(make_world: WorldFactory,
                                                          tmp_path: Path) -> None:
    setter, log = script(tmp_path, "setpass", "refuse")
    w = await make_world(general=f"externpass={setter}")
    wire(w, tmp_path)
    ch = change_twice(("8642", "8642"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert [p for p in ch.played if p in POLICY] == ["vm-invalid-password"]
    assert len(calls(log)) == 1
    assert w.session.password(BOX) == "4321"


async def test_externpassnotify_stores_then_tells(make_world: WorldFactory,
                                                  tmp_path: Path) -> None:
    notify, log = script(tmp_path, "notify", "ok")
    w = await make_world(general=f"externpassnotify={notify}")
    wire(w, tmp_path)
    ch = change_twice(("3579", "3579"))
    await voicemail_main(ch, w.session, options=MainOptions(skip_password=True))
    assert [p for p in ch.played if p in POLICY] == ["vm-passchanged"]
    assert "1234 => 3579," in (tmp_path / "w0" / "voicemail.conf").read_text()
    assert calls(log) == [["default", "1234", "3579"]]


async def test_new_user_is_held_to_the_policy(make_world: WorldFactory, tmp_path: Path) -> None:
    """A new user (password = mailbox number, forcename) must pick one the checker accepts."""
    check, log = script(tmp_path, "check", "check")
    w = await make_world(conf=("[general]\nformat=wav\nexternpasscheck=" + str(check) +
                               "\n[default]\n1234 => 1234,Alice Owner,,,forcename=yes\n"))
    wire(w, tmp_path)
    ch = ScriptedChannel(["1234#", Rec(2), "1", "1111#", "2580#", "2580#",
                          Press("#", after="vm-helpexit")], target=OWN)
    await voicemail_main(ch, w.session)
    assert [p for p in ch.played if p in POLICY] == ["vm-invalid-password", "vm-passchanged"]
    assert [c[-1] for c in calls(log)] == ["1111", "2580"]

