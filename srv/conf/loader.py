"""Entry point: ``load(path, environ) -> ServerConfig`` and ``reload_diff(old, new)``.

Parse (``parser``), apply SRS_* environment overrides (``env``), validate and build
(``builder``).  Any error means no config at all: ``ConfigErrors`` lists every problem
found, so a reload can refuse the whole file and keep running on the old one.
Warnings travel in ``ServerConfig.warnings`` for the caller to log.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from srv.conf.builder import build
from srv.conf.diff import ConfigDiff, reload_diff
from srv.conf.env import apply_env
from srv.conf.errors import ConfigError, ConfigErrors
from srv.conf.model import ServerConfig
from srv.conf.parser import parse_file

__all__ = ["ConfigDiff", "load", "reload_diff"]


def load(path: str, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Load ``path``; ``environ`` defaults to ``os.environ`` (pass ``{}`` to ignore it)."""
    env = os.environ if environ is None else environ
    try:
        directives = parse_file(path)
    except ConfigError as e:
        raise ConfigErrors([e]) from None
    config, errors, warnings = build(apply_env(directives, env), path)
    if errors or config is None:
        raise ConfigErrors(_unique(errors))
    return _with_warnings(config, warnings)


def _unique(errors: list[ConfigError]) -> list[ConfigError]:
    seen: set[str] = set()
    out: list[ConfigError] = []
    for e in errors:
        if str(e) not in seen:
            seen.add(str(e))
            out.append(e)
    return out


def _with_warnings(config: ServerConfig, warnings: list[str]) -> ServerConfig:
    unique = tuple(dict.fromkeys(warnings))
    return dataclasses.replace(config, warnings=unique)
