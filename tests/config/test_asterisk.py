"""The Asterisk configuration syntax, form by form, with file:line on every item and problem."""

from __future__ import annotations

from pathlib import Path

from imapvm.config.asterisk import parse_file, parse_text, strip_comment
from imapvm.config.diagnostics import Diagnostics, Severity

from .helpers import only, write


def parse(tmp_path: Path, text: str | bytes, files: dict[str, str | bytes] | None = None):
    write(tmp_path, {"main.conf": text, **(files or {})})
    diags = Diagnostics()
    return parse_file(tmp_path / "main.conf", diags), diags


def test_sections_items_and_arrow_with_locations(tmp_path: Path) -> None:
    cfg, diags = parse(tmp_path, "[general]\nformat = wav\n\n[default]\n1234 => 4242,Me\n")
    assert not diags.items
    general, default = cfg.sections
    assert (general.name, default.name) == ("general", "default")
    assert general.items[0].key == "format"
    assert general.items[0].value == "wav"
    assert not general.items[0].is_object
    item = default.items[0]
    assert (item.key, item.value, item.is_object) == ("1234", "4242,Me", True)
    assert item.location.file == str(tmp_path / "main.conf")
    assert item.location.line == 5


def test_comments_block_comments_and_escaped_semicolon() -> None:
    text = (
        "; leading comment\n"
        "[s] ; trailing comment\n"
        "a = one ; comment\n"
        "b = semi\\;colon\n"
        ";-- block\n"
        "c = hidden\n"
        "--; d = after-block\n"
        "e = x ;-- inline --; \n"
    )
    diags = Diagnostics()
    cfg = parse_text(text, diags)
    items = {i.key: (i.value, i.location.line) for i in cfg.sections[0].items}
    assert items == {
        "a": ("one", 3),
        "b": ("semi;colon", 4),
        "d": ("after-block", 7),
        "e": ("x", 8),
    }
    assert not diags.items


def test_nested_block_comment_and_unclosed_block_is_reported() -> None:
    assert strip_comment("a ;-- x ;-- y --; z --; b", 0) == ("a  b", 0)
    diags = Diagnostics()
    parse_text("[s]\n;-- never closed\na=1\n", diags)
    warning = only(diags, Severity.WARNING, "never closed")
    assert warning.line == 2


def test_templates_inheritance_and_override_order() -> None:
    text = "[tmpl](!)\nx = 1\ny = 2\n[other](!)\nz = 3\n[child](tmpl,other)\ny = 20\n"
    diags = Diagnostics()
    cfg = parse_text(text, diags)
    assert cfg.sections_named("tmpl") == []  # templates are not real sections
    child = cfg.first("child")
    assert child is not None
    assert [(i.key, i.value, i.inherited) for i in child.items] == [
        ("x", "1", "tmpl"),
        ("y", "2", "tmpl"),
        ("z", "3", "other"),
        ("y", "20", None),
    ]
    assert child.get("Y").value == "20"  # last wins, case-insensitive, as ast_variable_retrieve
    assert child.items[0].location.line == 2  # inherited items keep their own line


def test_append_to_section_and_plus_equals() -> None:
    diags = Diagnostics()
    cfg = parse_text("[a]\nk = one\n[b]\n[a](+)\nk += two\nm = 3\n", diags)
    a = cfg.first("a")
    assert a is not None
    assert [(i.key, i.value) for i in a.items] == [("k", "onetwo"), ("m", "3")]
    assert not diags.items


def test_syntax_errors_are_located_and_do_not_cascade() -> None:
    text = (
        "orphan = 1\n"          # 1: before any section
        "[broken\n"             # 2: no closing bracket
        "a = 1\n"               # 3: swallowed by the broken header, no second message
        "[ok]\n"                # 4
        "no equals here\n"      # 5: warning
        "= value\n"             # 6: no name
        "[x](missing)\n"        # 7: unknown base
        "[y](+)\n"              # 8: append to nothing
        "[z] junk\n"            # 9: junk after header
        "#bogus thing\n"        # 10: unknown directive
    )  # fmt: skip
    diags = Diagnostics()
    parse_text(text, diags, name="t.conf")
    located = sorted((d.line, d.severity) for d in diags)
    assert located == [
        (1, Severity.ERROR),
        (2, Severity.ERROR),
        (5, Severity.WARNING),
        (6, Severity.ERROR),
        (7, Severity.ERROR),
        (8, Severity.ERROR),
        (9, Severity.ERROR),
        (10, Severity.WARNING),
    ]
    assert all(d.file == "t.conf" for d in diags)


def test_include_relative_glob_and_current_section_continues(tmp_path: Path) -> None:
    cfg, diags = parse(
        tmp_path,
        '[default]\n#include "conf.d/one.conf"\n#include conf.d/glob-*.conf\nlast => 9\n',
        {
            "conf.d/one.conf": "1 => 1\n",
            "conf.d/glob-b.conf": "[other]\n3 => 3\n",
            "conf.d/glob-a.conf": "2 => 2\n",
        },
    )
    assert not diags.items
    default = cfg.first("default")
    other = cfg.first("other")
    assert default is not None
    assert other is not None
    assert [i.key for i in default.items] == ["1", "2"]
    # After an included file opens [other], the including file continues in [other].
    assert [i.key for i in other.items] == ["3", "last"]
    assert default.items[0].location.file == str(tmp_path / "conf.d/one.conf")
    assert default.items[0].location.line == 1
    assert len(cfg.files) == 4


def test_missing_include_is_an_error_but_tryinclude_is_not(tmp_path: Path) -> None:
    _, diags = parse(
        tmp_path, "[s]\n#tryinclude absent.conf\n#tryinclude none-*.conf\n#include absent.conf\n"
    )
    error = only(diags, Severity.ERROR, "absent.conf")
    assert error.line == 4
    assert len(diags) == 1


def test_include_loop_and_exec_are_refused(tmp_path: Path) -> None:
    _, diags = parse(tmp_path, "[s]\n#include main.conf\n#exec /bin/echo a=1\n")
    assert only(diags, Severity.ERROR, "loop").line == 2
    refused = only(diags, Severity.ERROR, "#exec is refused")
    assert refused.line == 3


def test_crlf_latin1_and_bom(tmp_path: Path) -> None:
    cfg, diags = parse(tmp_path, b"\xef\xbb\xbf[s]\r\nname = caf\xc3\xa9\r\n")
    assert cfg.sections[0].items[0].value == "café"
    assert not diags.items
    cfg, diags = parse(tmp_path, b"[s]\r\nname = M\xfcller\r\n")
    assert cfg.sections[0].items[0].value == "Müller"
    assert only(diags, Severity.INFO, "Latin-1").line == 0


def test_missing_main_file_is_an_error(tmp_path: Path) -> None:
    diags = Diagnostics()
    cfg = parse_file(tmp_path / "nope.conf", diags)
    assert cfg.sections == []
    assert only(diags, Severity.ERROR, "not found").file == str(tmp_path / "nope.conf")


def test_overlong_line_warns() -> None:
    diags = Diagnostics()
    parse_text("[s]\nk = " + "x" * 9000 + "\n", diags)
    assert only(diags, Severity.WARNING, "cuts lines").line == 2


def test_include_with_nul_byte_is_an_error(tmp_path: Path) -> None:
    """Found by hypothesis: a NUL in an include name made pathlib raise."""
    _, diags = parse(tmp_path, "[s]\n#include a\x00b\n#tryinclude x\x00*\n")
    assert [d.line for d in diags.errors] == [2, 3]
