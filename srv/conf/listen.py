"""What the config asks to listen on: one `ListenSpec` per socket, a pure function of the config.

A `ListenSpec` names what a socket serves: "rtmp" or "http" (HTTP-FLV, static files, the API and/or
the exporter, when they share a port); `services` says which HTTP services it carries. The master
opens the sockets (`srv.master.listeners`); workers serve them.
"""

from __future__ import annotations

from dataclasses import dataclass

from srv.conf.model import Endpoint, ServerConfig


@dataclass(frozen=True)
class ListenSpec:
    kind: str  # "rtmp" | "http"
    endpoint: Endpoint
    services: frozenset[str] = frozenset()  # for http: {"api", "server", "exporter"}

    def __str__(self) -> str:
        extra = "+".join(sorted(self.services))
        return f"{self.kind}{'(' + extra + ')' if extra else ''}://{self.endpoint}"


class ListenError(Exception):
    """A listen address the config cannot have (used twice) or the system refuses (in use)."""


def listen_specs(config: ServerConfig) -> list[ListenSpec]:
    """What the config asks to listen on; HTTP services on the same endpoint share a socket."""
    specs = [ListenSpec("rtmp", ep) for ep in dict.fromkeys(config.listen)]
    http: dict[Endpoint, set[str]] = {}
    if config.http_api.enabled:
        http.setdefault(config.http_api.listen, set()).add("api")
    if config.http_server.enabled:
        http.setdefault(config.http_server.listen, set()).add("server")
    if config.exporter.enabled:
        http.setdefault(config.exporter.listen, set()).add("exporter")
    rtmp_eps = {s.endpoint for s in specs}
    for ep, services in http.items():
        if ep in rtmp_eps:
            raise ListenError(f"listen {ep}: used by both RTMP and HTTP ({', '.join(sorted(services))})")
        specs.append(ListenSpec("http", ep, frozenset(services)))
    return specs
