"""One server-wide view of the master's snapshot, shared by the HTTP API and the exporter.

The master answers `snapshot()` with `{"workers": {slot: WorkerContext.snapshot()}, "master":
Arbiter.master_info()}`. A stream published on worker 1 and played on worker 2 appears in both
workers' lists: with `origin=True` where its publisher is, and `origin=False` (fed by a pull)
elsewhere. `ServerView` folds that into one entry per stream:

- the publisher's figures (bytes in, frames, forwarders) and its description (codecs, sizes,
  profile: a `StreamDescription` the hub computed when the headers changed) come from the
  origin entry;
- players are the registered play clients (RTMP and HTTP-FLV) of every worker; the internal
  pulls between workers are not clients, so nobody is counted twice;
- a stream's bytes out are the sum of what its connected play clients were sent (the hub's own
  figure would include the copies sent to other workers);
- HLS requests and bytes served (`hls_served`) are summed over the workers that served them.

Workers fold their clients into counts (per type, vhost and stream) and list one by one only
the page the request asked for (`ClientQuery`: each worker sends its first `start + count`, the
view keeps the server-wide slice), so a snapshot's size does not grow with the clients.

Ids are stable and short: a stream is `"str-" + sha1(key)[:8]`, a vhost `"vid-" + sha1(name)[:7]`,
a client keeps its server-wide id `"<slot>-<n>"`. Only workers the master lists as alive are
counted, so a worker that just died leaves nothing stale; its cumulative counters live on in
`master["retired"]` and are added back by `counter()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from srv.app.hub import stream_id
from srv.media.metadata import StreamDescription
from srv.net.context import ClientQuery


@dataclass
class StreamView:
    key: str
    vhost: str
    app: str
    name: str
    publishing: bool = False
    publish_cid: str = ""
    publish_started: float = 0.0
    frames: int = 0
    recv_bytes: int = 0
    send_bytes: int = 0
    recv_kbps: int = 0  # over the last 30 s, from the worker that holds the publisher
    send_kbps: int = 0  # over the last 30 s, summed over the workers that serve players
    dropped: int = 0
    players: int = 0
    players_by_type: dict[str, int] = field(default_factory=dict)
    fps: float = 0.0  # over the last 30 s, from the origin
    gop: tuple[int, int] = (0, 0)  # frames and ms between the last two keyframes
    publisher_ip: str = ""
    tc_url: str = ""
    description: StreamDescription | None = None
    forwards: list[dict[str, Any]] = field(default_factory=list)
    hls: dict[str, Any] = field(default_factory=dict)  # the HLS writer's figures (srv/app/hls.py)
    dvr: dict[str, Any] = field(default_factory=dict)  # the DVR recorder's figures (srv/net/dvr.py)
    workers: list[int] = field(default_factory=list)
    hls_requests: int = 0  # HLS requests answered for the stream, summed over every worker
    hls_bytes: int = 0  # their body bytes
    edge: dict[str, Any] = field(default_factory=dict)  # an edge's pull from an origin (srv/net/edge.py)

    @property
    def id(self) -> str:
        return stream_id(self.key)

    @property
    def clients(self) -> int:
        """SRS counts the publisher among a stream's clients."""
        return self.players + (1 if self.publish_cid else 0)


@dataclass
class VhostFigures:
    clients: int = 0
    send_bytes: int = 0
    recv_bytes: int = 0
    alive: float = 0.0  # the longest-connected client's age


