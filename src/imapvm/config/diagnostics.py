"""Problems found in configuration files, collected rather than raised.

Asterisk logs one problem, often silently falls back to a default, and moves on; an operator finds
the mistake weeks later. imapvm instead collects every problem of every file into one list, each
located by file and line, so `imapvm check` can show them all at once and a reload can refuse a
file that has errors without stopping at the first one.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """Ordered so that `max()` over a list gives the worst problem."""

    INFO = 10
    WARNING = 20
    ERROR = 30

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, order=True)
class Location:
    """Where a directive was written; `line` is 1-based, 0 when the whole file is meant."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    location: Location | None = None

    @property
    def file(self) -> str | None:
        return self.location.file if self.location else None

    @property
    def line(self) -> int:
        return self.location.line if self.location else 0

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.severity}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "severity": str(self.severity),
            "file": self.file,
            "line": self.line,
            "message": self.message,
        }


@dataclass
class Diagnostics:
    """An append-only collector passed explicitly through every loader."""

    items: list[Diagnostic] = field(default_factory=list)
    _seen: set[Diagnostic] = field(default_factory=set, repr=False, compare=False)

    def add(self, severity: Severity, message: str, location: Location | None = None) -> None:
        """Record a problem once: a [general] value checked for every mailbox that inherits it
        must not be reported once per mailbox."""
        diagnostic = Diagnostic(severity, message, location)
        if diagnostic not in self._seen:
            self._seen.add(diagnostic)
            self.items.append(diagnostic)

    def error(self, message: str, location: Location | None = None) -> None:
        self.add(Severity.ERROR, message, location)

    def warning(self, message: str, location: Location | None = None) -> None:
        self.add(Severity.WARNING, message, location)

    def info(self, message: str, location: Location | None = None) -> None:
        self.add(Severity.INFO, message, location)

    def extend(self, other: Iterable[Diagnostic]) -> None:
        for diagnostic in other:
            self.add(diagnostic.severity, diagnostic.message, diagnostic.location)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        """Errors first, then by file and line, so the worst problem is read first."""
        return sorted(
            self.items,
            key=lambda d: (-d.severity, d.file or "", d.line, d.message),
        )

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix for an unknown name, or an empty string."""
    matches = difflib.get_close_matches(word.lower(), sorted(set(candidates)), n=1, cutoff=0.75)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
