r"""The package's layers import one way only (ARCHITECTURE.md), by the real rules:

    rtmp                       sans-I/O protocol (and AMF, which FLV script data uses too)
     |
    media      conf            FLV and codecs over AMF; config beside them, importing neither
       \       /
          app                  the stream hub
           |
          net                  asyncio protocols, flow control, forwarders, pulls, hooks; the
           |                   Protocols a connection sees of its worker (ConnectionContext)
          http                 HTTP-FLV, API, exporter (not over rtmp: the hub describes streams)
           |
    process (srv/process/)     the master/worker channel's messages and transport
           |
    worker (srv/worker.py, srv/worker_context.py)      the worker and its composition root
           |
    master (srv/master/), then cli

A layer may import the layers below it, never one beside or above it: a connection never
reaches the worker's composition root (it sees `srv.net.context.ConnectionContext`), the worker
never imports the master, only the process model imports `srv/process`. `srv/log.py` and
`srv/__init__.py` (and `srv/accel.py`, which it runs first) are for everyone. A new top-level
module must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRV = Path(__file__).resolve().parents[1] / "srv"

_BOTTOM = {"rtmp", "media", "conf"}
ALLOWED: dict[str, set[str]] = {
    "rtmp": set(),
    "media": {"rtmp"},
    "conf": set(),
    "app": _BOTTOM,
    "net": {"app"} | _BOTTOM,
    "http": {"net", "app", "media", "conf"},  # stream descriptions come decoded: no RTMP here
    "cluster": {"net", "app"} | _BOTTOM,  # the origin-cluster proxy: relays beside net's protocols
    "process": {"http", "net", "app"} | _BOTTOM,
    "worker": {"process", "cluster", "http", "net", "app"} | _BOTTOM,
    "master": {"worker", "process", "cluster", "http", "net", "app"} | _BOTTOM,
    "cli": {"master", "worker", "process", "cluster", "http", "net", "app"} | _BOTTOM,
}
TOP_LEVEL = {"worker": "worker", "worker_context": "worker", "cli": "cli", "__main__": "cli",
             "log": "base", "__init__": "base", "accel": "base"}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name; "base" for modules everyone may use; None outside srv."""
    parts = module.split(".")
    if parts[0] != "srv":
        return None
    if len(parts) == 1:
        return "base"
    name = parts[1]
    if name in ALLOWED and name not in TOP_LEVEL:
        return name
    return TOP_LEVEL.get(name, f"unplaced module srv.{name}")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every import in the file (also inside functions), relative ones resolved."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.append((node.lineno, base))
            if base == "srv":  # `from srv import log`: the module named (not `__version__`)
                found += [(node.lineno, f"srv.{a.name}") for a in node.names
                          if (root / f"{a.name}.py").exists() or (root / a.name).is_dir()]
    return found


def violations(root: Path) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        me = layer_of(module_name(path, root))
        if me is None or me == "base":
            continue
        if me not in ALLOWED:
            bad.append(f"{path.relative_to(root.parent)}: {me}: give it a layer in tests/test_layers.py")
            continue
        for line, mod in imports(path, root):
            other = layer_of(mod)
            if other in (None, "base", me) or mod == "srv":
                continue
            if other not in ALLOWED[me]:
                bad.append(f"{path.relative_to(root.parent)}:{line}: {me} imports {mod} ({other})")
    return bad


def test_layers_import_one_way_only() -> None:
    bad = violations(SRV)
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_the_rules_catch_what_a_single_linear_order_let_through(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    for name, text in {
        "conf/x.py": "from srv.media import flv\n",  # side by side at the bottom
        "http/x.py": "from srv.worker_context import WorkerContext\n",  # the worker's composition root
        "worker.py": "from srv.master.listeners import ListenSpec\n",  # the worker under the master
        "net/x.py": "from srv.process import messages\n",  # the process model's channel
        "http/y.py": "def f():\n    from ..worker import run_worker\n",  # relative, inside a function
        "net/ok.py": "from srv.app.hub import StreamHub\nfrom srv import log\n",
        "process/__init__.py": "",
        "log.py": "",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    bad = violations(root)
    assert [b.split(": ", 1)[1] for b in bad] == [
        "conf imports srv.media (media)",
        "http imports srv.worker_context (worker)",
        "http imports srv.worker (worker)",
        "net imports srv.process (process)",
        "worker imports srv.master.listeners (master)",
    ], bad


def _module_graph(package: Path) -> dict[str, set[str]]:
    mods = {module_name(p, SRV): p for p in package.rglob("*.py")}
    return {m: {i for _, i in imports(p, SRV) if i in mods and i != m} for m, p in mods.items()}


def test_sans_io_layers_have_no_import_cycles() -> None:
    for layer in ("rtmp", "media"):
        graph = _module_graph(SRV / layer)
        done: set[str] = set()

        def visit(m: str, path: tuple[str, ...], graph: dict[str, set[str]] = graph,
                  done: set[str] = done) -> None:
            assert m not in path, "import cycle: " + " -> ".join((*path[path.index(m):], m))
            if m not in done:
                for n in graph[m]:
                    visit(n, (*path, m))
                done.add(m)
        for m in graph:
            visit(m, ())


def test_sans_io_layers_use_no_sockets_or_asyncio() -> None:
    for layer in ("rtmp", "media"):
        for path in (SRV / layer).rglob("*.py"):
            mods = {m.split(".")[0] for _, m in imports(path, SRV)}
            assert not mods & {"asyncio", "socket", "selectors"}, path
