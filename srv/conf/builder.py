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
- older and newer SRS spellings SRS still reads (``gop_cache`` directly in a vhost,
  ``forward host:port;``, SRS 7's ``rtmp { listen; }``) are read the same way, with a
  warning naming the current spelling (``compat``);
- ``http_api { auth { enabled on; } }`` needs a username and a password; an API listening
  beyond loopback without it is a warning (anyone who reaches it can kick and reload).
  SRS's access control (``security``, ``http_hooks``, ``http_api { auth }``) is enforced, so
  those are ordinary blocks;
- ``hls_ll on`` (srv's LL-HLS) needs ``hls_part`` under the segment duration and fMP4: with
  ``hls_use_fmp4 off`` it warns and builds ``use_fmp4`` on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from srv.conf import values as v
from srv.conf.compat import upgrade_main, upgrade_vhost
from srv.conf.directives import REGISTRY
from srv.conf.errors import ConfigError, format_location
from srv.conf.model import DEFAULT_VHOST, HlsConfig, ServerConfig, VhostConfig, VhostMap, is_loopback
from srv.conf.parser import Directive
from srv.conf.registry import MAIN, Spec
from srv.conf.srs_known import srs_knows

__all__ = ["build"]

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
                    self.warn(d, f'vhost "{vhost.name}" is repeated; the first one at '
                                 f'{where[vhost.name].where()} wins (as in SRS)')
                    continue
                vhosts[vhost.name] = vhost
                where[vhost.name] = d
            return VhostMap(vhosts.items())
        if context == "vhost.security":
            for (action, target), d in items:
                if action not in ("publish", "play"):
                    self.error(d, f'invalid action "{d.args[0]}" (expected publish or play)', arg=0)
                elif target in ("publish", "play"):
                    self.error(d, f'invalid rule target "{d.args[1]}" (expected all, an IP or a CIDR)', arg=1)
        if context == "vhost.signed_url":
            names: set[str] = set()
            for (name, _), d in items:
                try:
                    v.key_name(name)
                except ValueError as e:
                    self.error(d, str(e), arg=0)
                if name in names:
                    self.error(d, f'key "{name}" is given twice', arg=0)
                names.add(name)
        return tuple(value for value, _ in items)

    def finish(self, context: str, built: Any, first: dict[str, Directive]) -> Any:
        """Checks that look at more than one directive."""
        if context == MAIN:
            seen: set[Any] = set()
            for endpoint in built.listen:
                if endpoint in seen:
                    self.error(first["listen"], f'listen address "{endpoint}" is given twice')
                seen.add(endpoint)
            if built.proxy_protocol_trusted == () and any(
                    ep.proxy_protocol for ep in (*built.listen, built.http_api.listen, built.http_server.listen,
                                                 built.exporter.listen, *built.rtmps.listen,
                                                 built.http_api.https.listen, built.http_server.https.listen)):
                where = next(d for d in (first.get("listen"), first.get("http_api"), first.get("http_server"),
                                         first.get("exporter"), first.get("rtmps")) if d is not None)
                self.error(where, "a listen address has proxy_protocol, but proxy_protocol_trusted is not set: "
                                  "name the load balancers allowed to send PROXY headers")
            proxy = built.proxy
            if proxy.enabled and proxy.load_balancer == "memory" and built.workers > 1:
                self.error(first.get("proxy") or first["workers"],
                           f"proxy load_balancer memory keeps origins and streams in one process, but "
                           f"workers is {built.workers}: set workers 1, or load_balancer redis")
            api = built.http_api
            ports = [api.listen] + ([api.https.listen] if api.https.enabled else [])  # HTTPS is the same API
            exposed = [ep for ep in ports if not is_loopback(ep.host)]
            if api.enabled and not api.auth.enabled and exposed:
                self.warn(first["http_api"], f"the HTTP API listens on {exposed[0]} without auth: whoever "
                                             f"reaches it can kick clients (and reload with raw_api); listen on "
                                             f"127.0.0.1 or set auth {{ enabled on; username ...; password ...; }}")
        if context == "http_api.auth" and built.enabled and not (built.username and built.password):
            self.error(first["enabled"], "auth is enabled without a username and a password")
        if context == "vhost.forward":
            if built.backoff_initial > built.backoff_max and "backoff_initial" in first:
                self.error(first["backoff_initial"], "backoff_initial is larger than backoff_max")
            flags = {"on", "off"} & set(built.allow_private)
            if flags and len(built.allow_private) > 1:
                self.error(first["allow_private"], f'allow_private takes "{flags.pop()}" alone, or networks')
        if context == "vhost.hls" and built.ll:
            built = self.low_latency_hls(built, first)
        if context == "vhost.signed_url" and built.enabled and not built.keys:
            self.error(first["enabled"], 'signed_url is enabled but has no "key name secret;"')
        return built

    def low_latency_hls(self, hls: HlsConfig, first: dict[str, Directive]) -> HlsConfig:
        """``hls_ll on``: parts shorter than the segments, and fMP4 (LL-HLS parts are CMAF chunks)."""
        limit = hls.fragment * hls.td_ratio
        if hls.part >= limit:
            self.error(first.get("hls_part") or first["hls_ll"],
                       f"hls_part {hls.part:g} must be shorter than hls_fragment * hls_td_ratio ({limit:g} s)")
        if not hls.use_fmp4:
            self.warn(first.get("hls_use_fmp4") or first["hls_ll"],
                      "hls_ll on needs fMP4 segments (LL-HLS parts are CMAF chunks): writing fMP4 "
                      "as if hls_use_fmp4 were on")
            hls = dataclasses.replace(hls, use_fmp4=True)
        return hls

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
        if not spec.block and spec.join is not None:
            try:
                return spec.join(converted)
            except ValueError as e:
                self.error(d, str(e))
                return _INVALID
        if not spec.block:
            return converted[0] if high == 1 else tuple(converted)
        child = spec.child_context(context)
        extra = {spec.arg_field: converted[0]} if converted else {}
        children = d.children or ()
        if child == "vhost":
            children = upgrade_vhost(children, self)
        return self.section(child, children, extra)


def build(directives: list[Directive], path: str) -> tuple[ServerConfig | None, list[ConfigError], list[str]]:
    """Validate ``directives`` (already env-overridden) into a config, errors and warnings."""
    builder = _Builder()
    config = builder.section(MAIN, upgrade_main(tuple(directives), builder), {"path": path})
    if builder.errors or config is _INVALID:
        return None, builder.errors, builder.warnings
    assert isinstance(config, ServerConfig)
    if not config.vhosts and not config.proxy.enabled:  # a proxy relays: the origins have the vhosts
        builder.warnings.append(
            f"{path}: no vhost is defined, so every client is rejected (add: vhost {DEFAULT_VHOST} {{ }})"
        )
    return config, [], builder.warnings
