"""SRS environment overrides: ``SRS_<DOTTED_PATH>`` beats the file.

The variable name is the directive's dotted path upper-cased with dots as underscores, as in
SRS (``SRS_LISTEN``, ``SRS_HTTP_API_LISTEN``, ``SRS_VHOST_PLAY_GOP_CACHE``), plus SRS's short
aliases (``SRS_LOG_TANK`` for ``SRS_SRS_LOG_TANK``...).  An empty value is ignored, as in
SRS.  ``vhost.*`` variables apply to every vhost ("for all vhosts" in SRS's full.conf).

Overrides are applied to the parsed tree as synthetic directives located at
``env SRS_X`` (line 0), so they are validated exactly like file values and an error reads
``env SRS_LISTEN: invalid port "x"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from srv.conf.directives import REGISTRY
from srv.conf.parser import Directive
from srv.conf.registry import MAIN, Spec

__all__ = ["EnvOverride", "ENV_OVERRIDES", "apply_env", "env_name"]


@dataclass(frozen=True)
class EnvOverride:
    variable: str
    context: str
    spec: Spec


def env_name(context: str, name: str) -> str:
    parts = [] if context == MAIN else context.split(".")
    return "SRS_" + "_".join([*parts, name]).upper()


def _table() -> tuple[EnvOverride, ...]:
    primary: list[EnvOverride] = []
    aliases: list[EnvOverride] = []
    for context, spec in REGISTRY.places():
        if spec.block or spec.multiple or not spec.env or context.startswith("vhost.forward"):
            continue
        primary.append(EnvOverride(env_name(context, spec.name), context, spec))
        aliases.extend(EnvOverride(alias, context, spec) for alias in spec.env_aliases)
    return (*primary, *aliases)


ENV_OVERRIDES: tuple[EnvOverride, ...] = _table()
"""Every variable srv reads, canonical names before aliases (the first one set wins)."""

def apply_env(directives: list[Directive], environ: Mapping[str, str]) -> list[Directive]:
    """``directives`` with every set ``SRS_*`` override replacing the file's value."""
    done: set[tuple[str, str]] = set()
    tree = list(directives)
    for override in ENV_OVERRIDES:
        value = environ.get(override.variable, "")
        key = (override.context, override.spec.name)
        if not value.strip() or key in done:
            continue
        done.add(key)
        synthetic = Directive(override.spec.name, tuple(value.split()), None, f"env {override.variable}", 0, 0)
        path = [] if override.context == MAIN else override.context.split(".")
        tree = _put(tree, path, synthetic)
    return tree


def _put(children: list[Directive], path: list[str], synthetic: Directive) -> list[Directive]:
    """Replace ``synthetic.name`` in the block at ``path`` (created if missing)."""
    if not path:
        kept = [d for d in children if d.name != synthetic.name]
        return [*kept, synthetic]
    head, rest = path[0], path[1:]
    out: list[Directive] = []
    found = False
    for d in children:
        # vhost-level overrides reach every vhost; other blocks: the first one, which wins.
        if d.name == head and d.children is not None and (head == "vhost" or not found):
            found = True
            inner = _put(list(d.children), rest, synthetic)
            out.append(Directive(d.name, d.args, tuple(inner), d.file, d.line, d.col))
        else:
            out.append(d)
    if not found and head != "vhost":
        out.append(Directive(head, (), tuple(_put([], rest, synthetic)), synthetic.file, 0, 0))
    return out
