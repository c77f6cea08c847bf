"""HTTP: HTTP-FLV playback and static files (data plane), the SRS HTTP API, the Prometheus
exporter and health checks (control plane, answered from the master's whole-server snapshot).

`server.HttpConnection` is the asyncio protocol a worker runs on every HTTP listener; it routes
to `flv`, `static`, `api` and `exporter`. See docs/http.md.
"""
