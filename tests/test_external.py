"""Running the site's commands: no shell, arguments as separate words, a timeout that kills."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from imapvm.external import CommandError, describe, find_program, run_command


async def test_arguments_never_reach_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = await run_command(f"{sys.executable} -c 'import sys; print(sys.argv[1:])'",
                               ("1234; touch " + str(marker), "$(id)", "`id`"))
    assert result.ok
    assert result.first_line() == repr(["1234; touch " + str(marker), "$(id)", "`id`"])
    assert not marker.exists()


async def test_stdin_is_given_and_exit_status_reported() -> None:
    result = await run_command("sh -c 'cat; exit 3'", stdin=b"hello\n")
    assert (result.returncode, result.stdout) == (3, b"hello\n")


async def test_a_command_that_hangs_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandError, match=r"no answer within 3 s; killed"):
        await run_command(f"sh -c 'echo $$ > {pidfile}; exec sleep 60'", timeout=3.0)
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


async def test_a_missing_program_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot run"):
        await run_command(str(tmp_path / "nothing"))
    assert find_program(str(tmp_path / "nothing")) == f"{tmp_path / 'nothing'} does not exist"
    assert find_program("sh -c true") is None
    assert find_program("no-such-program-anywhere") == "no-such-program-anywhere is not on PATH"
    assert describe("/usr/bin/vmpass 1234 s3cret") == "/usr/bin/vmpass"
