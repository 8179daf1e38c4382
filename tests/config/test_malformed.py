"""Hostile and random input: never a traceback, and every problem located by file and line."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapvm.config.loader import load
from imapvm.config.render import report_json

KEYWORDS = [
    "[general]", "[default]", "[zonemessages]", "[t](!)", "[c](t)", "[c](+)", "[x](nope)",
    "#include", "#tryinclude", "#exec", "=>", "=", "+=", ";", ";--", "--;", "\\;", "|", ",",
    "imapuser", "imapflags=ssl/bogus", "maxmsg", "tz", "imapserver", "authuser", "format",
    "emailbody=\\", "\\n", "\\q", "aliasescontext", "searchcontexts=yes", "*", "-", "@",
    "eastern=America/New_York|x", "Mars/Base", "yes", "99999", "[", "]", "(", ")",
]  # fmt: skip
CHARS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/", exclude_categories=("Cs",)),
    max_size=12,
)
LINE = st.lists(st.one_of(st.sampled_from(KEYWORDS), CHARS), max_size=8).map(" ".join)
FILE = st.lists(LINE, max_size=25).map("\n".join)


def check_located(conf: Path, text: bytes) -> None:
    conf.write_bytes(text)
    loaded = load(conf, conf.parent / "absent.toml", settings_required=False)
    report_json(loaded)  # rendering must not fail either
    line_count = text.count(b"\n") + 1
    for diagnostic in loaded.diagnostics:
        assert diagnostic.location is not None, diagnostic
        if diagnostic.file == str(conf):
            assert 0 <= diagnostic.line <= line_count, diagnostic
        if diagnostic.severity.name == "ERROR" and "include" not in diagnostic.message:
            assert diagnostic.line >= 1, diagnostic


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FILE)
def test_random_lines_never_raise(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        check_located(Path(directory) / "voicemail.conf", text.encode("utf-8"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        check_located(Path(directory) / "voicemail.conf", data)


def test_known_nasty_inputs(tmp_path: Path) -> None:
    conf = tmp_path / "voicemail.conf"
    for text in [
        b"",
        b"\x00\x00",
        b"[",
        b"[]",
        b"[a](",
        b"[general]\nimapflags=\n",
        b"[general]\nformat=|\n",
        b"[default]\n1 =>\n",
        b"[default]\n1 => ,,,,,,,,|||===\n",
        b"[general]\nimapserver=x\n[default]\n1 => 1,,,,imapport=0|imapuser=\n",
        b"#include *\n",
        b"#include\n",
        b"[zonemessages]\nz=|\n",
        b"[general]\naliasescontext=general\n",
        b"\r\r\r\n[general]\r\nmaxmsg=\r\n",
        b"[general]\ncharset=utf-8\x00\n",
        b"[zonemessages]\nz=America/\x00York|x\n[general]\ntz=z\n",
        b"[general]\nimapflags=ssl\x00/tls\x00\n[default]\n1 => 1,,,,imapuser=\x00\n",
    ]:
        check_located(conf, text)
