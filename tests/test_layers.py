"""The package's layers import one way only (ARCHITECTURE.md):

rtmp -> media -> conf -> app -> net -> http -> worker/master

A module may import from its own layer and from layers to its left, never to its right.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRV = Path(__file__).resolve().parents[1] / "srv"
ORDER = ["rtmp", "media", "conf", "app", "net", "http", "top"]


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "srv":
        return None
    if len(parts) == 1 or parts[1] in ("__init__", "log"):
        return "base"
    return parts[1] if parts[1] in ORDER else "top"


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_layers_import_one_way_only() -> None:
    bad = []
    for path in SRV.rglob("*.py"):
        rel = path.relative_to(SRV.parent).with_suffix("")
        me = layer_of(".".join(rel.parts))
        if me in (None, "base"):
            continue
        for line, mod in imports(path):
            other = layer_of(mod)
            if other in (None, "base") or other == me:
                continue
            if ORDER.index(other) > ORDER.index(me):
                bad.append(f"{path.relative_to(SRV.parent)}:{line}: {me} imports {mod} ({other})")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_sans_io_layers_use_no_sockets_or_asyncio() -> None:
    for layer in ("rtmp", "media"):
        for path in (SRV / layer).rglob("*.py"):
            mods = {m.split(".")[0] for _, m in imports(path)}
            assert not mods & {"asyncio", "socket", "selectors"}, path