class ServerView:
    def __init__(self, snap: dict[str, Any], query: ClientQuery | None = None) -> None:
        self.master: dict[str, Any] = snap.get("master") or {}
        alive = {int(w["slot"]): int(w["pid"]) for w in self.master.get("workers", [])}
        workers = {int(k): v for k, v in (snap.get("workers") or {}).items()}
        # a worker that replied and then died is already in `retired`: drop it
        self.workers: dict[int, dict[str, Any]] = {
            slot: w for slot, w in sorted(workers.items())
            if slot in alive and w.get("pid", alive[slot]) == alive[slot]}
        self.now = time.time()
        listed: list[dict[str, Any]] = []
        self.client_count = 0
        self.clients_by_type: dict[str, int] = {}
        self.vhosts: dict[str, VhostFigures] = {}
        for slot, w in self.workers.items():
            listed += [dict(c, worker=slot) for c in w.get("clients", [])]
            self.client_count += int(w.get("clients_total", 0))
            for kind, n in w.get("clients_by_type", {}).items():
                self.clients_by_type[kind] = self.clients_by_type.get(kind, 0) + int(n)
            for name, f in w.get("vhosts", {}).items():
                v = self.vhosts.setdefault(name, VhostFigures())
                v.clients += int(f["clients"])
                v.send_bytes += int(f["send_bytes"])
                v.recv_bytes += int(f["recv_bytes"])
                v.alive = max(v.alive, float(f["alive"]))
        # the server-wide page (each worker sent its first start + count)
        if query is not None and not query.cid:
            listed = listed[query.start:query.start + query.count]
        self.clients = listed
        self.streams: dict[str, StreamView] = {}
        self._fold_streams()

    def _fold_streams(self) -> None:
        for slot, w in self.workers.items():
            for s in w.get("streams", []):
                key = s["key"]
                view = self.streams.get(key)
                if view is None:
                    vhost, app, name = (key.split("/", 2) + ["", ""])[:3]
                    view = self.streams[key] = StreamView(key, vhost, app, name)
                view.workers.append(slot)
                kbps_in, kbps_out = s.get("kbps_30s", (0, 0))
                if s.get("edge"):  # the one worker pulling it from an origin for the host
                    view.edge = dict(s["edge"])
                view.send_kbps += kbps_out
                if s.get("origin") and s.get("publishing"):
                    view.recv_kbps = kbps_in
                    view.publishing = True
                    view.publish_started = s.get("publish_started", 0.0)
                    view.frames = s.get("frames", 0)
                    view.recv_bytes = s.get("bytes_in", 0)
                    view.dropped += s.get("dropped", 0)
                    view.forwards = list(s.get("forwards") or [])
                    view.hls = dict((s.get("recordings") or {}).get("hls") or {})
                    view.fps = float(s.get("fps", 0.0))
                    view.gop = tuple(s.get("gop", (0, 0)))  # type: ignore[assignment]
                    view.dvr = dict((s.get("recordings") or {}).get("dvr") or {})
                    view.description = s.get("description")
                elif s.get("publishing") and view.description is None:
                    # a pull copy: codecs are the same as the origin's, use them until it answers
                    view.description = s.get("description")
                    view.dropped += s.get("dropped", 0)
                else:
                    view.dropped += s.get("dropped", 0)
        for w in self.workers.values():
            for key, f in w.get("stream_clients", {}).items():
                view = self.streams.get(key)
                if view is None:
                    continue
                view.players += int(f.get("players", 0))
                for kind, n in (f.get("by_type") or {}).items():
                    view.players_by_type[kind] = view.players_by_type.get(kind, 0) + int(n)
                view.send_bytes += int(f.get("send_bytes", 0))
                pub = f.get("publisher")
                if pub:
                    view.publish_cid = pub["id"]
                    view.publisher_ip = pub.get("ip", "")
                    view.tc_url = pub.get("tcUrl", "")
        for w in self.workers.values():
            for key, (requests, nbytes) in w.get("hls_served", {}).items():
                view = self.streams.get(key)
                if view is not None:
                    view.hls_requests += int(requests)
                    view.hls_bytes += int(nbytes)
        # a stream whose publisher is on a worker that did not answer in time still shows up
        for key in self.master.get("streams", {}):
            if key not in self.streams:
                vhost, app, name = (key.split("/", 2) + ["", ""])[:3]
                self.streams[key] = StreamView(key, vhost, app, name, publishing=True)

    # ---- lookups -------------------------------------------------------------------------------

    def stream(self, sid: str) -> StreamView | None:
        return next((s for s in self.streams.values() if s.id == sid or s.key == sid), None)

    def client(self, cid: str) -> dict[str, Any] | None:
        return next((c for c in self.clients if c.get("id") == cid), None)

    def counter(self, name: str) -> float:
        """A cumulative counter over the server's life: live workers plus retired ones."""
        total = float(self.master.get("retired", {}).get(name, 0))
        for w in self.workers.values():
            total += float(w.get("counters", {}).get(name, 0))
        return total

    def counters_with_prefix(self, prefix: str) -> dict[str, float]:
        out: dict[str, float] = {}
        sources = [self.master.get("retired", {})] + [w.get("counters", {}) for w in self.workers.values()]
        for counters in sources:
            for k, v in counters.items():
                if k.startswith(prefix):
                    out[k[len(prefix):]] = out.get(k[len(prefix):], 0.0) + float(v)
        return out

    def codecs(self, s: StreamView) -> dict[str, dict[str, object] | None]:
        return (s.description or StreamDescription()).as_api()


def kbps(nbytes: float, seconds: float) -> int:
    """Average rate since the start (clients; streams report a real 30 s window)."""
    return int(nbytes * 8 / 1000 / seconds) if seconds > 0.5 else 0
