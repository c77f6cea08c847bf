"""What the config asks to listen on: one `ListenSpec` per socket, a pure function of the config.

A `ListenSpec` names what a socket serves: "rtmp" or "http" (HTTP-FLV, static files, the API and/or
the exporter, when they share a port); `services` says which HTTP services it carries;
`proxy_protocol` that its peers are load balancers that send a PROXY header first (`listen 1935
proxy_protocol;`). The master opens the sockets (`srv.master.listeners`); workers serve them.
"""

from __future__ import annotations

from dataclasses import dataclass

from srv.conf.model import Endpoint, ServerConfig


@dataclass(frozen=True)
class ListenSpec:
    kind: str  # "rtmp" | "http"
    endpoint: Endpoint
    services: frozenset[str] = frozenset()  # for http: {"api", "server", "exporter"}
    proxy_protocol: bool = False

    def __str__(self) -> str:
        extra = "+".join(sorted(self.services))
        proxy = " proxy_protocol" if self.proxy_protocol else ""
        return f"{self.kind}{'(' + extra + ')' if extra else ''}://{self.endpoint}{proxy}"


class ListenError(Exception):
    """A listen address the config cannot have (used twice) or the system refuses (in use)."""


def listen_specs(config: ServerConfig) -> list[ListenSpec]:
    """What the config asks to listen on; HTTP services on the same endpoint share a socket."""
    specs = [ListenSpec("rtmp", ep, proxy_protocol=ep.proxy_protocol) for ep in dict.fromkeys(config.listen)]
    http: dict[Endpoint, set[str]] = {}
    proxied: dict[Endpoint, set[bool]] = {}
    for service, section in (("api", config.http_api), ("server", config.http_server),
                             ("exporter", config.exporter)):
        if section.enabled:
            http.setdefault(section.listen, set()).add(service)
            proxied.setdefault(section.listen, set()).add(section.listen.proxy_protocol)
    rtmp_eps = {s.endpoint for s in specs}
    for ep, services in http.items():
        if ep in rtmp_eps:
            raise ListenError(f"listen {ep}: used by both RTMP and HTTP ({', '.join(sorted(services))})")
        if len(proxied[ep]) > 1:
            raise ListenError(f"listen {ep}: shared by {', '.join(sorted(services))}, "
                              "but proxy_protocol is set for only some of them")
        specs.append(ListenSpec("http", ep, frozenset(services), proxy_protocol=True in proxied[ep]))
    return specs
