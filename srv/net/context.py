"""What every connection of a worker shares, as connections see it: `ConnectionContext` (config,
hub, client table, counters, the hook client, the link to the master) and what a worker's
snapshot is made of. The worker builds the real thing, its composition root:
`srv.worker_context.WorkerContext`.

Client ids are `"<slot>-<n>"`, unique across the server, so the API can route a kick to the
worker that holds the client. Counters here are cumulative for the worker's life; the master
keeps the totals of workers that died, so server-wide counters never go backwards.

`WorkerContext.snapshot(query)` is what a worker tells the master for the API and the exporter. It stays
small whatever the clients send: per-client figures are folded here into counts per type, per
vhost and per stream; clients are listed one by one only for the page the API asked for
(`ClientQuery`); and every text a client chose (tcUrl, url, stream, ...) is cut to MAX_FIELD.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from srv.app.access import IpLimiter
from srv.app.diskio import DiskPool
from srv.app.hls_viewers import HlsViewers
from srv.app.hub import StreamHub
from srv.conf.model import ServerConfig
from srv.net.hls_waits import PlaylistWaits
from srv.net.hooks import HookClient

MAX_FIELD = 4096  # characters kept of any text a client chose, in snapshots


@dataclass(frozen=True, slots=True)
class ClientQuery:
    """Which clients a snapshot lists one by one: a page of the server-wide list (`start`,
    `count`, as /api/v1/clients?start=&count=) or one client by id. Counts and per-type,
    per-vhost, per-stream figures are always there; `count == 0` and no `cid` lists none."""

    start: int = 0
    count: int = 0
    cid: str = ""


def bounded(value: Any) -> Any:
    """`value` with every string in it cut to MAX_FIELD characters (dicts and lists walked)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_FIELD else value[:MAX_FIELD]
    if isinstance(value, dict):
        return {k: bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(v) for v in value]
    return value


# the client types of players and of publishers, as the API names them (SRS's)
PLAY_TYPES = frozenset({"rtmp-play", "flv-play", "hls-play"})
PUBLISH_TYPES = frozenset({"fmle-publish", "flash-publish", "haivision-publish"})

log = logging.getLogger("srv.net")


class Client(Protocol):
    """A connection in the worker's client table (RTMP session, HTTP-FLV player)."""

    cid: str

    def byte_counts(self) -> tuple[int, int]: ...
    def info(self) -> dict[str, Any]: ...
    def kick(self, reason: str) -> None: ...


class RefusalLog:
    """Connections refused at the door, logged without flooding the log under attack.

    The first refusal after a quiet second is logged in full (client, reason) at once; the ones
    that follow within that second are only counted, and one summary line per second gives the
    counts by reason, for as long as refusals keep coming.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 1.0) -> None:
        self.loop = loop
        self.interval = interval
        self.pending: Counter[str] = Counter()
        self.handle: asyncio.TimerHandle | None = None

    def refused(self, reason: str, logger: logging.Logger | logging.LoggerAdapter[Any],
                msg: str, *args: Any) -> None:
        if self.handle is None:
            logger.warning(msg, *args)
            self.handle = self.loop.call_later(self.interval, self._summary)
        else:
            self.pending[reason] += 1

    def _summary(self) -> None:
        if not self.pending:
            self.handle = None
            return
        total = sum(self.pending.values())
        why = ", ".join(f"{reason} {n}" for reason, n in self.pending.most_common())
        log.warning("rejected %d more connection%s in the last %gs (%s)", total,
                    "" if total == 1 else "s", self.interval, why)
        self.pending.clear()
        self.handle = self.loop.call_later(self.interval, self._summary)


class IpSlot:
    """What a client admitted by the per_ip limits holds (this worker's count, the master's when
    the limits are shared): everything it holds is given back once, when the client ends."""

    __slots__ = ("_releases",)

    def __init__(self) -> None:
        self._releases: list[Callable[[], None]] = []

    def hold(self, release: Callable[[], None]) -> None:
        self._releases.append(release)

    def release(self) -> None:
        releases, self._releases = self._releases, []
        for release in releases:
            release()


class MasterLink(Protocol):
    """The worker's channel to the master, as connections use it."""

    async def snapshot(self, query: ClientQuery | None = None) -> dict[str, Any]: ...
    async def reload(self) -> bool: ...
    def kick(self, client_id: str) -> bool: ...
    def ban(self, ip: str, seconds: float) -> None: ...
    def admit(self, ip: str) -> asyncio.Future[Any]: ...  # the server's per_ip verdict (.counter, .reason)
    def leave(self, ip: str) -> None: ...
    # what worker `slot` says of its HLS viewer `ctx` (.state), told the `sent` bytes served here
    def hls_visit(self, slot: int, ctx: str, sent: int) -> asyncio.Future[Any]: ...
    def hls_changed(self, key: str, kind: str) -> None: ...  # LL-HLS: to the workers watching `key`
    def hls_watch(self, key: str, on: bool) -> None: ...  # LL-HLS: this worker holds requests of `key`


