"""The worker's composition root: what every connection of a worker shares (config, hub, client
table, counters, the hook client, the link to the master), built by the worker and seen by its
connections as a `srv.net.context.ConnectionContext`.

Client ids are `"<slot>-<n>"`, unique across the server. Counters are cumulative for the
worker's life; `snapshot(query)` is what the worker tells the master (see `srv.net.context`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from srv.app.access import IpLimiter
from srv.app.diskio import DiskPool
from srv.app.hls_viewers import HlsViewers
from srv.app.hub import StreamHub
from srv.conf.model import ServerConfig
from srv.net.context import Client, ClientQuery, MasterLink, RefusalLog, bounded, client_figures
from srv.net.hls_waits import PlaylistWaits
from srv.net.hooks import HookClient

# How long a connection waits for the master's per_ip verdict before the worker decides alone.
ADMIT_TIMEOUT = 1.0


class WorkerContext:
    def __init__(self, slot: int, config: ServerConfig, hub: StreamHub,
                 loop: asyncio.AbstractEventLoop, master: MasterLink, hooks: HookClient | None = None,
                 master_pid: int | None = None, secret: bytes = b"") -> None:
        self.slot = slot
        self.config = config
        self.hub = hub
        self.loop = loop
        self.master = master  # the worker's channel to the master (snapshot, reload, kick)
        # the worker's one HTTP hook client (forward backends); the worker closes it when it stops
        self.hooks = hooks if hooks is not None else HookClient()
        # the worker's file threads: recordings (HLS, DVR) write through their lanes, off the loop
        self.disk = DiskPool()
        self.clients: dict[str, Client] = {}
        self.started = time.time()
        self._n = 0
        self.counters: Counter[str] = Counter()
        self.stopping = False  # a stop began: not ready (health), but still serving new clients
        self.draining = False  # the listeners are closed: whatever still arrives is refused
        self.refusals = RefusalLog(loop)
        self.limiter = IpLimiter()
        self.local_limits = IpLimiter()  # admit_shared's own decisions when the master is silent
        self._fallback_logged = False
        # bytes of clients that have left; `refresh_bytes` adds the live ones, so the
        # "send_bytes"/"recv_bytes" counters only grow (the master keeps them when a worker dies)
        self._closed_send = 0
        self._closed_recv = 0
        # the same for every worker of one server: forwarders use it to detect loops (A -> B -> A)
        self.server_id = f"{socket.gethostname()}-{master_pid or os.getpid()}"
        # HLS viewers: their ctx is signed with `secret`, the server's (the master's, made
        # before it forked any worker), so every worker accepts every worker's
        self.hls = HlsViewers(secret or os.urandom(32), slot)
        # LL-HLS requests held until their part is there; the writer's events reach the other
        # workers that hold some through the master
        self.playlists = PlaylistWaits(loop, self.counters, send=lambda key, kind: self.master.hls_changed(key, kind),
                                       subscribe=lambda key, on: self.master.hls_watch(key, on))
        self.hls.on_part = lambda event: self.playlists.publish(event.key, event.kind)

    def new_cid(self) -> str:
        self._n += 1
        return f"{self.slot}-{self._n}"

    def register(self, client: Client) -> None:
        self.clients[client.cid] = client
        self.counters["clients_total"] += 1

    def unregister(self, client: Client) -> None:
        if self.clients.pop(client.cid, None) is not None:
            sent, received = client.byte_counts()
            self._closed_send += sent
            self._closed_recv += received

    def refresh_bytes(self) -> None:
        """Bring the cumulative byte counters up to date (clients gone + clients here)."""
        send, recv = self._closed_send, self._closed_recv
        for c in self.clients.values():
            sent, received = c.byte_counts()
            send += sent
            recv += received
        self.counters["send_bytes"] = max(send, self.counters["send_bytes"])
        self.counters["recv_bytes"] = max(recv, self.counters["recv_bytes"])

    def over_limit(self) -> bool:
        """`max_connections` is the server's total; each worker enforces its share of it."""
        share = -(-self.config.max_connections // max(1, self.config.workers))
        return len(self.clients) >= share

    def reject(self, reason: str) -> None:
        self.counters[f"rejected:{reason}"] += 1

    def refuse_at_door(self, logger: logging.Logger | logging.LoggerAdapter[Any], what: str,
                       ip: str | None = None) -> str | None:
        """Why a new client must be refused at once (stopping, max_connections, and with `ip` the
        per_ip limits: ip_banned, ip_rate, ip_connections), else None.

        A refusal is counted, and logged through `RefusalLog` (one summary line a second);
        `what` starts the line (the client, when `logger` does not already say it). A client
        admitted with `ip` is counted by the limiter: the caller calls `limiter.release(ip)`
        when it leaves.
        """
        if not self.draining and not self.over_limit():
            cfg = self.config.per_ip
            if self.shared_limits():  # the master decides connections and rate: `admit_shared`
                cfg = dataclasses.replace(cfg, max_connections=0, connect_rate=0)
            refusal = None if ip is None else self.limiter.admit(cfg, ip, time.monotonic())
            if refusal is None:
                return None
            self.reject(refusal.counter)
            self.refusals.refused(refusal.counter, logger, "%srejected: %s", what, refusal.reason)
            return refusal.counter
        reason = "stopping" if self.draining else "max_connections"
        self.reject(reason)
        self.refusals.refused(reason, logger, "%srejected: %s (%d clients)", what, reason, len(self.clients))
        return reason

    def shared_limits(self) -> bool:
        """Whether per_ip max_connections/connect_rate are the server's, decided by the master
        (`admit_shared`): with several workers, when either is set."""
        cfg = self.config.per_ip
        return self.config.workers > 1 and bool(cfg.max_connections or cfg.connect_rate)

    async def admit_shared(self, logger: logging.Logger | logging.LoggerAdapter[Any], what: str,
                           ip: str) -> tuple[str | None, Callable[[], None] | None]:
        """The server's per_ip max_connections and connect_rate for a connection `refuse_at_door`
        let in: the master's verdict (this worker's own, when the master does not answer within
        ADMIT_TIMEOUT). (refusal counter or None, what to call when an admitted one ends)."""
        def give_back(f: asyncio.Future[Any]) -> None:  # a late yes still counts at the master
            if not f.cancelled() and not f.result().counter:
                self.master.leave(ip)

        fut = self.master.admit(ip)
        try:
            done, _ = await asyncio.wait([fut], timeout=ADMIT_TIMEOUT)
        except asyncio.CancelledError:
            fut.add_done_callback(give_back)
            raise
        if done:
            reply = fut.result()
            if not reply.counter:
                return None, lambda: self.master.leave(ip)
            counter, reason = reply.counter, reply.reason
        else:
            fut.add_done_callback(give_back)
            if not self._fallback_logged:
                self._fallback_logged = True
                logging.getLogger("srv.access").warning(
                    "the master did not answer a per_ip check within %gs: this worker decides alone", ADMIT_TIMEOUT)
            refusal = self.local_limits.admit(self.config.per_ip, ip, time.monotonic())
            if refusal is None:
                return None, lambda: self.local_limits.release(ip)
            counter, reason = refusal.counter, refusal.reason
        self.reject(counter)
        self.refusals.refused(counter, logger, "%srejected: %s", what, reason)
        return counter, None

    def snapshot(self, query: ClientQuery | None = None) -> dict[str, Any]:
        """This worker's figures, gathered by the master for the API and the exporter:
        counters, streams, and its clients folded by `client_figures`."""
        self.refresh_bytes()
        return {
            "slot": self.slot,
            "started": self.started,
            "counters": dict(self.counters),
            **client_figures([c.info() for c in self.clients.values()], query),
            "streams": bounded(self.hub.stats()),
            "pulls": sorted(self.hub.pulls),
            "hls_served": self.hls.figures(),
            "pid": os.getpid(),
        }
