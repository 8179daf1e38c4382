"""Asterisk's configuration-file syntax, read the way Asterisk's config loader reads it.

This module knows nothing about voicemail: it turns files into sections of `key = value` items,
each remembering the file and line it was written on, so that every later message can point at
the exact place. What it understands:

- `[name]`, templates `[name](!)`, inheritance `[name](tmpl1,tmpl2)` (items of the bases are
  copied first, so the section's own items, which come later, win), `[name](+)` to continue an
  existing section;
- `key = value` and `key => value` (the same thing), `key += more` (appends to the previous value);
- `;` comments, `;-- block comments --;` (nesting), `\\;` for a literal semicolon;
- `#include` and `#tryinclude` with relative paths (resolved against the directory of the main
  file, as Asterisk resolves them against its configuration directory) and globs;
- `#exec`/`#tryexec` are refused: running commands while reading a configuration file is exactly
  the kind of surprise a voicemail server must not have;
- CRLF line ends, UTF-8 with a Latin-1 fallback, a UTF-8 byte-order mark.

Like Asterisk, several sections may share a name; callers decide what that means.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from imapvm.config.diagnostics import Diagnostics, Location

MAX_LINE = 8190
"""Asterisk's configuration line buffer; longer lines are cut there by Asterisk."""

MAX_INCLUDE_DEPTH = 20


@dataclass(frozen=True)
class Item:
    """One `key = value` line. `inherited` names the template it was copied from, if any."""

    key: str
    value: str
    location: Location
    is_object: bool = False
    inherited: str | None = None


@dataclass
class Section:
    name: str
    location: Location
    template: bool = False
    bases: tuple[str, ...] = ()
    items: list[Item] = field(default_factory=list)

    def get(self, key: str) -> Item | None:
        """The effective item for `key`: the last one, compared case-insensitively (as Asterisk)."""
        found = None
        lowered = key.lower()
        for item in self.items:
            if item.key.lower() == lowered:
                found = item
        return found


@dataclass
class ConfigText:
    """Every section of one configuration file and the files it includes, in reading order."""

    sections: list[Section] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def sections_named(self, name: str) -> list[Section]:
        lowered = name.lower()
        return [s for s in self.sections if s.name.lower() == lowered and not s.template]

    def first(self, name: str) -> Section | None:
        """The section Asterisk's `ast_variable_retrieve` reads: the first non-template one."""
        found = self.sections_named(name)
        return found[0] if found else None


@dataclass
class _State:
    base_dir: Path
    diags: Diagnostics
    result: ConfigText
    current: Section | None = None
    stack: list[str] = field(default_factory=list)


def parse_file(path: str | os.PathLike[str], diags: Diagnostics) -> ConfigText:
    """Read `path` and everything it includes. Problems go to `diags`; nothing is raised."""
    main = Path(path)
    state = _State(base_dir=main.parent, diags=diags, result=ConfigText())
    _read_file(main, state, including=None, optional=False)
    return state.result


def parse_text(text: str, diags: Diagnostics, name: str = "<string>") -> ConfigText:
    """Parse text that is not in a file (tests, generated configurations)."""
    state = _State(base_dir=Path.cwd(), diags=diags, result=ConfigText())
    state.stack.append(name)
    _parse_lines(text, name, state)
    state.stack.pop()
    return state.result


