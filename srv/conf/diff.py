"""What a reload changes: ``reload_diff(old, new) -> ConfigDiff``.

The master uses it to decide what to do in place (a vhost added, a forward destination
changed, listeners to open or close, workers to add or retire) and what it cannot do
without a restart (directives declared ``reloadable=False``: pid, daemon, logging sink),
which it reports as warnings and otherwise ignores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from srv.conf.directives import REGISTRY
from srv.conf.model import ServerConfig
from srv.conf.registry import MAIN

__all__ = ["ConfigDiff", "reload_diff"]


@dataclass(frozen=True)
class ConfigDiff:
    """Changes between two configs; dotted paths use model field names."""

    vhosts_added: tuple[str, ...] = ()
    vhosts_removed: tuple[str, ...] = ()
    vhosts_changed: tuple[str, ...] = ()
    forwards_changed: tuple[str, ...] = ()
    listen_changed: bool = False
    workers_changed: bool = False
    changed: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.changed or self.vhosts_added or self.vhosts_removed or self.vhosts_changed)

    def describe(self) -> str:
        """One line for the log: `vhosts added: new; listen changed` (or `no changes`)."""
        parts = []
        for label, names in (("vhosts added", self.vhosts_added), ("vhosts removed", self.vhosts_removed),
                             ("vhosts changed", self.vhosts_changed), ("forward changed", self.forwards_changed)):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        if self.listen_changed:
            parts.append("listen changed")
        if self.workers_changed:
            parts.append("workers changed")
        others = [c for c in self.changed if not c.startswith(("listen", "workers"))]
        if others:
            parts.append("changed: " + ", ".join(others))
        return "; ".join(parts) or "no changes"


def reload_diff(old: ServerConfig, new: ServerConfig) -> ConfigDiff:
    changed = [p for p in _changed_paths(MAIN, old, new) if p not in ("path", "warnings", "vhosts")]
    needs_restart = [p for p in changed if not _reloadable(p)]
    warnings = [
        f'"{p}" changed from {_show(_get(old, p))} to {_show(_get(new, p))}: needs a restart, '
        "keeping the old value until then"
        for p in needs_restart
    ]
    added = tuple(n for n in new.vhosts if n not in old.vhosts)
    removed = tuple(n for n in old.vhosts if n not in new.vhosts)
    both = [n for n in new.vhosts if n in old.vhosts]
    vhosts_changed = tuple(n for n in both if old.vhosts[n] != new.vhosts[n])
    forwards = tuple(n for n in vhosts_changed if old.vhosts[n].forwards != new.vhosts[n].forwards)
    return ConfigDiff(
        vhosts_added=added,
        vhosts_removed=removed,
        vhosts_changed=vhosts_changed,
        forwards_changed=forwards,
        listen_changed=[(e, e.proxy_protocol) for e in old.listen] != [(e, e.proxy_protocol) for e in new.listen],
        workers_changed=old.workers != new.workers,
        changed=tuple(changed),
        needs_restart=tuple(needs_restart),
        warnings=tuple(warnings),
    )


def _changed_paths(context: str, old: Any, new: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        path = f"{prefix}{f.name}"
        child = f.name if context == MAIN else f"{context}.{f.name}"
        if dataclasses.is_dataclass(a) and child in REGISTRY.sections:
            out.extend(_changed_paths(child, a, b, path + "."))
        else:
            out.append(path)
    return out


def _reloadable(path: str) -> bool:
    *blocks, name = path.split(".")
    spec = REGISTRY.by_field(".".join(blocks) or MAIN, name)
    return spec is None or spec.reloadable


def _get(config: ServerConfig, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return f'"{value}"' if isinstance(value, str) else str(value)
