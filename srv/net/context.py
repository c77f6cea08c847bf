"""What every connection of a worker shares: config, hub, client table, counters.

Client ids are `"<slot>-<n>"`, unique across the server, so the API can route a kick to the
worker that holds the client. Counters here are cumulative for the worker's life; the master
keeps the totals of workers that died, so server-wide counters never go backwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from typing import Any, Protocol

from srv.app.hub import StreamHub
from srv.conf.model import ServerConfig


class Client(Protocol):
    cid: str

    def byte_counts(self) -> tuple[int, int]: ...
    def info(self) -> dict[str, Any]: ...
    def kick(self, reason: str) -> None: ...


class WorkerContext:
    def __init__(self, slot: int, config: ServerConfig, hub: StreamHub,
                 loop: asyncio.AbstractEventLoop, master: Any) -> None:
        self.slot = slot
        self.config = config
        self.hub = hub
        self.loop = loop
        self.master = master  # the worker's channel to the master (snapshot, reload, kick)
        self.clients: dict[str, Client] = {}
        self.started = time.time()
        self._n = 0
        self.counters: Counter[str] = Counter()
        self.stopping = False
        # bytes of clients that have left; `refresh_bytes` adds the live ones, so the
        # "send_bytes"/"recv_bytes" counters only grow (the master keeps them when a worker dies)
        self._closed_send = 0
        self._closed_recv = 0
        # the same for every worker of one server: forwarders use it to detect loops (A -> B -> A)
        self.server_id = f"{socket.gethostname()}-{master.master_pid if master else os.getpid()}"

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

    def snapshot(self) -> dict[str, Any]:
        """This worker's figures, gathered by the master for the API and the exporter."""
        self.refresh_bytes()
        return {
            "slot": self.slot,
            "started": self.started,
            "counters": dict(self.counters),
            "clients": [c.info() for c in self.clients.values()],
            "streams": self.hub.stats(),
            "pulls": sorted(self.hub.pulls),
            "pid": os.getpid(),
        }
