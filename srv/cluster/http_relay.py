"""The proxy's HTTP side: HTTP-FLV and HLS reverse proxy, and the register API origins call.

``HttpRelay`` reads one request head, finds the stream it names and the origin that owns it,
sends the head (and anything after it) to the origin's HTTP port unchanged and then splices
bytes both ways: the origin's answer, FLV stream or HLS file, reaches the player as the origin
wrote it. The stream of a path: ``/app/stream.flv`` and ``/app/stream.m3u8`` name it, a
segment ``/app/stream-12.ts`` (``.m4s``, ``-init.mp4``) names it without its ``-<seq>`` suffix
(SRS's default file names). A kept-alive connection stays with the origin of its first request.

``RegisterApi`` serves ``POST /api/v1/srs/register`` (SRS 7's system API): an SRS-shaped body
registers an origin for ``server_ttl`` seconds and gets ``{"code": 0, "pid": "<proxy pid>"}``; a
bad body gets HTTP 400 and one log line naming the peer and the reason; an unreachable load
balancer gets 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import h11

from srv import log as srvlog
from srv.cluster.balancer import Balancer, BalancerError, RegisterError, parse_register
from srv.cluster.ends import ClientEnd, OriginEnd
from srv.cluster.router import Refused, Router, stream_name
from srv.net.context import ConnectionContext

log = logging.getLogger("srv.proxy")

MAX_HEAD = 16 * 1024
MAX_REGISTER_BODY = 64 * 1024
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3.0
_PLAYLISTS = (".flv", ".m3u8")
_SEGMENTS = (".ts", ".m4s", ".mp4", ".aac", ".mp3")


def stream_of_path(target: str) -> tuple[str, bool] | None:
    """``(vhost/app/stream, is_segment)`` of a request target, or None for what is no stream."""
    url = urlsplit(target)
    params = dict(parse_qsl(url.query))
    app, _, name = url.path.lstrip("/").rpartition("/")
    base, dot, ext = name.rpartition(".")
    ext = dot + ext
    if not app or not base or ext not in _PLAYLISTS + _SEGMENTS:
        return None
    segment = ext in _SEGMENTS
    if segment:
        head, dash, tail = base.rpartition("-")
        if dash and (tail.isdigit() or tail == "init"):
            base = head
    return stream_name(params.get("vhost", ""), app, base), segment


def _answer(status: int, reason: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n").encode() + data


class _OriginSide(OriginEnd):
    def data_received(self, data: bytes) -> None:
        self.relay.sent += len(data)
        self.relay.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.close("origin closed")


class HttpRelay(ClientEnd):
    """One HTTP client of the proxy: FLV or HLS from the origin of its stream."""

    kind = "http"
    first_timeout = HEAD_TIMEOUT

    def __init__(self, ctx: ConnectionContext, router: Router) -> None:
        super().__init__(ctx, router)
        self.head = bytearray()
        self.task: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.upstream is not None:
            self.upstream.write(data)
            return
        self.head += data
        if self.task is not None:
            return
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self.fail(431, "Request Header Fields Too Large", "request head too large")
            return
        line = bytes(self.head[: self.head.find(b"\r\n")]).decode("latin-1").split()
        found = stream_of_path(line[1]) if len(line) == 3 and line[0] in ("GET", "HEAD") else None
        if found is None:
            self.fail(404, "Not Found", f"no stream in {' '.join(line)[:200]!r}")
            return
        self.timer.cancel()
        self.stream, segment = found
        self.transport.pause_reading()
        self.task = self.ctx.loop.create_task(self._route())

    async def _route(self) -> None:
        tried: set[str] = set()
        for _ in range(3):
            try:
                origin = await self.router.find_play(self.stream, tried)
            except Refused as e:
                self.fail(e.status, "Service Unavailable" if e.status == 503 else "Not Found", e.reason)
                return
            if not origin.http:
                self.fail(502, "Bad Gateway", f"origin {origin.label()} registered no http endpoint")
                return
            host, port = origin.http[0]
            try:
                _, side = await asyncio.wait_for(
                    self.ctx.loop.create_connection(lambda: _OriginSide(self), host, port), CONNECT_TIMEOUT)
            except (TimeoutError, OSError) as e:
                log.warning("proxy: http %s %s: origin %s unreachable: %s", self.cid, self.stream, origin.label(),
                            str(e) or "timeout")
                self.router.connect_failed(origin)
                tried.add(origin.server)
                continue
            if self.closed:
                if side.transport is not None:
                    side.transport.close()
                return
            assert side.transport is not None
            self.upstream = side.transport
            side.transport.write(bytes(self.head))
            self.head.clear()
            self.transport.resume_reading()
            log.log(srvlog.INFO, "proxy: http %s %s %s -> origin %s", self.cid, self.ip, self.stream, origin.label())
            return
        self.fail(502, "Bad Gateway", "no origin could be reached")

    def fail(self, status: int, reason: str, why: str) -> None:
        log.warning("proxy: http %s %s %s refused: %s", self.cid, self.ip, self.stream or "-", why)
        body = f"{status} {reason}: {why}\n".encode()
        self.transport.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        self.close("refused", quiet=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close("client closed")

    def close(self, reason: str, quiet: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.cancel()
        if not quiet and self.upstream is None:
            log.log(srvlog.INFO, "proxy: http %s %s closed: %s", self.cid, self.ip, reason)
        if self.upstream is not None:
            self.upstream.close()
        self.transport.close()
        self.ctx.unregister(self)


class RegisterApi(asyncio.Protocol):
    """``POST /api/v1/srs/register``: one request per connection (SRS's heartbeat closes)."""

    def __init__(self, ctx: ConnectionContext, balancer: Balancer, master_pid: int,
                 known: dict[str, str]) -> None:
        self.ctx = ctx
        self.balancer = balancer
        self.known = known  # server -> service of the origins this worker has logged
        self.master_pid = master_pid
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.body = bytearray()
        self.path = ""
        self.method = ""
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        self.timer = self.ctx.loop.call_later(HEAD_TIMEOUT, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self.busy:
            return
        self.conn.receive_data(data)
        try:
            while True:
                event = self.conn.next_event()
                if isinstance(event, h11.Request):
                    self.method, self.path = event.method.decode(), event.target.decode("latin-1")
                elif isinstance(event, h11.Data):
                    self.body += event.data
                    if len(self.body) > MAX_REGISTER_BODY:
                        self.refuse(413, "Payload Too Large", f"body over {MAX_REGISTER_BODY} bytes")
                        return
                elif isinstance(event, h11.EndOfMessage):
                    self.busy = True
                    self.ctx.loop.create_task(self.handle())
                    return
                else:
                    return
        except h11.RemoteProtocolError as e:
            self.refuse(400, "Bad Request", f"bad HTTP: {e}")

    async def handle(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != "/api/v1/srs/register":
            self.refuse(404, "Not Found", f"no API at {self.path[:200]!r}")
            return
        if self.method != "POST":
            self.refuse(405, "Method Not Allowed", f"{self.method} (expected POST)")
            return
        try:
            origin = parse_register(bytes(self.body))
        except RegisterError as e:
            self.refuse(400, "Bad Request", f"bad register body: {e}")
            return
        try:
            await self.balancer.register(origin)
        except BalancerError as e:
            self.refuse(503, "Service Unavailable", f"load balancer unreachable ({e})")
            return
        if self.known.get(origin.server) != origin.service:  # new, or restarted: one line, not one per beat
            self.known[origin.server] = origin.service
            log.log(srvlog.TRACE, "proxy: origin %s registered (server %s, service %s, pid %s)", origin.label(),
                    origin.server, origin.service, origin.pid)
        self.reply(_answer(200, "OK", {"code": 0, "pid": str(self.master_pid or os.getpid())}))

    def refuse(self, status: int, reason: str, why: str) -> None:
        log.warning("proxy: register request from %s refused: %s", self.ip, why)
        self.reply(_answer(status, reason, {"code": status, "error": why}))

    def reply(self, data: bytes) -> None:
        self.timer.cancel()
        self.busy = True
        if not self.transport.is_closing():
            self.transport.write(data)
            self.transport.close()
