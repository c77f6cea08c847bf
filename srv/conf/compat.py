"""Older and newer SRS spellings, read the way SRS reads them (its ``srs_config_transform_vhost``).

Each rewrite works on the parsed ``Directive`` tree before validation and leaves one warning
naming the spelling it was read as, so an SRS 1-7 config loads unchanged and its owner learns
the current form.  Rewritten directives keep the file:line:col they were written at.

- SRS 1 ``http_stream { }`` is ``http_server { }``.
- SRS 7 ``rtmp { listen; chunk_size; }`` holds what older files write at the top level; SRS 7
  moves top-level ``listen``/``chunk_size`` into it, so a top-level one wins over the block's.
- SRS 1/2 put play, publish and edge settings directly in a vhost (``gop_cache off;``,
  ``publish_normal_timeout 7000;``, ``mode remote;``, ``origin ...;``, ``vhost x;``); SRS 3+
  reads them inside ``play { }``, ``publish { }`` and ``cluster { }``.  ``forward host:port;``
  is ``forward { enabled on; destination host:port; }``; ``http { }`` is ``http_static { }``;
  ``mr { enabled; latency; }`` is ``publish { mr; mr_latency; }``; ``refer``, ``refer_play``,
  ``refer_publish`` are ``refer { all; play; publish; }``.
"""

from __future__ import annotations

from typing import Protocol

from srv.conf.errors import format_location
from srv.conf.parser import Directive

__all__ = ["Reporter", "upgrade_main", "upgrade_vhost"]


class Reporter(Protocol):
    def warn(self, d: Directive, message: str) -> None: ...

    def error(self, d: Directive, message: str, arg: int | None = None) -> None: ...


# SRS 1/2 vhost-level names and the block SRS 3+ reads them in (srs_config_transform_vhost).
_VHOST_MOVES: dict[str, str] = {
    **dict.fromkeys(("time_jitter", "mix_correct", "atc", "atc_auto", "mw_latency", "gop_cache",
                     "gop_cache_max_frames", "queue_length", "send_min_interval",
                     "reduce_sequence_header"), "play"),
    **dict.fromkeys(("mode", "origin", "token_traverse", "vhost", "debug_srs_upnode"), "cluster"),
}
_VHOST_RENAMES: dict[str, tuple[str, str]] = {
    "publish_1stpkt_timeout": ("publish", "firstpkt_timeout"),
    "publish_normal_timeout": ("publish", "normal_timeout"),
    "refer": ("refer", "all"),
    "refer_play": ("refer", "play"),
    "refer_publish": ("refer", "publish"),
}
_RTMP_BLOCK = ("listen", "chunk_size")


def _where(d: Directive) -> str:
    return format_location(d.file, d.line, d.col, "").rstrip(": ")


def _spelled(d: Directive) -> str:
    return f"{d.text()};"


def _with(d: Directive, name: str | None = None, args: tuple[str, ...] | None = None) -> Directive:
    return Directive(name or d.name, d.args if args is None else args, d.children, d.file, d.line,
                     d.col, d.arg_positions if args is None else ())


def upgrade_main(directives: tuple[Directive, ...], report: Reporter) -> tuple[Directive, ...]:
    """Top-level rewrites: ``http_stream`` and SRS 7's ``rtmp { }`` block."""
    top = {d.name: d for d in reversed(directives) if d.children is None}
    out: list[Directive] = []
    for d in directives:
        if d.name == "http_stream" and d.children is not None:
            report.warn(d, '"http_stream" is SRS 1 syntax; read as http_server { ... }')
            out.append(_with(d, "http_server"))
        elif d.name == "rtmp" and d.children is not None:
            if d.args:
                report.error(d, f'"rtmp" takes exactly 0 arguments, got {len(d.args)}')
            out.extend(_hoist_rtmp(d, top, report))
        else:
            out.append(d)
    return tuple(out)


def _hoist_rtmp(block: Directive, top: dict[str, Directive], report: Reporter) -> list[Directive]:
    hoisted: list[Directive] = []
    for d in block.children or ():
        if d.name not in _RTMP_BLOCK:
            report.error(d, f'unknown directive "{d.name}" in rtmp {{ }} (SRS 7 puts only '
                            f'{" and ".join(_RTMP_BLOCK)} there)')
        elif d.name in top:
            report.warn(d, f'"{d.name}" in rtmp {{ }} is overridden by the top-level one at '
                           f'{_where(top[d.name])} (as in SRS 7)')
        else:
            hoisted.append(d)
    return hoisted


def upgrade_vhost(children: tuple[Directive, ...], report: Reporter) -> tuple[Directive, ...]:
    """A vhost's body with SRS 1/2 spellings moved where SRS 3+ reads them."""
    moved: dict[str, list[Directive]] = {}
    kept: list[Directive] = []
    for d in children:
        simple = d.children is None
        if simple and d.name in _VHOST_MOVES:
            block = _VHOST_MOVES[d.name]
            report.warn(d, f'"{_spelled(d)}" directly in a vhost is SRS 1/2 syntax; read as '
                           f'{block} {{ {_spelled(d)} }}')
            moved.setdefault(block, []).append(d)
        elif simple and d.name in _VHOST_RENAMES:
            block, name = _VHOST_RENAMES[d.name]
            new = _with(d, name)
            report.warn(d, f'"{_spelled(d)}" directly in a vhost is SRS 1/2 syntax; read as '
                           f'{block} {{ {_spelled(new)} }}')
            moved.setdefault(block, []).append(new)
        elif simple and d.name == "forward" and d.args:
            report.warn(d, f'"{_spelled(d)}" is SRS 1/2 syntax; read as forward {{ enabled on; '
                           f'destination {" ".join(d.args)}; }}')
            body = (_with(d, "enabled", ("on",)), _with(d, "destination"))
            kept.append(Directive("forward", (), body, d.file, d.line, d.col))
        elif not simple and d.name == "http":
            report.warn(d, '"http { }" in a vhost is SRS 1 syntax; read as http_static { ... }')
            kept.append(_with(d, "http_static"))
        elif not simple and d.name == "mr":
            moved.setdefault("publish", []).extend(_upgrade_mr(d, report))
        else:
            kept.append(d)
    for block, directives in moved.items():
        _merge_into(kept, block, directives)
    return tuple(kept)


def _upgrade_mr(d: Directive, report: Reporter) -> list[Directive]:
    names = {"enabled": "mr", "latency": "mr_latency"}
    out = [_with(c, names[c.name]) for c in d.children or () if c.name in names]
    spelled = " ".join(_spelled(c) for c in out)
    report.warn(d, f'"mr {{ }}" in a vhost is SRS 2 syntax; read as publish {{ {spelled} }}')
    return out


def _merge_into(kept: list[Directive], block: str, directives: list[Directive]) -> None:
    """Append ``directives`` to the first ``block { }`` of ``kept``, or add that block."""
    for i, d in enumerate(kept):
        if d.name == block and d.children is not None:
            kept[i] = Directive(d.name, d.args, d.children + tuple(directives), d.file, d.line, d.col,
                                d.arg_positions)
            return
    first = directives[0]
    kept.append(Directive(block, (), tuple(directives), first.file, first.line, first.col))
