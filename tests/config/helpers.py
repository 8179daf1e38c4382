"""Write configuration text to a temporary directory and load it, as the server would."""

from __future__ import annotations

from pathlib import Path

from imapvm.config.diagnostics import Diagnostic, Diagnostics, Severity
from imapvm.config.voicemail import VoicemailConfig, load_voicemail_conf

DATA = Path(__file__).parent / "data"


def write(directory: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def load_conf(
    directory: Path, text: str | bytes, files: dict[str, str | bytes] | None = None
) -> tuple[VoicemailConfig, Diagnostics]:
    write(directory, {"voicemail.conf": text, **(files or {})})
    diags = Diagnostics()
    return load_voicemail_conf(directory / "voicemail.conf", diags), diags


def messages(diags: Diagnostics, severity: Severity | None = None) -> list[str]:
    return [d.message for d in diags if severity is None or d.severity is severity]


def only(diags: Diagnostics, severity: Severity, fragment: str) -> Diagnostic:
    """The single diagnostic of `severity` whose message contains `fragment`."""
    found = [d for d in diags if d.severity is severity and fragment in d.message]
    assert len(found) == 1, f"expected one {severity} with {fragment!r}, got {diags.items}"
    return found[0]
