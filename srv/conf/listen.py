"""What the config asks to listen on: one `ListenSpec` per socket, a pure function of the config.

A `ListenSpec` names what a socket serves: "rtmp" or "http" (HTTP-FLV, static files, the API and/or
the exporter, when they share a port); `services` says which HTTP services it carries;
`proxy_protocol` that its peers are load balancers that send a PROXY header first (`listen 1935
proxy_protocol;`); `tls` the (cert, key) files of an RTMPS or HTTPS socket. The master opens the
sockets (`srv.master.listeners`); workers serve them. An endpoint serves one kind, plain or TLS.
"""

from __future__ import annotations

from dataclasses import dataclass

from srv.conf.model import Endpoint, ServerConfig


@dataclass(frozen=True)
class ListenSpec:
    kind: str  # "rtmp" | "http"
    endpoint: Endpoint
    services: frozenset[str] = frozenset()  # for http: {"api", "server", "exporter", "register"}
    proxy_protocol: bool = False
    tls: tuple[str, str] | None = None  # (cert, key) files: rtmps:// or https://

    def __str__(self) -> str:
        extra = "+".join(sorted(self.services))
        proxy = " proxy_protocol" if self.proxy_protocol else ""
        scheme = self.kind + ("s" if self.tls else "")
        return f"{scheme}{'(' + extra + ')' if extra else ''}://{self.endpoint}{proxy}"


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
    if getattr(config, "proxy", None) is not None and config.proxy.enabled:  # the register API (docs/cluster.md)
        http.setdefault(config.proxy.system_api, set()).add("register")
        proxied.setdefault(config.proxy.system_api, set()).add(False)
    rtmp_eps = {s.endpoint for s in specs}
    for ep, services in http.items():
        if ep in rtmp_eps:
            raise ListenError(f"listen {ep}: used by both RTMP and HTTP ({', '.join(sorted(services))})")
        if len(proxied[ep]) > 1:
            raise ListenError(f"listen {ep}: shared by {', '.join(sorted(services))}, "
                              "but proxy_protocol is set for only some of them")
        specs.append(ListenSpec("http", ep, frozenset(services), proxy_protocol=True in proxied[ep]))
    return specs + _tls_specs(config, {s.endpoint: s for s in specs})


def _tls_specs(config: ServerConfig, plain: dict[Endpoint, ListenSpec]) -> list[ListenSpec]:
    """RTMPS and HTTPS sockets; the API and the HTTP server may share an HTTPS port (same files)."""
    wanted: list[tuple[str, Endpoint, str, tuple[str, str]]] = []
    if config.rtmps.enabled:
        wanted += [("rtmp", ep, "", (config.rtmps.cert, config.rtmps.key)) for ep in dict.fromkeys(config.rtmps.listen)]
    for service, https in (("api", config.http_api.https), ("server", config.http_server.https)):
        owner = config.http_server if service == "server" else config.http_api
        if owner.enabled and https.enabled:
            wanted.append(("http", https.listen, service, (https.cert, https.key)))
    specs: dict[Endpoint, ListenSpec] = {}
    for kind, ep, service, files in wanted:
        if ep in plain:
            raise ListenError(f"listen {ep}: used by both {plain[ep]} and {kind}s (TLS)")
        have = specs.get(ep)
        if have is None:
            specs[ep] = ListenSpec(kind, ep, frozenset({service} - {""}), tls=files,
                                   proxy_protocol=ep.proxy_protocol)
        elif have.kind != kind or have.tls != files:
            raise ListenError(f"listen {ep}: used by both {have} and {kind}s with other certificate files")
        elif have.proxy_protocol != ep.proxy_protocol:
            raise ListenError(f"listen {ep}: shared by the API and the HTTP server over TLS, "
                              "but proxy_protocol is set for only one of them")
        else:
            specs[ep] = ListenSpec(kind, ep, have.services | {service}, tls=files,
                                   proxy_protocol=have.proxy_protocol)
    return list(specs.values())
