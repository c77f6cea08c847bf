"""Meaning layer: a parsed ``Directive`` tree -> a validated, frozen ``ServerConfig``.

Walks the tree with the registry in hand and collects *every* problem rather than stopping
at the first.  Rules (SRS-compatible where SRS has one):

- a directive srv implements is converted by its ``Spec``; bad values, wrong arg counts,
  a block where a value belongs and the reverse are errors;
- a directive SRS knows but srv does not implement is one warning and is skipped, block
  and all;
- a directive srv implements elsewhere is an error naming the contexts where it belongs;
- anything else is an unknown directive, with a "did you mean" when one is close;
- a single-valued directive given twice keeps the first, as SRS does, with a warning;
- SRS 3 spellings SRS still upgrades (``gop_cache`` directly in a vhost, ``forward
  host:port;``) are upgraded the same way, with a warning.
"""

from __future__ import annotations

from typing import Any

from srv.conf.directives import REGISTRY
from srv.conf.errors import ConfigError, format_location
from srv.conf.model import DEFAULT_VHOST, ServerConfig, VhostConfig, VhostMap
from srv.conf.parser import Directive
from srv.conf.registry import MAIN, Spec
from srv.conf.srs_known import srs_knows

__all__ = ["build"]

# SRS 3 allowed these directly in a vhost; SRS 4+ moves them (srs_config_transform_vhost).
_SRS3_VHOST_MOVES: dict[str, tuple[str, str]] = {
    "gop_cache": ("play", "gop_cache"),
    "queue_length": ("play", "queue_length"),
    "mw_latency": ("play", "mw_latency"),
    "publish_1stpkt_timeout": ("publish", "firstpkt_timeout"),
    "publish_normal_timeout": ("publish", "normal_timeout"),
}

_INVALID = object()


