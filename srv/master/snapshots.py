"""The snapshot broker: one server-wide view of every worker, for the HTTP API and the exporter.

A worker serving `/api/v1/...` or `/metrics` asks the master (`Snapshot`); the broker sends a
`StatsRequest` with the same client query to every live worker, collects their `Stats` and
answers the requester with all of them at once (`SnapshotReply`). A worker that does not answer
within SNAPSHOT_TIMEOUT, or dies meanwhile, is left out rather than holding the reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from srv.net.context import ClientQuery

SNAPSHOT_TIMEOUT = 1.0


@dataclass
class PendingSnapshot:
    requester: int
    req: int
    waiting: set[int]
    deadline: float
    results: dict[int, dict[str, Any]] = field(default_factory=dict)


class SnapshotBroker:
    def __init__(self, ask: Callable[[int, int, ClientQuery], None],
                 answer: Callable[[int, int, dict[int, dict[str, Any]]], None]) -> None:
        self.ask = ask  # ask(slot, sid, query): send a StatsRequest to a worker
        self.answer = answer  # answer(requester slot, req, results): send the SnapshotReply
        self.pending: dict[int, PendingSnapshot] = {}
        self.next_sid = 1

    def start(self, requester: int, req: int, query: ClientQuery, live: set[int]) -> None:
        sid = self.next_sid
        self.next_sid += 1
        self.pending[sid] = PendingSnapshot(requester, req, set(live), time.monotonic() + SNAPSHOT_TIMEOUT)
        for slot in sorted(live):
            self.ask(slot, sid, query)
        if not live:
            self.finish(sid)

    def on_stats(self, slot: int, sid: int, data: dict[str, Any]) -> None:
        p = self.pending.get(sid)
        if p is None or slot not in p.waiting:
            return  # late (expired) or unasked
        p.results[slot] = data
        p.waiting.discard(slot)
        if not p.waiting:
            self.finish(sid)

    def forget(self, slot: int) -> None:
        """A worker is gone: no snapshot waits for it any more."""
        for sid, p in list(self.pending.items()):
            if slot in p.waiting:
                p.waiting.discard(slot)
                if not p.waiting:
                    self.finish(sid)

    def expire(self) -> None:
        now = time.monotonic()
        for sid, p in list(self.pending.items()):
            if now > p.deadline:
                self.finish(sid)

    def finish(self, sid: int) -> None:
        p = self.pending.pop(sid, None)
        if p is not None:
            self.answer(p.requester, p.req, p.results)
