"""StreamHub: the sources of one worker, and how they meet the other workers.

- A publish is accepted only after the master's registry grants this worker the stream
  (`Registry.claim`), so a stream has one publisher whichever worker each client lands on.
- A player whose stream is published on another worker makes the hub start ONE pull from the
  owning worker (an RTMP play over a unix socket, the same code an edge uses against an origin);
  the pull feeds the local source like a publisher and every local player fans out from it. The
  pull stops when its last local player leaves, or when the registry says the stream moved.
- Forwarders run only where the publisher is (`source.origin`).
- Edge (`cluster { mode remote; }`, srv/net/edge.py): a player whose stream nobody publishes on
  this host makes the hub claim the stream in the master's registry, exactly like a publish;
  the worker that wins starts the host's ONE pull from an origin (an `EdgeHandle` feeding the
  source), the others pull from that worker as from a publisher. The edge pull stops
  EDGE_LINGER seconds after the last consumer of its source (local players and other workers'
  pulls alike) has gone, and the claim is released. The pull passes the params of the first
  player of the stream on this worker (`edge_params`: its token) to the origin; later players'
  params are offered to it for when the origin refuses those. A publish on an edge is pushed to an
  origin (`make_edge_push`, one more forwarder); a publish of a stream this worker is pulling
  from an origin is refused, as SRS's edge does.
- Each time a source's metadata or sequence headers change, the hub describes the stream
  (codecs, sizes, profile: `StreamDescription`) once, from the onMetaData values the RTMP layer
  decoded (they travel with the message: the hub never decodes the payload again); the API is
  sent that small value.

The hub knows nothing of sockets: the worker injects the registry and the factories that make
pulls and forwarders.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from srv import log as srvlog
from srv.app.packet import Encoding
from srv.app.roles import EdgeHandle, Publisher, PullHandle
from srv.app.source import Consumer, Forwarding, LiveSource, Recording, Sink
from srv.conf.model import ForwardConfig, ServerConfig, VhostConfig
from srv.media.metadata import describe

log = logging.getLogger("srv.hub")

EDGE_LINGER = 2.0  # seconds an edge pull outlives its last consumer (a player zapping back)


class Registry(Protocol):
    async def claim(self, key: str) -> int | None:
        """Ask the master for the stream; None when granted, else the owning worker slot."""
    def release(self, key: str) -> None: ...


def stream_key(vhost: str, app: str, stream: str) -> str:
    return f"{vhost}/{app}/{stream}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def stream_id(key: str) -> str:
    """The stream's stable short id (the HTTP API's, the hooks' `stream_id`): `str-` + sha1."""
    return "str-" + _digest(key)[:8]


def vhost_id(name: str) -> str:
    return "vid-" + _digest(name)[:7]