class _Builder:
    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []

    def error(self, d: Directive, message: str, arg: int | None = None) -> None:
        """Report at the directive, or at its argument number `arg` when the value is wrong."""
        line, col = d.line, d.col
        if arg is not None and arg < len(d.arg_positions):
            line, col = d.arg_positions[arg]
        self.errors.append(ConfigError(d.file, line, col, message))

    def warn(self, d: Directive, message: str) -> None:
        self.warnings.append(format_location(d.file, d.line, d.col, message))

    # -- sections ------------------------------------------------------------------------

    def section(self, context: str, directives: tuple[Directive, ...], extra: dict[str, Any]) -> Any:
        """Build the dataclass for ``context`` from ``directives``; None if anything failed."""
        values: dict[str, Any] = {}
        repeated: dict[str, list[tuple[Any, Directive]]] = {}
        first: dict[str, Directive] = {}
        failed = False
        for d in directives:
            spec = self.check(context, d)
            if spec is None:
                continue
            if not spec.multiple and spec.name in first:
                self.warn(d, f'"{d.name}" is repeated; the first one at {first[spec.name].where()} wins (as in SRS)')
                continue
            first.setdefault(spec.name, d)
            value = self.value(context, spec, d)
            if value is _INVALID:
                failed = True
            elif spec.multiple:
                repeated.setdefault(spec.target, []).append((value, d))
            else:
                values[spec.target] = value
        for target, items in repeated.items():
            values[target] = self.combine(context, target, items)
        if failed or any(v is _INVALID for v in values.values()):
            return _INVALID
        return self.finish(context, REGISTRY.sections[context](**extra, **values), first)

    def combine(self, context: str, target: str, items: list[tuple[Any, Directive]]) -> Any:
        if context == MAIN and target == "vhosts":
            vhosts: dict[str, VhostConfig] = {}
            where: dict[str, Directive] = {}
            for vhost, d in items:
                if vhost is _INVALID:
                    continue
                if vhost.name in vhosts:
                    self.warn(d, f'vhost "{vhost.name}" is repeated; the first one at {where[vhost.name].where()} wins (as in SRS)')
                    continue
                vhosts[vhost.name] = vhost
                where[vhost.name] = d
            return VhostMap(vhosts.items())
        return tuple(value for value, _ in items)

    def finish(self, context: str, built: Any, first: dict[str, Directive]) -> Any:
        """Checks that look at more than one directive."""
        if context == MAIN:
            seen: set[Any] = set()
            for endpoint in built.listen:
                if endpoint in seen:
                    self.error(first["listen"], f'listen address "{endpoint}" is given twice')
                seen.add(endpoint)
        if context == "vhost.forward":
            if built.backoff_initial > built.backoff_max and "backoff_initial" in first:
                self.error(first["backoff_initial"], "backoff_initial is larger than backoff_max")
        return built

    # -- one directive -------------------------------------------------------------------

    def check(self, context: str, d: Directive) -> Spec | None:
        spec = REGISTRY.lookup(context, d.name)
        if spec is not None:
            return spec
        if srs_knows(context, d.name):
            self.warn(d, f'"{d.name}" is not supported yet (ignored)')
            return None
        elsewhere = REGISTRY.contexts_of(d.name)
        if elsewhere:
            self.error(d, f'"{d.name}" is not allowed in {context}, only in {", ".join(elsewhere)}')
            return None
        hint = REGISTRY.suggest(context, d.name)
        suffix = f' (did you mean "{hint}"?)' if hint else ""
        self.error(d, f'unknown directive "{d.name}"{suffix}')
        return None

    def value(self, context: str, spec: Spec, d: Directive) -> Any:
        if spec.block and d.children is None:
            self.error(d, f'"{d.name}" is a block: write "{d.text()} {{ ... }}"')
            return _INVALID
        if not spec.block and d.children is not None:
            self.error(d, f'"{d.name}" takes a value, not a block: write "{d.name} value;"')
            return _INVALID
        low, high = spec.nargs
        if len(d.args) < low or (high is not None and len(d.args) > high):
            self.error(d, f'"{d.name}" takes {spec.shape()}, got {len(d.args)}')
            return _INVALID
        converted: list[Any] = []
        for index, arg in enumerate(d.args):
            assert spec.convert is not None
            try:
                converted.append(spec.convert(arg))
            except ValueError as e:
                self.error(d, str(e), arg=index)
                return _INVALID
        if not spec.block:
            return converted[0] if high == 1 else tuple(converted)
        child = spec.child_context(context)
        extra = {spec.arg_field: converted[0]} if converted else {}
        children = d.children or ()
        if child == "vhost":
            children = self.upgrade_srs3_vhost(children)
        return self.section(child, children, extra)

    def upgrade_srs3_vhost(self, children: tuple[Directive, ...]) -> tuple[Directive, ...]:
        moved: dict[str, list[Directive]] = {}
        kept: list[Directive] = []
        for d in children:
            if d.name in _SRS3_VHOST_MOVES and d.children is None:
                block, name = _SRS3_VHOST_MOVES[d.name]
                self.warn(d, f'"{d.name}" directly in a vhost is SRS 3 syntax; read as {block} {{ {name} ...; }}')
                moved.setdefault(block, []).append(Directive(name, d.args, None, d.file, d.line, d.col))
            elif d.name == "forward" and d.children is None:
                self.warn(d, f'"forward {" ".join(d.args)};" is SRS 3 syntax; read as forward {{ enabled on; destination ...; }}')
                body = (
                    Directive("enabled", ("on",), None, d.file, d.line, d.col),
                    Directive("destination", d.args, None, d.file, d.line, d.col),
                )
                kept.append(Directive("forward", (), body, d.file, d.line, d.col))
            else:
                kept.append(d)
        for block, directives in moved.items():
            for i, d in enumerate(kept):
                if d.name == block and d.children is not None:
                    kept[i] = Directive(d.name, d.args, d.children + tuple(directives), d.file, d.line, d.col)
                    break
            else:
                first = directives[0]
                kept.append(Directive(block, (), tuple(directives), first.file, first.line, first.col))
        return tuple(kept)


def build(directives: list[Directive], path: str) -> tuple[ServerConfig | None, list[ConfigError], list[str]]:
    """Validate ``directives`` (already env-overridden) into a config, errors and warnings."""
    builder = _Builder()
    config = builder.section(MAIN, tuple(directives), {"path": path})
    if builder.errors or config is _INVALID:
        return None, builder.errors, builder.warnings
    assert isinstance(config, ServerConfig)
    if not config.vhosts:
        builder.warnings.append(
            f"{path}: no vhost is defined, so every client is rejected (add: vhost {DEFAULT_VHOST} {{ }})"
        )
    return config, [], builder.warnings
