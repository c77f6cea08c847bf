"""The proxy role of a worker (``proxy { enabled on; }``): which protocol serves each listener.

RTMP listeners get ``RtmpRelay``, the HTTP server's listener ``HttpRelay`` (HTTP-FLV and HLS),
``system_api`` the ``RegisterApi``; the HTTP API and the exporter stay the worker's own. One
``Balancer`` per worker (a Redis connection pool, or the memory of the only worker) is shared by
every connection and closed when the worker stops.
"""

from __future__ import annotations

import asyncio

from srv.cluster.balancer import make_balancer
from srv.cluster.http_relay import HttpRelay, RegisterApi
from srv.cluster.router import Router
from srv.cluster.rtmp_relay import RtmpRelay
from srv.conf.listen import ListenSpec
from srv.conf.model import ProxyConfig
from srv.net.context import ConnectionContext


class ProxyRole:
    def __init__(self, ctx: ConnectionContext, config: ProxyConfig, master_pid: int) -> None:
        self.ctx = ctx
        self.balancer = make_balancer(config)
        self.router = Router(self.balancer, config)
        self.master_pid = master_pid
        self.origins_seen: dict[str, str] = {}  # server -> service, for RegisterApi's log

    def protocol(self, spec: ListenSpec) -> asyncio.Protocol | None:
        """The proxy's protocol for a connection on ``spec``, or None: the worker's own."""
        if spec.kind == "rtmp":
            return RtmpRelay(self.ctx, self.router)
        if "register" in spec.services:
            return RegisterApi(self.ctx, self.balancer, self.master_pid, self.origins_seen)
        if "server" in spec.services:
            return HttpRelay(self.ctx, self.router)
        return None

    async def aclose(self) -> None:
        await self.balancer.aclose()
