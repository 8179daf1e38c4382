"""Run a site's external command (``mailcmd``, ``externpass``, ``externpasscheck``...) safely.

Asterisk hands these to ``/bin/sh -c`` with the arguments pasted in, passwords included. Here the
configured text is split into words as a shell would (quotes honoured, nothing expanded) and the
arguments are appended as separate argv entries: no shell ever sees a caller's digits. Every run
has a timeout, after which the process (and its process group) is killed.

Callers log *what* ran by its first word only (``describe``): the arguments may hold a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 30.0


class CommandError(Exception):
    """The command could not be run at all, or did not finish in time."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_line(self) -> str:
        """The first line of the output, decoded leniently (Asterisk reads only that)."""
        text = self.stdout.decode("utf-8", "replace").strip()
        return text.splitlines()[0].strip() if text else ""


def split_command(text: str) -> list[str]:
    """The configured command as argv (ValueError for unbalanced quotes or an empty text)."""
    words = shlex.split(text)
    if not words:
        raise ValueError("empty command")
    return words


def describe(text: str) -> str:
    """The program's name for logs: never the arguments, which may hold secrets."""
    try:
        return split_command(text)[0]
    except ValueError:
        return "<unparsable command>"


def find_program(text: str) -> str | None:
    """Why the command cannot run (for ``imapvm check``), or None when its program is there.

    A name without ``/`` is looked up on PATH, as ``execvp`` will."""
    try:
        program = split_command(text)[0]
    except ValueError as exc:
        return f"cannot be split into words: {exc}"
    if "/" not in program:
        return None if shutil.which(program) else f"{program} is not on PATH"
    path = Path(program)
    if not path.is_file():
        return f"{program} does not exist"
    if not os.access(path, os.X_OK):
        return f"{program} is not executable"
    return None


async def run_command(command: str, args: Sequence[str] = (), *, stdin: bytes | None = None,
                      timeout: float = DEFAULT_TIMEOUT  # noqa: ASYNC109 - a deadline
                      ) -> CommandResult:
    """Run ``command`` (split into words) with ``args`` appended; no shell.

    Raises :class:`CommandError` when it cannot be started or outlives ``timeout`` (it is killed
    then); a non-zero exit is a result, not an error."""
    try:
        argv = [*split_command(command), *args]
    except ValueError as exc:
        raise CommandError(f"{describe(command)}: {exc}") from None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
    except OSError as exc:
        raise CommandError(f"{argv[0]}: cannot run: {exc.strerror or exc}") from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        _kill(proc)
        with contextlib.suppress(Exception):
            await proc.wait()
        raise CommandError(f"{argv[0]}: no answer within {timeout:g} s; killed") from None
    except BaseException:
        _kill(proc)
        raise
    assert proc.returncode is not None
    return CommandResult(proc.returncode, stdout, stderr)


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
