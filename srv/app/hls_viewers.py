"""HLS viewers as SRS's `hls_ctx` sessions, across workers: the session table of one worker.

HLS is plain file fetching, so there is no connection to call a viewer. As SRS
(`SrsHlsStream`), a playlist request without `?hls_ctx=` is a new viewer: it passes the play
checks, gets a variant playlist pointing at `?hls_ctx=<ctx>`, and from then on every request
that carries the ctx is that viewer's. A viewer leaves after `timeout` seconds without a
playlist request (SRS: twice `hls_window`); `on_stop` is due once then.

Across workers, the ctx is a signed, opaque id: `<client id>.<run>-<signature>`, where the
client id (`<slot>-<n>`) names the worker that admitted the viewer, `run` that worker's run (a
respawned worker counts its client ids from 1 again: the run keeps its ctx apart from the ones
the dead worker gave, whose viewers are new viewers again) and the signature (HMAC-SHA256 with
the server's secret, made by the master before it forks any worker) binds it to the stream.
Any worker checks a ctx alone, with no round trip, and knows its owner. The viewer's record
(API client `hls-play`, bytes, liveness, kick) lives only on its owner; another worker that
serves the viewer's playlist asks the owner through the master whether the viewer is still
there (`HlsVisit`); the segment bytes it sends the viewer go to the owner once a second
(`HlsBytes`, from `pending`) or with the next visit, whichever comes first. So one viewer is
one client in `/api/v1/clients` whichever workers it hits, and a kicked or timed-out one is
known as such everywhere.

Pure: no I/O, no clock of its own (`now` is passed in); the HTTP layer registers the clients,
calls the hooks and sweeps.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from srv.app.hls_ll import PartListener
from srv.app.http_hooks import HookRequest

SIGNATURE_CHARS = 16  # hex digits of the HMAC kept in a ctx (64 bits)
TRAFFIC_KEEP = 600.0  # seconds a quiet stream's HLS counts are kept


class Visit(Enum):
    """What the owner of a ctx says about it."""

    ALIVE = "alive"
    EOF = "eof"  # kicked: SRS answers 404 "HLS stream is EOF" until the record times out
    UNKNOWN = "unknown"  # timed out, or its worker restarted: a new viewer, as SRS


def sign(secret: bytes, cid: str, key: str, run: str) -> str:
    """The ctx of client `cid`, admitted by the worker run `run`, playing stream `key`."""
    mac = hmac.new(secret, f"{cid}.{run}\0{key}".encode(), hashlib.sha256).hexdigest()[:SIGNATURE_CHARS]
    return f"{cid}.{run}-{mac}"


def owner_of(secret: bytes, ctx: str, key: str) -> tuple[int, str] | None:
    """(owning worker slot, client id) when `ctx` is one this server made for `key`, else None."""
    head, _, mac = ctx.rpartition("-")
    cid, _, run = head.partition(".")
    slot, _, n = cid.partition("-")
    if len(mac) != SIGNATURE_CHARS or not slot.isdigit() or not n.isdigit() or not run.isalnum():
        return None
    if not hmac.compare_digest(sign(secret, cid, key, run), ctx):
        return None
    return int(slot), cid


@dataclass
class HlsViewer:
    """One viewer (a Client of its owner worker: type `hls-play`, SRS's shape)."""

    cid: str
    ctx: str
    key: str
    vhost: str
    ip: str
    url: str
    tc_url: str
    timeout: float
    hooked: HookRequest | None = None  # what on_play was asked with: on_stop is due at the end
    started: float = field(default_factory=time.time)
    seen: float = field(default_factory=time.monotonic)
    sent: int = 0
    interrupted: bool = False
    kicked: Any = None  # called once when kicked (the worker leaves the client table)

    def byte_counts(self) -> tuple[int, int]:
        return self.sent, 0

    def info(self) -> dict[str, Any]:
        alive = time.time() - self.started
        return {
            "id": self.cid, "ip": self.ip, "vhost": self.vhost, "stream": self.key, "url": self.url,
            "tcUrl": self.tc_url, "type": "hls-play", "alive": alive, "recv_bytes": 0,
            "send_bytes": self.sent,
        }

    def kick(self, reason: str) -> None:
        if not self.interrupted:
            self.interrupted = True
            if self.kicked is not None:
                self.kicked(self)


class HlsViewers:
    """One worker's viewers (those it admitted) and what it owes other workers' viewers."""

    def __init__(self, secret: bytes, slot: int, run: str | None = None) -> None:
        self.secret = secret
        self.slot = slot
        self.run = run or secrets.token_hex(4)  # this run of the worker (see the module docstring)
        self.viewers: dict[str, HlsViewer] = {}  # ctx -> viewer, admitted here
        # ctx of another worker's viewer -> bytes sent to it, not yet told to its owner
        self.pending: dict[str, int] = {}
        # stream key -> [HLS requests answered, body bytes sent, when last], for the API/exporter
        self.traffic: dict[str, list[float]] = {}
        # ctx of another worker's viewer -> when its owner last said it is there (LL-HLS players
        # ask five times a second: they are asked about once a second, not at every request)
        self.confirmed: dict[str, float] = {}
        # LL-HLS: told after each part and segment this worker's writers put on disk
        # (srv/app/hls_ll.py PartEvent); set by the serving side, None: nobody listens
        self.on_part: PartListener | None = None

    def ctx_for(self, cid: str, key: str) -> str:
        """The ctx of a viewer this worker admits."""
        return sign(self.secret, cid, key, self.run)

    def open(self, viewer: HlsViewer) -> None:
        self.viewers[viewer.ctx] = viewer

    def visit(self, ctx: str, sent: int, now: float) -> Visit:
        """A playlist request of `ctx` (here or, through the master, on another worker)."""
        viewer = self.viewers.get(ctx)
        if viewer is None:
            return Visit.UNKNOWN
        viewer.sent += sent
        if viewer.interrupted:
            return Visit.EOF
        viewer.seen = now
        return Visit.ALIVE

    def served(self, ctx: str, owner: int, nbytes: int) -> None:
        """`nbytes` of a segment sent to viewer `ctx` (owned by worker `owner`)."""
        if owner == self.slot:
            viewer = self.viewers.get(ctx)
            if viewer is not None:
                viewer.sent += nbytes
        else:
            self.pending[ctx] = self.pending.get(ctx, 0) + nbytes

    def count(self, key: str, nbytes: int) -> None:
        """One HLS request of stream `key` answered with `nbytes` of body."""
        if key:
            entry = self.traffic.setdefault(key, [0, 0, 0.0])
            entry[0] += 1
            entry[1] += nbytes
            entry[2] = time.monotonic()

    def figures(self) -> dict[str, list[int]]:
        """{stream key: [requests, bytes]} of this worker, for its snapshot."""
        return {key: [int(e[0]), int(e[1])] for key, e in self.traffic.items()}

    def take_pending(self, ctx: str) -> int:
        return self.pending.pop(ctx, 0)

    def take_all_pending(self) -> dict[int, dict[str, int]]:
        """Every byte owed to other workers' viewers: {owner slot: {ctx: bytes}}."""
        out: dict[int, dict[str, int]] = {}
        for ctx, nbytes in self.pending.items():
            out.setdefault(int(ctx.split("-", 1)[0]), {})[ctx] = nbytes
        self.pending.clear()
        return out

    def add_sent(self, sent: dict[str, int]) -> None:
        """Bytes other workers sent to viewers of this one (`take_all_pending` there)."""
        for ctx, nbytes in sent.items():
            viewer = self.viewers.get(ctx)
            if viewer is not None:
                viewer.sent += nbytes

    def expired(self, now: float) -> list[HlsViewer]:
        """Remove and return the viewers with no playlist request for their timeout."""
        gone = [v for v in self.viewers.values() if now - v.seen > v.timeout]
        for v in gone:
            del self.viewers[v.ctx]
        for ctx in [c for c, at in self.confirmed.items() if now - at > TRAFFIC_KEEP]:
            del self.confirmed[ctx]
        for key in [k for k, e in self.traffic.items() if now - e[2] > TRAFFIC_KEEP]:
            del self.traffic[key]  # a stream gone quiet: its counters restart if it comes back
        return gone
