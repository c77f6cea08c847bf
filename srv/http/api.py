"""The SRS-compatible HTTP API (`/api/v1/...`), answered from the whole server's snapshot.

Whichever worker accepts the request asks the master for a snapshot of every worker and answers
from that (`srv.http.stats.ServerView`), so every worker gives the same answer. Shapes follow
SRS's `srs_app_http_api.cpp` / `srs_app_statistic.cpp`: every reply carries `code`, `server`,
`service` and `pid`; an error is HTTP 200 with an SRS error code (as SRS does), e.g.
`{"code": 2049}` for an unknown client. Rates (`kbps`) are averages since the stream or client
started. `self` in summaries is the master process; `workers` lists each worker's figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

import psutil  # type: ignore[import-untyped]

from srv import __version__
from srv.app.hub import stream_id, vhost_id
from srv.conf import ConfigErrors, load
from srv.conf.model import ServerConfig
from srv.http.flv import mount_url
from srv.http.procstat import ProcessSampler
from srv.http.stats import ServerView, StreamView, VhostFigures, kbps
from srv.net.context import PUBLISH_TYPES, ClientQuery, ConnectionContext

# SRS error codes (srs_kernel_error.hpp)
ERROR_SUCCESS = 0
ERROR_SYSTEM_CONFIG_RAW_DISABLED = 1061
ERROR_SYSTEM_CONFIG_RAW_NOT_ALLOWED = 1062
ERROR_SYSTEM_CONFIG_RAW_PARAMS = 1063
ERROR_RTMP_VHOST_NOT_FOUND = 1020
ERROR_RTMP_STREAM_NOT_FOUND = 2048
ERROR_RTMP_CLIENT_NOT_FOUND = 2049
ERROR_HTTP_API_UNAVAILABLE = 1094  # srv: the master did not answer in time

Reply = tuple[int, dict[str, Any]]

CPU = ProcessSampler()  # the API's own CPU sampling state (the exporter keeps another)


class Api:
    def __init__(self, ctx: ConnectionContext) -> None:
        self.ctx = ctx

    def envelope(self, view: ServerView | None, code: int = ERROR_SUCCESS, **data: Any) -> dict[str, Any]:
        master = view.master if view is not None else {}
        mpid = int(master.get("pid") or os.getppid())
        service = hashlib.sha1(f"service-{mpid}".encode()).hexdigest()[:8]
        return {"code": code, "server": vhost_id(self.ctx.server_id), "service": service,
                "pid": str(mpid), **data}

    async def handle(self, method: str, path: str, query: dict[str, str]) -> Reply:
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["api"]:
            return 404, {"code": 404}
        if len(parts) == 1:
            return 200, self.envelope(None, urls={"v1": "the api version 1.0"})
        if parts[1] != "v1":
            return 404, self.envelope(None, 404)
        what = parts[2] if len(parts) > 2 else ""
        rest = "/".join(parts[3:])
        if what == "":
            return 200, self.envelope(None, urls={k: k for k in (
                "versions", "summaries", "vhosts", "streams", "clients", "raw", "config")})
        if what == "versions":
            major, minor, revision = (__version__.split(".") + ["0", "0"])[:3]
            return 200, self.envelope(None, data={"major": int(major), "minor": int(minor),
                                                  "revision": int(revision), "version": __version__})
        if what == "raw":
            return await self.raw(query)
        if what == "config" and not rest:
            return 200, self.envelope(None, data=await config_test(self.ctx.config.path))
        if what not in ("summaries", "vhosts", "streams", "clients"):
            return 404, self.envelope(None, 404)
        wanted = client_query(what, rest, query)
        try:
            view = ServerView(await self.ctx.master.snapshot(wanted), wanted)
        except (TimeoutError, OSError):
            return 503, self.envelope(None, ERROR_HTTP_API_UNAVAILABLE)
        if what == "summaries":
            return 200, self.envelope(view, data=self.summaries(view))
        if what == "vhosts":
            return self.vhosts(view, rest)
        if what == "streams":
            return self.streams(view, rest)
        return self.clients(view, rest, method)

    # ---- /api/v1/summaries -----------------------------------------------------------------------

    def summaries(self, view: ServerView) -> dict[str, Any]:
        m = view.master
        mpid = int(m.get("pid") or os.getppid())
        me = CPU.figures(mpid)
        workers = []
        total_rss, total_cpu = me["rss"], me["cpu_percent"]
        for w in m.get("workers", []):
            fig = CPU.figures(int(w["pid"]))
            total_rss += fig["rss"]
            total_cpu += fig["cpu_percent"]
            snap = view.workers.get(int(w["slot"]), {})
            workers.append({"slot": w["slot"], "pid": w["pid"], "ready": w["ready"],
                            "uptime": round(w.get("age", 0.0), 3),
                            "cpu_percent": round(fig["cpu_percent"], 2),
                            "mem_kbyte": int(fig["rss"] / 1024),
                            "clients": int(snap.get("clients_total", 0)),
                            "streams": len(snap.get("streams", [])),
                            "hls_requests": int(snap.get("counters", {}).get("hls_requests", 0)),
                            # LL-HLS blocking reloads: held, woken by a notification or the poll, ...
                            "hls_ll": {k[len("hls_ll_"):]: int(v) for k, v in snap.get("counters", {}).items()
                                       if k.startswith("hls_ll_")}})
        CPU.forget({mpid} | {int(w["pid"]) for w in m.get("workers", [])})
        vm, swap = psutil.virtual_memory(), psutil.swap_memory()
        load = os.getloadavg()
        now = time.time()
        return {
            "ok": True,
            "now_ms": int(now * 1000),
            "self": {
                "version": __version__, "pid": mpid, "ppid": os.getppid() if mpid != os.getppid() else 0,
                "argv": m.get("config", ""), "cwd": os.getcwd(),
                "mem_kbyte": int(total_rss / 1024), "mem_percent": round(total_rss / vm.total * 100, 2),
                "cpu_percent": round(total_cpu, 2),
                "srs_uptime": int(now - float(m.get("started", now))),
            },
            "system": {
                "cpu_percent": psutil.cpu_percent(None),
                "mem_ram_kbyte": int(vm.total / 1024), "mem_ram_percent": vm.percent,
                "mem_swap_kbyte": int(swap.total / 1024), "mem_swap_percent": swap.percent,
                "cpus": psutil.cpu_count() or 0, "cpus_online": psutil.cpu_count() or 0,
                "uptime": int(now - psutil.boot_time()),
                "load_1m": load[0], "load_5m": load[1], "load_15m": load[2],
                "srs_send_bytes": int(view.counter("send_bytes")),
                "srs_recv_bytes": int(view.counter("recv_bytes")),
                "conn_srs": view.client_count,
            },
            "workers": workers,
            "reloads": {"ok": m.get("reloads_ok", 0), "failed": m.get("reloads_failed", 0)},
            "last_reload": m.get("last_reload"),
            "worker_restarts": m.get("worker_restarts", 0),
            "config": {"file": m.get("config", self.ctx.config.path)},
            "listen": listen_addresses(self.ctx.config),
        }

    # ---- /api/v1/vhosts --------------------------------------------------------------------------

    def vhost_entry(self, view: ServerView, name: str, enabled: bool) -> dict[str, Any]:
        streams = [s for s in view.streams.values() if s.vhost == name]
        figures = view.vhosts.get(name, VhostFigures())
        send, recv, alive = figures.send_bytes, figures.recv_bytes, figures.alive
        return {"id": vhost_id(name), "name": name, "enabled": enabled, "clients": figures.clients,
                "streams": sum(1 for s in streams if s.publishing), "send_bytes": send, "recv_bytes": recv,
                "kbps": {"recv_30s": kbps(recv, alive), "send_30s": kbps(send, alive)},
                "hls": {"enabled": False}}

    def vhosts(self, view: ServerView, rest: str) -> Reply:
        names = {n: v.enabled for n, v in self.ctx.config.vhosts.items()}
        for s in view.streams.values():
            names.setdefault(s.vhost, True)
        entries = [self.vhost_entry(view, n, e) for n, e in names.items()]
        if rest:
            found = next((e for e in entries if e["id"] == rest or e["name"] == rest), None)
            if found is None:
                return 200, self.envelope(view, ERROR_RTMP_VHOST_NOT_FOUND)
            return 200, self.envelope(view, vhost=found)
        return 200, self.envelope(view, vhosts=entries)

    # ---- /api/v1/streams -------------------------------------------------------------------------

    def stream_entry(self, view: ServerView, s: StreamView) -> dict[str, Any]:
        codecs = view.codecs(s)
        return {
            "id": s.id, "name": s.name, "vhost": vhost_id(s.vhost), "vhost_name": s.vhost, "app": s.app,
            "tcUrl": s.tc_url, "url": f"/{s.app}/{s.name}",
            "live_ms": int(s.publish_started * 1000) if s.publishing else 0,
            "clients": s.clients, "players": s.players, "frames": s.frames,
            "players_by_type": s.players_by_type, "fps": s.fps,
            "gop": {"frames": s.gop[0], "seconds": round(s.gop[1] / 1000, 3)},
            "send_bytes": s.send_bytes, "recv_bytes": s.recv_bytes,
            "kbps": {"recv_30s": s.recv_kbps, "send_30s": s.send_kbps},
            "publish": {"active": s.publishing, "cid": s.publish_cid, "ip": s.publisher_ip},
            "video": codecs["video"], "audio": codecs["audio"],
            "forwards": [forward_entry(f) for f in s.forwards],
            # the writer's figures (origin worker), and what every worker served of it
            "hls": {**s.hls, "requests": s.hls_requests, "send_bytes": s.hls_bytes},
            "dvr": dict(s.dvr) or {"state": "off"},
            "edge": edge_entry(s.edge),
            "flv": self.flv_url(s),
            "workers": s.workers,
        }

    def flv_url(self, s: StreamView) -> str:
        """srv: the HTTP-FLV path of the stream on the HTTP server (the console's player), or ""."""
        vhost = self.ctx.config.vhost(s.vhost)
        return mount_url(vhost, s.app, s.name) if vhost is not None else ""

    def streams(self, view: ServerView, rest: str) -> Reply:
        if rest:
            s = view.stream(rest)
            if s is None:
                return 200, self.envelope(view, ERROR_RTMP_STREAM_NOT_FOUND)
            return 200, self.envelope(view, stream=self.stream_entry(view, s))
        entries = [self.stream_entry(view, s) for s in sorted(view.streams.values(), key=lambda s: s.key)]
        return 200, self.envelope(view, streams=entries)

    # ---- /api/v1/clients -------------------------------------------------------------------------

    def client_entry(self, c: dict[str, Any]) -> dict[str, Any]:
        key = c.get("stream", "")
        name = key.split("/", 2)[2] if key.count("/") >= 2 else ""
        alive = float(c.get("alive", 0.0))
        send, recv = int(c.get("send_bytes", 0)), int(c.get("recv_bytes", 0))
        return {
            "id": c["id"], "vhost": vhost_id(c.get("vhost", "")), "stream": stream_id(key) if key else "",
            "ip": c.get("ip", ""), "pageUrl": "", "swfUrl": "", "tcUrl": c.get("tcUrl", ""),
            "url": c.get("url", ""), "name": name, "type": c.get("type", ""),
            "publish": c.get("type") in PUBLISH_TYPES, "alive": round(alive, 3),
            "send_bytes": send, "recv_bytes": recv,
            "kbps": {"recv_30s": kbps(recv, alive), "send_30s": kbps(send, alive)},
            "worker": c.get("worker"),
        }

    def clients(self, view: ServerView, rest: str, method: str) -> Reply:
        if not rest:
            return 200, self.envelope(view, clients=[self.client_entry(c) for c in view.clients],
                                      total=view.client_count)
        c = view.client(rest)
        if c is None:
            return 200, self.envelope(view, ERROR_RTMP_CLIENT_NOT_FOUND)
        if method == "DELETE":
            self.ctx.master.kick(rest)
            return 200, self.envelope(view)
        return 200, self.envelope(view, client=self.client_entry(c))

    # ---- /api/v1/raw -----------------------------------------------------------------------------

    async def raw(self, query: dict[str, str]) -> Reply:
        raw = self.ctx.config.http_api.raw_api
        if not raw.enabled:
            return 200, self.envelope(None, ERROR_SYSTEM_CONFIG_RAW_DISABLED)
        rpc = query.get("rpc", "")
        if rpc == "raw":
            return 200, self.envelope(None, data={"enabled": raw.enabled, "allow_reload": raw.allow_reload,
                                                  "allow_query": raw.allow_query, "allow_update": False})
        if rpc == "reload":
            if not raw.allow_reload:
                return 200, self.envelope(None, ERROR_SYSTEM_CONFIG_RAW_NOT_ALLOWED)
            try:
                ok = await self.ctx.master.reload()
            except (TimeoutError, OSError):
                ok = False
            return 200, self.envelope(None, ERROR_SUCCESS if ok else ERROR_SYSTEM_CONFIG_RAW_PARAMS)
        return 200, self.envelope(None, ERROR_SYSTEM_CONFIG_RAW_PARAMS)


async def config_test(path: str) -> dict[str, Any]:
    """What `srs -t -c path` says of the file now (srv: the console shows it): loaded off the
    event loop, since parsing a big config takes a while."""
    def test() -> dict[str, Any]:
        try:
            config = load(path)
        except ConfigErrors as e:
            return {"file": path, "ok": False, "errors": [str(err) for err in e.errors], "warnings": []}
        except OSError as e:
            return {"file": path, "ok": False, "errors": [f"{path}: {e.strerror or e}"], "warnings": []}
        return {"file": path, "ok": True, "errors": [], "warnings": list(config.warnings)}
    return await asyncio.get_running_loop().run_in_executor(None, test)


def listen_addresses(config: ServerConfig) -> dict[str, list[str]]:
    """The addresses each service listens on, for the console's URLs (srv)."""
    api, server = config.http_api, config.http_server
    return {
        "rtmp": [str(e) for e in config.listen],
        "rtmps": [str(e) for e in config.rtmps.listen] if config.rtmps.enabled else [],
        "http": [str(server.listen)] if server.enabled else [],
        "https": [str(server.https.listen)] if server.enabled and server.https.enabled else [],
        "api": [str(api.listen)] if api.enabled else [],
        "exporter": [str(config.exporter.listen)] if config.exporter.enabled else [],
    }


def client_query(what: str, rest: str, query: dict[str, str]) -> ClientQuery:
    """Which clients the workers list one by one for this request: none but for
    /api/v1/clients, which pages as SRS does (`start` from 0, `count` at least 10, default 10)
    or names one client."""
    if what != "clients":
        return ClientQuery()
    if rest:
        return ClientQuery(cid=rest)
    return ClientQuery(start=max(0, _int(query.get("start"), 0)), count=max(10, _int(query.get("count"), 10)))


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def forward_entry(f: dict[str, Any]) -> dict[str, Any]:
    """A forward destination as the API shows it; tolerant of fields a Forwarder lacks."""
    return {"destination": f.get("destination", ""), "state": f.get("state", "unknown"),
            "messages_sent": f.get("messages_sent", 0), "messages_dropped": f.get("messages_dropped", 0),
            "bytes_sent": f.get("bytes_sent", 0), "reconnects": f.get("reconnects", 0),
            "connected_since": f.get("connected_since"), "last_error": f.get("last_error", "")}


def edge_entry(e: dict[str, Any]) -> dict[str, Any] | None:
    """An edge's pull of the stream from an origin (null when the stream is not pulled from one):
    the current origin, state (connecting, pulling, backoff), since (Unix ms), switches
    (failovers after playing), reconnects (attempts after the first), the listed origins."""
    if not e:
        return None
    return {"origin": e.get("origin", ""), "state": e.get("state", "unknown"),
            "since": int(float(e.get("since", 0)) * 1000), "switches": e.get("switches", 0),
            "reconnects": e.get("reconnects", 0), "origins": list(e.get("origins") or [])}
