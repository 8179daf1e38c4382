"""The `imapvm` entry points: console script, `python -m imapvm`, --version and --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import imapvm
from imapvm.cli import main

VENV_BIN = Path(sys.executable).parent


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"imapvm {imapvm.__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: imapvm" in capsys.readouterr().out


def test_python_dash_m_and_console_script_agree() -> None:
    via_module = subprocess.run([sys.executable, "-m", "imapvm", "--version"],
                                capture_output=True, text=True, check=True)
    via_script = subprocess.run([str(VENV_BIN / "imapvm"), "--version"],
                                capture_output=True, text=True, check=True)
    assert via_module.stdout == via_script.stdout
    assert via_module.stdout.startswith("imapvm ")


def test_unknown_command_is_an_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "imapvm", "no-such-command"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
