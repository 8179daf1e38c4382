"""One node at a time per outbox directory: an exclusive lock held for as long as it works it.

The lock is ``flock(2)`` on ``<outbox>/lock``, taken without waiting. The kernel drops it when
its process dies however it dies (``kill -9`` included), which is what lets a replacement node
adopt a dead node's outbox at once and never while the owner lives. The file also names the
holder (host and pid) for the operator and the error messages.

Shared storage: on NFS (v4, or v3 with the lock manager) Linux turns ``flock`` into an NFS
byte-range lock, so the lock holds across machines; the server releases a dead client's lock
when its lease expires (90 s by default on Linux's nfsd), which is then the takeover delay.
CephFS and GlusterFS honour ``flock`` across clients too. A re-attachable block device
(an iSCSI or cloud volume moved to the replacement) is a local filesystem: nothing special.
File systems without working locks (SMB without ``nobrl`` off, some FUSE mounts) must not be
used for a shared outbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = "lock"


class OutboxBusy(OSError):
    """Another process works this outbox."""


class OutboxLock:
    """The exclusive lock of one outbox directory (blocking calls: use a thread on a loop)."""

    def __init__(self, directory: Path, owner: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.owner = owner or f"{socket.gethostname()} pid {os.getpid()}"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this object holds it (again)."""
        if self._fd is not None:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.owner}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def acquire(self) -> None:
        """Take the lock or raise `OutboxBusy` naming the holder."""
        if not self.try_acquire():
            raise OutboxBusy(f"outbox {self.directory} is in use by {self.holder()}")

    def holder(self) -> str:
        """Who holds (or last held) the lock, as written in the lock file."""
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
