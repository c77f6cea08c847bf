"""The two ends of a relayed connection, as both relays (RTMP, HTTP) share them.

``ClientEnd`` is a proxy client in the worker's client table (id, address, byte counts, kick)
with a timer for what it must do first; ``OriginEnd`` is the proxy's connection to an origin.
Flow control couples them: a full write buffer on one side pauses reading on the other, so a slow
player slows its origin connection, never the proxy's memory.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from srv.cluster.router import Router
from srv.net.context import ConnectionContext


class ClientEnd(asyncio.Protocol):
    kind = ""
    first_timeout = 10.0  # seconds to send what routes the client (overridden)

    def __init__(self, ctx: ConnectionContext, router: Router) -> None:
        self.ctx = ctx
        self.router = router
        self.upstream: asyncio.Transport | None = None  # the origin connection, once dialled
        self.closed = False
        self.sent = self.received = 0
        self.stream = ""
        self.cid = ""
        self.ip = "?"

    def byte_counts(self) -> tuple[int, int]:
        return self.sent, self.received

    def info(self) -> dict[str, Any]:
        return {"id": self.cid, "ip": self.ip, "type": f"proxy-{self.kind or 'identify'}", "stream": self.stream,
                "send_bytes": self.sent, "recv_bytes": self.received}

    def kick(self, reason: str) -> None:
        self.close(reason)

    def close(self, reason: str, quiet: bool = False) -> None:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        self.cid = self.ctx.new_cid()
        self.ctx.register(self)
        self.timer = self.ctx.loop.call_later(self.first_timeout, self.close, "no publish, play or request in time")

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()


class OriginEnd(asyncio.Protocol):
    def __init__(self, relay: ClientEnd) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        self.relay.transport.pause_reading()

    def resume_writing(self) -> None:
        self.relay.transport.resume_reading()
