"""The worker's composition root: what every connection of a worker shares (config, hub, client
table, counters, the hook client, the link to the master), built by the worker and seen by its
connections as a `srv.net.context.ConnectionContext`.

Client ids are `"<slot>-<n>"`, unique across the server. Counters are cumulative for the
worker's life; `snapshot(query)` is what the worker tells the master (see `srv.net.context`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from typing import Any

from srv.app.access import IpLimiter
from srv.app.hub import StreamHub
from srv.conf.model import ServerConfig
from srv.net.context import Client, ClientQuery, MasterLink, RefusalLog, bounded, client_figures
from srv.net.hooks import HookClient


class WorkerContext:
    def __init__(self, slot: int, config: ServerConfig, hub: StreamHub,
                 loop: asyncio.AbstractEventLoop, master: MasterLink, hooks: HookClient | None = None,
                 master_pid: int | None = None) -> None:
        self.slot = slot
        self.config = config
        self.hub = hub
        self.loop = loop
        self.master = master  # the worker's channel to the master (snapshot, reload, kick)
        # the worker's one HTTP hook client (forward backends); the worker closes it when it stops
        self.hooks = hooks if hooks is not None else HookClient()
        self.clients: dict[str, Client] = {}
        self.started = time.time()
        self._n = 0
        self.counters: Counter[str] = Counter()
        self.stopping = False  # a stop began: not ready (health), but still serving new clients
        self.draining = False  # the listeners are closed: whatever still arrives is refused
        self.refusals = RefusalLog(loop)
        self.limiter = IpLimiter()
        # bytes of clients that have left; `refresh_bytes` adds the live ones, so the
        # "send_bytes"/"recv_bytes" counters only grow (the master keeps them when a worker dies)
        self._closed_send = 0
        self._closed_recv = 0
        # the same for every worker of one server: forwarders use it to detect loops (A -> B -> A)
        self.server_id = f"{socket.gethostname()}-{master_pid or os.getpid()}"

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
            refusal = None if ip is None else self.limiter.admit(self.config.per_ip, ip, time.monotonic())
            if refusal is None:
                return None
            self.reject(refusal.counter)
            self.refusals.refused(refusal.counter, logger, "%srejected: %s", what, refusal.reason)
            return refusal.counter
        reason = "stopping" if self.draining else "max_connections"
        self.reject(reason)
        self.refusals.refused(reason, logger, "%srejected: %s (%d clients)", what, reason, len(self.clients))
        return reason

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
            "pid": os.getpid(),
        }
