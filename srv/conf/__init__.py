"""srv.conf: SRS-style configuration files -> a validated, frozen ``ServerConfig``.

Layers inside: ``srs.lark`` + ``parser`` (syntax, include, file:line:col), ``directives`` +
``registry`` (what each directive means), ``builder`` (validation), ``env`` (SRS_* overrides),
``diff`` (what a reload changes).  Import what you need from here.
"""

from srv.conf.diff import ConfigDiff, reload_diff
from srv.conf.errors import ConfigError, ConfigErrors
from srv.conf.loader import load
from srv.conf.model import (
    DEFAULT_VHOST,
    DvrConfig,
    Endpoint,
    ExporterConfig,
    ForwardConfig,
    HlsConfig,
    HttpApiConfig,
    HttpRemuxConfig,
    HttpServerConfig,
    PlayConfig,
    PublishConfig,
    RawApiConfig,
    ServerConfig,
    VhostConfig,
    VhostMap,
)
from srv.conf.parser import Directive, parse_file, parse_text

__all__ = [
    "DEFAULT_VHOST",
    "ConfigDiff",
    "ConfigError",
    "ConfigErrors",
    "Directive",
    "Endpoint",
    "ExporterConfig",
    "ForwardConfig",
    "HttpApiConfig",
    "DvrConfig",
    "HlsConfig",
    "HttpRemuxConfig",
    "HttpServerConfig",
    "PlayConfig",
    "PublishConfig",
    "RawApiConfig",
    "ServerConfig",
    "VhostConfig",
    "VhostMap",
    "load",
    "parse_file",
    "parse_text",
    "reload_diff",
]