class ConnectionContext(Protocol):
    """What every connection of a worker shares (the worker's `WorkerContext`, seen from a
    connection: never how the worker built it)."""

    config: ServerConfig
    hub: StreamHub
    loop: asyncio.AbstractEventLoop
    master: MasterLink
    hooks: HookClient
    disk: DiskPool  # the worker's file threads (HLS, DVR write through lanes of it)
    clients: dict[str, Client]
    counters: Counter[str]
    limiter: IpLimiter  # per_ip limits of this worker's connections (bans: the server's)
    refusals: RefusalLog  # refusals at the door, logged without flooding
    stopping: bool  # a stop began: not ready (health), but still serving new clients
    draining: bool  # the listeners are closed: whatever still arrives is refused
    server_id: str  # the same for every worker of one server: forwarders detect loops with it
    hls: HlsViewers  # the HLS viewers this worker admitted (hls_ctx), and HLS traffic per stream
    playlists: PlaylistWaits  # LL-HLS requests held until their part is there

    def new_cid(self) -> str: ...
    def register(self, client: Client) -> None: ...
    def unregister(self, client: Client) -> None: ...
    def over_limit(self) -> bool: ...
    def reject(self, reason: str) -> None: ...
    def shared_limits(self) -> bool: ...
    async def admit_shared(self, logger: logging.Logger | logging.LoggerAdapter[Any], what: str,
                           ip: str) -> tuple[str | None, Callable[[], None] | None]: ...
    def refuse_at_door(self, logger: logging.Logger | logging.LoggerAdapter[Any], what: str,
                       ip: str | None = None) -> str | None: ...


def client_figures(infos: list[dict[str, Any]], query: ClientQuery | None = None) -> dict[str, Any]:
    """Clients (their `info()` dicts) folded into counts per type, figures per vhost and per
    stream, plus the ones `query` lists: the first `start + count` (the master's view keeps
    the server-wide page), or the one with id `cid`. Texts are cut to MAX_FIELD."""
    by_type: Counter[str] = Counter()
    vhosts: dict[str, dict[str, float]] = {}
    streams: dict[str, dict[str, Any]] = {}
    listed: list[dict[str, Any]] = []
    want = query.start + query.count if query is not None and not query.cid else 0
    for info in infos:
        kind = str(info.get("type", ""))
        by_type[kind] += 1
        v = vhosts.setdefault(bounded(str(info.get("vhost", ""))), {
            "clients": 0, "send_bytes": 0, "recv_bytes": 0, "alive": 0.0})
        v["clients"] += 1
        v["send_bytes"] += int(info.get("send_bytes", 0))
        v["recv_bytes"] += int(info.get("recv_bytes", 0))
        v["alive"] = max(v["alive"], float(info.get("alive", 0.0)))
        key = str(info.get("stream", ""))
        if key:
            st = streams.setdefault(bounded(key), {"players": 0, "send_bytes": 0})
            if kind in PLAY_TYPES:
                st["players"] += 1
                by_kind = st.setdefault("by_type", {})
                by_kind[kind] = by_kind.get(kind, 0) + 1
                st["send_bytes"] += int(info.get("send_bytes", 0))
            elif kind in PUBLISH_TYPES:
                st["publisher"] = bounded({"id": info.get("id", ""), "ip": info.get("ip", ""),
                                           "tcUrl": info.get("tcUrl", "")})
        if len(listed) < want or (query is not None and query.cid and query.cid == info.get("id")):
            listed.append(bounded(info))
    return {"clients_total": len(infos), "clients_by_type": dict(by_type), "vhosts": vhosts,
            "stream_clients": streams, "clients": listed}