class StreamHub:
    def __init__(self, config: ServerConfig, slot: int, registry: Registry,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.slot = slot
        self.registry = registry
        self.loop = loop
        self.sources: dict[str, LiveSource] = {}
        self.owners: dict[str, int] = {}  # the master's table: stream -> owning slot
        self.pulls: dict[str, PullHandle] = {}
        self.make_pull: Callable[[LiveSource, int], PullHandle] | None = None
        self.make_forwarder: Callable[[LiveSource, str, ForwardConfig], Forwarding] | None = None
        # kind ("hls", "dvr") -> a factory that starts that recording of a local publish, or
        # answers None when the stream's vhost does not want it
        self.recorders: dict[str, Callable[[LiveSource], Recording | None]] = {}
        self.edges: dict[str, EdgeHandle] = {}  # streams this worker pulls from an origin
        self.claiming: set[str] = set()  # edge streams asked of the master, no answer yet
        self.lingering: dict[str, asyncio.TimerHandle] = {}
        self.make_edge_pull: Callable[[LiveSource, dict[str, str]], EdgeHandle] | None = None
        self.edge_params: dict[str, dict[str, str]] = {}  # edge stream -> its first local player's params
        self.make_edge_push: Callable[[LiveSource], Forwarding] | None = None

    # ---- sources ---------------------------------------------------------------------------------

    def source(self, key: str, vhost: VhostConfig) -> LiveSource:
        src = self.sources.get(key)
        if src is None:
            src = self.sources[key] = LiveSource(key, vhost, self.loop)
            src.on_empty = self._drop_source
            src.on_headers = self._describe
        return src

    @staticmethod
    def _describe(src: LiveSource) -> None:
        """Metadata or a sequence header changed: describe the stream once, for the API."""
        src.description = describe(src.video_sh.payload if src.video_sh else None,
                                   src.audio_sh.payload if src.audio_sh else None,
                                   src.metadata)

    def _drop_source(self, src: LiveSource) -> None:
        if self.sources.get(src.key) is src:
            del self.sources[src.key]
            self.edge_params.pop(src.key, None)
        self._stop_pull(src.key)
        self._stop_edge(src.key)

    # ---- publish ---------------------------------------------------------------------------------

    async def publish(self, key: str, vhost: VhostConfig, publisher: Publisher,
                      backend_urls: dict[str, tuple[str, ...]] | None = None) -> str | None:
        """Make `publisher` the source's publisher; returns None, or why it was refused.

        `backend_urls`: the destinations each forward `backend` returned for this publish.
        """
        src = self.sources.get(key)
        if src is not None and src.publisher is not None and src.origin:
            return f"stream {key} is already being published on this worker"
        if key in self.edges:
            return f"stream {key} is being played from an origin on this edge"
        owner = await self.registry.claim(key)
        if owner is not None:
            return f"stream {key} is already being published on worker {owner}"
        if publisher.closed:  # gone while we waited for the master
            self.registry.release(key)
            return "publisher went away"
        self._stop_pull(key)
        src = self.source(key, vhost)
        if src.publisher is not None:  # a pull was feeding it; the local publisher wins
            src.on_unpublish()
            src = self.source(key, vhost)
        src.on_publish(publisher, origin=True)
        src.backend_urls = dict(backend_urls or {})
        self._start_forwarders(src)
        self._start_recordings(src)
        return None

    def unpublish(self, key: str, publisher: Publisher) -> None:
        src = self.sources.get(key)
        if src is None or src.publisher is not publisher:
            return
        src.on_unpublish()
        self.registry.release(key)

    def _start_forwarders(self, src: LiveSource) -> None:
        if src.vhost.cluster.edge and self.make_edge_push is not None:
            src.forwarders.append(self.make_edge_push(src))
        if self.make_forwarder is None:
            return
        for dest, fw in self._wanted_forwards(src).items():
            src.forwarders.append(self.make_forwarder(src, dest, fw))

    def _start_recordings(self, src: LiveSource) -> None:
        have = {r.kind for r in src.recordings}
        for kind, make in self.recorders.items():
            if kind not in have:
                recording = make(src)
                if recording is not None:
                    src.recordings.append(recording)

    @staticmethod
    def _wanted_forwards(src: LiveSource) -> dict[str, ForwardConfig]:
        """destination -> its forward block, for every enabled block matching the stream."""
        _, app, stream = src.key.split("/", 2)
        wanted: dict[str, ForwardConfig] = {}
        for fw in src.vhost.forwards_for(app, stream):
            dests = fw.destinations + (src.backend_urls.get(fw.backend, ()) if fw.backend else ())
            for dest in dests:
                wanted.setdefault(dest, fw)
        return wanted

    # ---- play ------------------------------------------------------------------------------------

    def play(self, key: str, vhost: VhostConfig, sink: Sink, encoding: Encoding,
             internal: bool = False, params: dict[str, str] | None = None) -> Consumer:
        """Attach a player. `internal` players are other workers pulling: never pull for them.
        `params`: the player's query (an edge passes the first player's to the origin)."""
        src = self.source(key, vhost)
        consumer = src.add_consumer(sink, encoding, internal=internal)
        linger = self.lingering.pop(key, None)
        if linger is not None:
            linger.cancel()
        if not internal:
            if src.vhost.cluster.edge:
                self.edge_params.setdefault(key, dict(params or {}))
                edge = self.edges.get(key)
                if edge is not None and params:
                    edge.offer_params(params)
            self._ensure_upstream(key)
        return consumer

    def stop_play(self, consumer: Consumer) -> None:
        src: LiveSource = consumer.source
        src.remove_consumer(consumer)
        if not any(not c.internal for c in src.consumers()):
            self._stop_pull(src.key)
        if src.key in self.edges and not src.consumers() and src.key not in self.lingering:
            self.lingering[src.key] = self.loop.call_later(EDGE_LINGER, self._linger_over, src.key)

    # ---- other workers ---------------------------------------------------------------------------

    def on_streams(self, table: dict[str, int]) -> None:
        self.owners = dict(table)
        for key in list(self.sources):
            self._ensure_upstream(key)

    def on_published(self, key: str, slot: int) -> None:
        self.owners[key] = slot
        self._ensure_pull(key)

    def on_unpublished(self, key: str, slot: int) -> None:
        if self.owners.get(key) == slot:
            del self.owners[key]
        pull = self.pulls.get(key)
        if pull is not None and pull.slot == slot:
            self._stop_pull(key)
        self._ensure_upstream(key)  # an edge stream whose puller stopped: someone pulls again

    def _ensure_upstream(self, key: str) -> None:
        """Feed the source of `key` if players wait for it: from the worker that has it, else,
        on an edge, from an origin once the master grants this worker the stream."""
        self._ensure_pull(key)
        src = self.sources.get(key)
        if src is None or not src.vhost.cluster.edge or self.make_edge_pull is None:
            return
        if key in self.owners or key in self.edges or key in self.claiming or src.publisher is not None:
            return
        if not any(not c.internal for c in src.consumers()):
            return
        self.claiming.add(key)
        self.loop.create_task(self._claim_edge(key))

    async def _claim_edge(self, key: str) -> None:
        try:
            owner = await self.registry.claim(key)
        finally:
            self.claiming.discard(key)
        if owner is not None:  # another worker has it (publishing, or pulling from an origin)
            self.owners[key] = owner
            self._ensure_pull(key)
            return
        src = self.sources.get(key)
        if (src is None or key in self.edges or src.publisher is not None or self.make_edge_pull is None
                or not src.vhost.cluster.edge or not any(not c.internal for c in src.consumers())):
            if key not in self.edges and not (src is not None and src.origin):
                self.registry.release(key)  # nobody to pull for any more
            return
        log.log(srvlog.INFO, "edge %s: this worker pulls it from an origin for the host", key)
        self.edges[key] = self.make_edge_pull(src, self.edge_params.get(key, {}))

    def _linger_over(self, key: str) -> None:
        self.lingering.pop(key, None)
        src = self.sources.get(key)
        if src is None or not src.consumers():
            self._stop_edge(key)

    def _stop_edge(self, key: str) -> None:
        linger = self.lingering.pop(key, None)
        if linger is not None:
            linger.cancel()
        edge = self.edges.pop(key, None)
        if edge is None:
            return
        self.edge_params.pop(key, None)  # the next pull takes its next first player's
        edge.stop()
        src = self.sources.get(key)
        if src is not None and src.publisher is edge:
            src.on_unpublish()
        self.registry.release(key)

    def _ensure_pull(self, key: str) -> None:
        owner = self.owners.get(key)
        src = self.sources.get(key)
        if owner is None or owner == self.slot or src is None or self.make_pull is None:
            return
        if key in self.pulls or (src.publisher is not None and src.origin):
            return
        if not any(not c.internal for c in src.consumers()):
            return
        log.log(srvlog.INFO, "pull %s from worker %d", key, owner)
        self.pulls[key] = self.make_pull(src, owner)

    def _stop_pull(self, key: str) -> None:
        pull = self.pulls.pop(key, None)
        if pull is not None:
            pull.stop()
            src = self.sources.get(key)
            if src is not None and src.publisher is pull:
                src.on_unpublish()

    def pull_ended(self, pull: PullHandle) -> None:
        """A pull's connection ended by itself; try again if the stream is still elsewhere."""
        src = pull.source
        if self.pulls.get(src.key) is pull:
            del self.pulls[src.key]
            if src.publisher is pull:
                src.on_unpublish()
            self.loop.call_later(0.2, self._ensure_upstream, src.key)

    # ---- reload ----------------------------------------------------------------------------------

    def apply_config(self, config: ServerConfig) -> None:
        """Apply a reloaded config in place: sources keep their players and publishers."""
        self.config = config
        for src in list(self.sources.values()):
            vhost_name = src.key.split("/", 1)[0]
            vhost = config.vhost(vhost_name)
            if vhost is None:
                continue  # vhost removed: existing sessions finish on the old settings
            old = src.vhost
            src.configure(vhost)
            if src.origin and src.publisher is not None and old.forwards != vhost.forwards:
                self._reconcile_forwarders(src)
            if src.origin and src.publisher is not None:
                self._reconcile_recordings(src, vhost)
            if old.cluster != vhost.cluster:
                self._reconfigure_edge(src)

    def _reconfigure_edge(self, src: LiveSource) -> None:
        """The vhost's cluster block changed: pulls and pushes follow the new origin list
        without dropping a player; a vhost that stopped being an edge stops pulling."""
        key = src.key
        edge = self.edges.get(key)
        if edge is not None:
            if src.vhost.cluster.edge:
                edge.reconfigure()
            else:
                self._stop_edge(key)
        for f in src.forwarders:
            if getattr(f, "edge", False):
                f.reconfigure_origins()  # type: ignore[attr-defined]
        self._ensure_upstream(key)

    def _reconcile_forwarders(self, src: LiveSource) -> None:
        """Start only the new destinations, stop only the removed ones; keep the rest connected."""
        if self.make_forwarder is None:
            return
        wanted = self._wanted_forwards(src)
        keep = []
        for f in src.forwarders:
            if getattr(f, "edge", False):  # the edge's push to an origin: the cluster block's
                keep.append(f)
                continue
            fw = wanted.pop(f.destination, None)
            if fw is None:
                f.stop()
                continue
            if fw != f.config:  # same destination, the block changed: new settings in place
                f.reconfigure(fw)
            keep.append(f)
        for dest, fw in wanted.items():
            keep.append(self.make_forwarder(src, dest, fw))
        src.forwarders[:] = keep

    def _reconcile_recordings(self, src: LiveSource, vhost: VhostConfig) -> None:
        """Recordings take the new vhost in place; one it no longer wants stops; new ones start."""
        keep = []
        for r in src.recordings:
            if r.reconfigure(vhost):
                keep.append(r)
            else:
                r.stop()
        src.recordings[:] = keep
        self._start_recordings(src)

    def sample_rates(self) -> None:
        now = time.monotonic()
        for src in self.sources.values():
            src.sample_rates(now)

    def stats(self) -> list[dict[str, Any]]:
        """Each source's figures; a stream this worker pulls from an origin adds `edge`."""
        out = []
        for s in self.sources.values():
            fig = s.stats()
            edge = self.edges.get(s.key)
            if edge is not None:
                fig["edge"] = edge.stats()
            out.append(fig)
        return out