def decode(data: bytes) -> tuple[str, bool]:
    """Text of a configuration file and whether it had to be read as Latin-1."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("latin-1"), True


def _read_file(path: Path, state: _State, including: Location | None, optional: bool) -> None:
    name = str(path)
    if name in state.stack:
        state.diags.error(f"#include loop: {name} includes itself", including)
        return
    if len(state.stack) >= MAX_INCLUDE_DEPTH:
        state.diags.error(f"#include nested deeper than {MAX_INCLUDE_DEPTH} files", including)
        return
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not optional:
            state.diags.error(f"file not found: {name}", including or Location(name))
        return
    except OSError as exc:
        state.diags.error(f"cannot read {name}: {exc.strerror or exc}", including or Location(name))
        return
    except ValueError:  # e.g. a NUL byte in the name
        state.diags.error(f"invalid file name {name!r}", including or Location(name))
        return
    text, latin1 = decode(data)
    if including is not None:
        bad_line = _not_config_line(text, data)
        if bad_line:
            # Never echo the file: #include "/etc/shadow" must not print password hashes.
            state.diags.error(
                f"#include {name}: not an Asterisk configuration file (line {bad_line} is not "
                "a [section], #directive or name=value); nothing read from it",
                including,
            )
            return
    if latin1:
        state.diags.info("file is not valid UTF-8; read as Latin-1", Location(name))
    state.result.files.append(name)
    state.stack.append(name)
    _parse_lines(text, name, state)
    state.stack.pop()


def _not_config_line(text: str, data: bytes) -> int:
    """First line number (1-based) that no Asterisk configuration file could contain, or 0.

    Every meaningful line of such a file is a `[section]`, a `#directive` or has an `=`;
    a NUL byte means a binary file (reported as line 1 whatever its position)."""
    if b"\0" in data:
        return 1
    depth = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line, depth = strip_comment(raw.removesuffix("\r"), depth)
        line = line.strip()
        if line and not line.startswith(("[", "#")) and "=" not in line:
            return number
    return 0


def strip_comment(line: str, depth: int) -> tuple[str, int]:
    """Remove `;` and `;-- --;` comments from one line; returns the text and the block depth."""
    out: list[str] = []
    i = 0
    n = len(line)
    while i < n:
        if depth > 0:
            if line.startswith("--;", i):
                depth -= 1
                i += 3
            elif line.startswith(";--", i):
                depth += 1
                i += 3
            else:
                i += 1
            continue
        char = line[i]
        if char == "\\" and i + 1 < n and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if char == ";":
            if line.startswith(";--", i):
                depth += 1
                i += 3
                continue
            break
        out.append(char)
        i += 1
    return "".join(out), depth


def _parse_lines(text: str, name: str, state: _State) -> None:
    depth = 0
    block_start: Location | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        where = Location(name, number)
        raw = raw.removesuffix("\r")
        if len(raw) > MAX_LINE:
            state.diags.warning(
                f"line is {len(raw)} characters long; Asterisk cuts lines at {MAX_LINE}", where
            )
        was_in_block = depth > 0
        line, depth = strip_comment(raw, depth)
        if depth > 0 and not was_in_block:
            block_start = where
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            _section_line(line, where, state)
        elif line.startswith("#"):
            _directive_line(line, where, state)
        else:
            _item_line(line, where, state)
    if depth > 0:
        state.diags.warning("block comment ';--' is never closed with '--;'", block_start)


def _section_line(line: str, where: Location, state: _State) -> None:
    close = line.find("]")
    if close < 0:
        state.diags.error(f"section header without closing ']': {line!r}", where)
        state.current = _detached(where)
        return
    name = line[1:close].strip()
    rest = line[close + 1 :].strip()
    if not name:
        state.diags.error("section header with an empty name", where)
        state.current = _detached(where)
        return
    template = False
    append = False
    bases: list[str] = []
    if rest:
        if not rest.startswith("(") or not rest.endswith(")"):
            state.diags.error(
                f"unexpected text after section [{name}]: {rest!r} (options go in parentheses)",
                where,
            )
            state.current = _detached(where)
            return
        for option in rest[1:-1].split(","):
            option = option.strip()
            if option == "!":
                template = True
            elif option == "+":
                append = True
            elif option:
                bases.append(option)
    if append:
        existing = [s for s in state.result.sections if s.name.lower() == name.lower()]
        if not existing:
            state.diags.error(f"[{name}](+) continues a section that does not exist yet", where)
            state.current = _detached(where)
            return
        state.current = existing[-1]
        return
    section = Section(name=name, location=where, template=template, bases=tuple(bases))
    for base in bases:
        matches = [s for s in state.result.sections if s.name.lower() == base.lower()]
        if not matches:
            state.diags.error(
                f"[{name}] inherits from '{base}', which is not defined above it", where
            )
            continue
        source = matches[-1]
        for item in source.items:
            section.items.append(
                Item(item.key, item.value, item.location, item.is_object, item.inherited or base)
            )
    state.result.sections.append(section)
    state.current = section


def _detached(where: Location) -> Section:
    """A section that is not kept: the items under a broken header are dropped without a
    second message each, since the header's error already explains them."""
    return Section(name="", location=where)


def _directive_line(line: str, where: Location, state: _State) -> None:
    word, _, argument = line[1:].partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        argument = f"{more} {argument}"
    word = word.lower()
    argument = argument.strip()
    if len(argument) >= 2 and (argument[0], argument[-1]) in {('"', '"'), ("<", ">")}:
        argument = argument[1:-1].strip()
    if word in {"exec", "tryexec"}:
        state.diags.error(
            f"#{word} is refused: imapvm never runs commands while reading its configuration; "
            "write the output to a file and #include it",
            where,
        )
        return
    if word not in {"include", "tryinclude"}:
        state.diags.warning(f"unknown directive '#{word}' ignored", where)
        return
    optional = word == "tryinclude"
    if not argument:
        state.diags.error(f"#{word} without a file name", where)
        return
    if "\0" in argument:
        state.diags.error(f"#{word}: file name contains a NUL byte", where)
        return
    pattern = os.path.expanduser(argument)
    if not os.path.isabs(pattern):
        pattern = str(state.base_dir / pattern)
    if glob.has_magic(pattern):
        matches = sorted(glob.glob(pattern))
        if not matches:
            if not optional:
                state.diags.error(f"#include {argument}: no file matches", where)
            return
        for match in matches:
            _read_file(Path(match), state, including=where, optional=optional)
        return
    _read_file(Path(pattern), state, including=where, optional=optional)


def _item_line(line: str, where: Location, state: _State) -> None:
    equals = line.find("=")
    if equals < 0:
        state.diags.warning(f"no '=' in line, ignored: {line!r}", where)
        return
    key = line[:equals]
    value = line[equals + 1 :]
    is_object = False
    append = False
    if value.startswith(">"):
        is_object = True
        value = value[1:]
    elif key.endswith("+"):
        append = True
        key = key[:-1]
    key = key.strip()
    value = value.strip()
    if not key:
        state.diags.error(f"line has no name before '=': {line!r}", where)
        return
    if state.current is None:
        state.diags.error(f"'{key}' appears before any [section] header", where)
        return
    if append:
        previous = state.current.get(key)
        if previous is not None:
            index = len(state.current.items) - 1 - state.current.items[::-1].index(previous)
            state.current.items[index] = Item(
                previous.key, previous.value + value, previous.location, previous.is_object
            )
            return
    state.current.items.append(Item(key, value, where, is_object))
