"""The layers of DESIGN.md hold, read from the source: every import, type-only ones included.

    support < config < audio < channel < message < storage < mwi, notify < ivr, telephony
    < server/CLI

`support` holds the two leaf helpers any layer may use (metrics counters, running an external
command); they import nothing of imapvm. A module may import its own layer and the layers below;
packages sharing a layer (ivr and telephony, mwi and notify) never import each other. And no
two modules import each other, directly or round a cycle, even for type hints only: a cycle is
one module split in two."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

LAYERS: dict[str, int] = {
    "metrics": 0, "external": 0,
    "config": 1,
    "audio": 2,
    "channel": 3,
    "message": 4,
    "storage": 5,
    "mwi": 6, "notify": 6,
    "ivr": 7, "telephony": 7,
    "server": 8, "httpd": 8, "adoption": 8, "cli": 8, "commands": 8, "__main__": 8,
    "__init__": 8,
}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "imapvm").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported imapvm module, line) for every import in the file, wherever it stands
    (inside functions and `if TYPE_CHECKING:` blocks too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import module` imports the module; `from module import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for t in targets:
            if t.startswith("imapvm"):
                yield t, node.lineno


def layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    assert key in LAYERS, f"{module}: in no layer; add it to LAYERS (and docs/architecture.md)"
    return key, LAYERS[key]


def graph() -> dict[str, dict[str, int]]:
    mods = modules()
    known = set(mods)
    return {name: {t: line for t, line in imports(name, path, known) if t in known}
            for name, path in mods.items()}


def test_no_module_imports_from_a_higher_layer_or_a_sibling() -> None:
    wrong = []
    for name, targets in graph().items():
        pkg, rank = layer_of(name)
        for target, line in targets.items():
            tpkg, trank = layer_of(target)
            if target == "imapvm" or tpkg == pkg:
                continue
            if trank > rank or (trank == rank and rank not in (0, 8)):
                wrong.append(f"{name}:{line} imports {target} ({pkg} -> {tpkg})")
    assert wrong == []


def test_no_import_cycles_even_type_only() -> None:
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    # a package's __init__ re-exporting its modules is not a cycle worth breaking
    cycles = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".")
                                           for m in c) or len(c) > 2]
    assert cycles == []


def test_the_checker_sees_type_only_and_relative_imports(tmp_path: Path) -> None:
    g = graph()
    assert "imapvm.storage.base" in g["imapvm.storage.spool"]  # plain
    assert any(t.startswith("imapvm.telephony.sip") for t in g["imapvm.telephony.server"])
    assert "imapvm.config.loader" in g["imapvm.config.render"]  # under `if TYPE_CHECKING:`
    fake = tmp_path / "fake.py"
    fake.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from ..ivr.session import Session\n"
                    "def f() -> None:\n    from . import channel\n")
    found = dict(imports("imapvm.telephony.fake", fake, {"imapvm.telephony.channel"}))
    assert found == {"imapvm.ivr.session": 3, "imapvm.telephony.channel": 5}
