"""Which service of a listener answers a request: a pure function of its method and path.

One listener may carry several services (`ListenSpec.services`): "server" (HTTP-FLV and static
files), "api" (the SRS HTTP API) and "exporter" (`/metrics`). In order: a CORS preflight (when
`crossdomain` is on), health checks (every listener), `/metrics` (exporter), `/api/...` (api),
`/console/...` (api: srv's web console, behind the API's auth; `GET` and `HEAD`), then media
(server: an HTTP-FLV mount, else a static file; `GET` and `HEAD` only), else 404.
"""

from __future__ import annotations

from enum import Enum

LIVE_PATHS = ("/health", "/healthz", "/livez")
READY_PATHS = ("/ready", "/readyz")


class Route(Enum):
    PREFLIGHT = "preflight"
    LIVE = "live"
    READY = "ready"
    METRICS = "metrics"
    API = "api"
    CONSOLE = "console"  # srv's web console: the API's static pages, behind the API's auth
    MEDIA = "media"  # an HTTP-FLV mount or a static file: only the vhost config can tell
    NOT_ALLOWED = "not_allowed"
    NOT_FOUND = "not_found"


def route(services: frozenset[str], method: str, path: str, cors: bool) -> Route:
    if method == "OPTIONS" and cors:
        return Route.PREFLIGHT
    if path in LIVE_PATHS:
        return Route.LIVE
    if path in READY_PATHS:
        return Route.READY
    if "exporter" in services and path == "/metrics":
        return Route.METRICS
    if "api" in services and (path == "/api" or path.startswith("/api/")):
        return Route.API
    if "api" in services and (path == "/console" or path.startswith("/console/")) and method in ("GET", "HEAD"):
        return Route.CONSOLE
    if "server" in services:
        return Route.MEDIA if method in ("GET", "HEAD") else Route.NOT_ALLOWED
    return Route.NOT_FOUND
