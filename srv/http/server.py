"""The HTTP connection of a worker: h11 for the protocol, answers from the services of its port.

Which service answers is `routes.route` (a pure function of the listener's services, the method
and the path); health checks are `health`, static files `static.serve` (which writes through
this connection as a `static.FileResponse`), HLS files and viewers `hls_serve.serve_hls`, the
API `api.Api`, `/metrics` `exporter.render`, HTTP-FLV plays `flv.FlvPlayer`. This class keeps
the protocol: the request cycle, timers, flow control and response framing (a HEAD gets a GET's
status and headers, never a body; an HTTP-FLV response is chunked for an HTTP/1.1 request and
read-until-close for HTTP/1.0).

Robustness, per connection only (nothing else is disturbed):
- h11 parses; a malformed request gets 400 (or h11's hint, e.g. 431 for headers over
  `MAX_HEADER`) and the connection is closed;
- the request head (and body) must arrive within `HEADER_TIMEOUT` seconds of the connection or
  of the previous response, else the connection is closed (slowloris); idle keep-alive
  connections are closed by the same timer. A connection whose client is still reading the
  previous answer (bytes of it wait in the transport or the kernel's send queue, fewer at each
  check) is not idle: its timer starts again;
- reading is paused while a request is being answered, so a pipelining client cannot make us
  buffer without bound; request bodies over `MAX_BODY` get 413.
Once a request becomes an HTTP-FLV play the connection belongs to its `FlvPlayer`; anything
the client sends afterwards is ignored.

Cost per request (what HLS players make many of): a request that arrives as one plain
keep-alive `GET`/`HEAD` head for a file (`simple_request.parse`; not HTTP-FLV, the API or the
console) is answered without h11 (`bypass`): the head is parsed in one pass and the response
framed here (every such answer has a `Content-Length`); h11 stays idle between two requests, so
anything else (pipelined bytes, a body, HTTP/1.0, `Connection: close`, bad bytes) goes to h11
as before. A file's response head is held and written with its first bytes (one send), and on
plain TCP a file's bytes go from the page cache to the socket with `os.sendfile`
(`send_file`), as nginx's `sendfile on`. Such a request is answered inside `data_received`
(`eager.start`): no Task is made for it unless it has to wait (a full socket, a viewer's checks).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import struct
import termios
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h11

from srv import SIGNATURE, __version__
from srv import log as srvlog
from srv.app.access import Refusal, check_access, plain_ip
from srv.app.http_hooks import HookRequest
from srv.http import auth, dvr_api, eager, health, static
from srv.http.api import Api
from srv.http.exporter import CONTENT_TYPE as METRICS_TYPE
from srv.http.exporter import render
from srv.http.flv import FlvPlayer, match_mount
from srv.http.hls_serve import serve_hls
from srv.http.routes import Route, route
from srv.http.simple_request import SimpleRequest
from srv.http.simple_request import parse as parse_simple
from srv.net import edge, hooks
from srv.net.context import ConnectionContext, IpSlot
from srv.net.refuse import record_refusal

log = logging.getLogger("srv.http")

HEADER_TIMEOUT = 10.0
UNKNOWN = 1 << 62  # `unsent` before a first idle check: any figure is progress
MAX_HEADER = 16 * 1024
MAX_BODY = 64 * 1024
# the status of an HTTP-FLV play refused at the door, by reason (others: 503)
DOOR_STATUS = {"ip_banned": 403, "ip_rate": 429, "ip_connections": 429}
SERVER = f"{SIGNATURE}/{__version__}".encode()
# SRS's CORS headers, except that no method that changes anything is allowed cross-origin: a
# browser preflights DELETE (kick a client) and is refused it from any page. A page that knows
# the API's credentials may send them (Authorization) and read a 401's challenge.
CORS = [(b"Access-Control-Allow-Origin", b"*"),
        (b"Access-Control-Allow-Methods", b"GET, HEAD, OPTIONS"),
        (b"Access-Control-Expose-Headers", b"Server,range,Content-Length,Content-Range,WWW-Authenticate"),
        (b"Access-Control-Allow-Headers", b"origin,range,accept-encoding,referer,Cache-Control,"
                                          b"X-Proxy-Authorization,X-Requested-With,Content-Type,Authorization")]


REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class FileBytes:
    """What h11 is told of a body that `os.sendfile` writes: only its length."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class HttpConnection(asyncio.Protocol):
    def __init__(self, ctx: ConnectionContext, services: frozenset[str],
                 client: tuple[str, int] | None = None) -> None:
        self.ctx = ctx
        self.services = services
        self.client = client  # the client's (ip, port) from a PROXY header; else the peer's
        self.transport: asyncio.Transport | None = None
        self.scheme = "http"  # "https" once connection_made sees a TLS transport
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
        self.h11_used = False  # h11 was given bytes: until then it is idle with none (no need to ask it)
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None  # loop time the timer closes the connection at; None: not armed
        self.paused = False  # reading paused while a request is answered
        self.half_closed = False  # the client shut its side during a response: close after it
        self.raw_request = b""  # the bytes of a request answered without h11
        self.held_data = b""  # bytes that came while it was answered
        self.busy = False
        self.closed = False
        self.request: h11.Request | SimpleRequest | None = None
        self.bypass = False  # this request is answered without h11 (see the module's docstring)
        self.answered = False  # this request's response head is written (or held)
        self.held_head = b""  # a file's response head, written with its first bytes
        self.wait_fd = -1  # a dup of the socket, polled for writability during a `send_file`
        self.sendfile_ok = False  # a plain socket (not TLS): file bytes may go by os.sendfile
        self.sock_fd = -1  # its descriptor (the transport's, while it is open)
        self.unsent = UNKNOWN  # bytes of our answers the client had not taken at the last idle check
        self.body_size = 0
        self.player: FlvPlayer | None = None
        self.ip_slot = IpSlot()  # an HTTP-FLV play's per_ip counts, given back at the end
        self.task: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()  # cleared while the transport pushes back (static files)
        self.writable.set()

    # ---- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # the one address of this client (PROXY header, else the socket's): what logs, limits,
        # security and the API see
        peer = self.client or transport.get_extra_info("peername")
        self.ip = plain_ip(peer[0]) if isinstance(peer, tuple) else "unix"
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        # https on a TLS listener: what a player's tcUrl (API, hooks) says it came in by
        self.scheme = "https" if transport.get_extra_info("ssl_object") is not None else "http"
        sock = transport.get_extra_info("socket")
        self.sendfile_ok = self.scheme == "http" and sock is not None
        self.sock_fd = sock.fileno() if self.sendfile_ok else -1
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.player is not None:
            self.player.recv_bytes += len(data)
            return
        if not self.busy and (not self.h11_used or self.conn.their_state is h11.IDLE
                              and self.conn.our_state is h11.IDLE and not self.conn.trailing_data[0]):
            simple = parse_simple(data, MAX_HEADER)
            if simple is not None and self._plain_file(simple):
                self.request, self.bypass, self.body_size, self.raw_request = simple, True, 0, data
                self._cancel_timer()
                self._dispatch()
                return
        if self.busy and not self.paused and self.transport is not None:
            self.transport.pause_reading()  # bytes that came during a response wait for its end, once
            self.paused = True
        if self.busy and self.bypass:
            self.held_data += data  # h11 gets them after the request it has not seen
            return
        self.h11_used = True
        try:
            self.conn.receive_data(data)
        except h11.RemoteProtocolError as e:
            self._bad_request(e)
            return
        self._next_events()

    def eof_received(self) -> bool | None:
        if self.busy and self.player is None and not self.closed:
            # the client sent its request and shut its side while it is answered (reading goes
            # on during a plain request's answer on plain TCP): answer it, then close
            self.half_closed = True
            return True
        if self.player is None and not self.closed:
            self.h11_used = True
            try:
                self.conn.receive_data(b"")
            except h11.RemoteProtocolError:
                pass
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self._close_wait_fd()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.ip_slot.release()
        if self.player is not None:
            p, self.player = self.player, None
            p.stop()
            log.log(srvlog.TRACE, "%s flv-play %s closed (%s), sent %d bytes, %.1fs", self.peer, p.key,
                    p.close_reason or srvlog.peer_left(exc), p.info()["send_bytes"],
                    time.time() - p.started, extra=srvlog.event("close", cid=p.cid, client=self.peer, stream=p.key))

    def pause_writing(self) -> None:
        if self.player is not None:
            self.player.pause()
        else:
            self.writable.clear()

    def resume_writing(self) -> None:
        if self.player is not None:
            self.player.resume()
        else:
            self.writable.set()

    # ---- request cycle -------------------------------------------------------------------------

    # One timer handle lives across requests and is pushed back lazily (`deadline`), instead of
    # a new one per request: a keep-alive player makes a request every few seconds.
    def _arm_timer(self) -> None:
        self.deadline = self.ctx.loop.time() + HEADER_TIMEOUT
        self.unsent = UNKNOWN
        if self.timer is None:
            self.timer = self.ctx.loop.call_at(self.deadline, self._timed_out)

    def _cancel_timer(self) -> None:
        self.deadline = None

    def _stop_timer(self) -> None:
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.deadline is None or self.closed or self.player is not None or self.busy:
            return
        if self.ctx.loop.time() < self.deadline:
            self.timer = self.ctx.loop.call_at(self.deadline, self._timed_out)
            return
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            unsent = self._unsent()
            if 0 < unsent < self.unsent:  # still reading our answer, and it moved: not idle
                self.unsent = unsent
                self.deadline = self.ctx.loop.time() + HEADER_TIMEOUT
                self.timer = self.ctx.loop.call_at(self.deadline, self._timed_out)
                return
            log.log(srvlog.INFO, "%s: idle http connection closed", self.peer,
                    extra=srvlog.event("close", client=self.peer))
        else:
            self.ctx.reject("http_timeout")
            log.warning("%s: request not received within %.0fs; closing", self.peer, HEADER_TIMEOUT,
                        extra=srvlog.event("error", client=self.peer))
        self._close()

    def _unsent(self) -> int:
        """Bytes of our answers the client has not taken yet: in the transport's buffer and, on a
        plain socket, in the kernel's send queue (only read when the idle timer fires)."""
        n = self.transport.get_write_buffer_size() if self.transport is not None else 0
        if self.sock_fd >= 0:
            try:
                n += struct.unpack("i", fcntl.ioctl(self.sock_fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except OSError:
                pass
        return n

    def _next_events(self) -> None:
        while not self.busy and not self.closed and self.player is None:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as e:
                self._bad_request(e)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                    self._arm_timer()
                    continue
                return
            if isinstance(event, h11.Request):
                # h11 caps only an *incomplete* head; one that arrived whole is measured here
                size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
                if size > MAX_HEADER:
                    self._bad_request(h11.RemoteProtocolError("request head too large", 431))
                    return
                self.request = event
                self.body_size = 0
            elif isinstance(event, h11.Data):
                self.body_size += len(event.data)
                if self.body_size > MAX_BODY:
                    self._error(413, "request body too large", close=True)
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._cancel_timer()
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _plain_file(self, req: SimpleRequest) -> bool:
        """Whether `req` is for a file (static, HLS, srv's pages): answered with a Content-Length."""
        path = req.target.partition(b"?")[0]
        return not path.endswith(b".flv") and \
            route(self.services, req.method.decode(), path.decode("latin-1"), self._cors()) is Route.MEDIA

    def _dispatch(self) -> None:
        req = self.request
        assert req is not None and self.transport is not None
        self.busy = True
        self.answered = False
        if not self.bypass or not self.sendfile_ok:  # a plain request over plain TCP: see eof_received
            self.transport.pause_reading()
            self.paused = True
        if self.bypass:  # a file: answered here unless it has to wait (see the module's docstring)
            task = eager.start(self.ctx.loop, self._respond(req))
            if task is not None:  # (when it finished, a pipelined request may already have a task)
                self.task = task
        else:
            self.task = self.ctx.loop.create_task(self._respond(req))

    async def _respond(self, req: h11.Request | SimpleRequest) -> None:
        try:
            await self.route(req)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: %s %s failed", self.peer, req.method.decode(),
                          srvlog.redact_url(req.target.decode(errors="replace")))
            if (not self.answered) if self.bypass else self.conn.our_state is h11.SEND_RESPONSE:
                self._error(500, "internal error", close=True)
        bypassed, self.bypass = self.bypass, False
        if self.player is not None or self.closed:
            return
        self.busy = False
        if self.half_closed or self.h11_used and (self.conn.our_state is h11.MUST_CLOSE
                                                  or self.conn.their_state is h11.MUST_CLOSE):
            self._close()
            return
        if self.paused and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False
        if self.held_data:
            held, self.held_data = self.held_data, b""
            self.h11_used = True
            try:
                self.conn.receive_data(held)
            except h11.RemoteProtocolError as e:
                self._bad_request(e)
                return
        if not bypassed or self.h11_used and self.conn.trailing_data[0]:  # else h11 is idle and has no bytes
            self._next_events()
        if not self.busy and self.player is None and not self.closed and self.deadline is None:
            self._arm_timer()

    # ---- responses -----------------------------------------------------------------------------

    def _send(self, event: Any) -> bytes:
        data = self.conn.send(event)
        return data or b""

    def _response_head(self, status: int, ctype: str, length: int,
                       extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
        headers = [(b"Server", SERVER), (b"Content-Type", ctype.encode())]
        if length >= 0:  # a 304 has none
            headers.append((b"Content-Length", b"%d" % length))
        headers += extra or []
        if self._cors():
            headers += CORS
        self.answered = True
        if self.bypass:  # what h11 writes for this response to a keep-alive HTTP/1.1 request
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
            lines += [b"%s: %s\r\n" % h for h in headers]
            lines.append(b"\r\n")
            return b"".join(lines)
        return self._send(h11.Response(status_code=status, headers=headers, reason=REASONS[status]))

    @property
    def head_request(self) -> bool:
        """A HEAD is answered like a GET without the body: same status and headers."""
        return self.request is not None and self.request.method == b"HEAD"

    def respond(self, status: int, body: bytes, ctype: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        out = self._response_head(status, ctype, len(body), extra)
        if self.bypass:
            if not self.head_request:
                out += body
        else:
            if body and not self.head_request:
                out += self._send(h11.Data(data=body))
            out += self._send(h11.EndOfMessage())
        if self.transport is not None and not self.closed:
            self.transport.write(out)

    def respond_json(self, status: int, obj: dict[str, Any]) -> None:
        self.respond(status, json.dumps(obj).encode(), "application/json")

    def _cors(self) -> bool:
        cfg = self.ctx.config
        return ("api" in self.services and cfg.http_api.crossdomain) or \
            ("server" in self.services and cfg.http_server.crossdomain)

    def _error(self, status: int, reason: str, close: bool = False) -> None:
        extra = [(b"Connection", b"close")] if close else []
        try:
            self.respond(status, f"{status} {reason}\n".encode(), "text/plain; charset=utf-8", extra)
        except h11.LocalProtocolError:
            pass
        if close:
            self._close()

    def _bad_request(self, e: h11.RemoteProtocolError) -> None:
        status = e.error_status_hint or 400
        self.ctx.reject("http_bad_request")
        log.warning("%s: bad http request (%s); closing", self.peer, e, extra=srvlog.event("error", client=self.peer))
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and self.transport is not None:
            body = f"{status} {e}\n".encode()
            head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nServer: {SERVER.decode()}\r\n"
                    f"Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            # h11 will not send once the peer broke the protocol: this one response is ours
            self.transport.write(head + body)
        self._close()

    def refuse(self, refusal: Refusal, stage: str) -> None:
        """Refuse this request with 403 and close: the HTTP side of the one refusal path (the
        same decisions an RTMP client gets as a status; see `RtmpServerProtocol.refuse`)."""
        record_refusal(self.ctx, self.ip, srvlog.ConnLog(log, "-", self.peer), stage, refusal)
        self._error(403, f"Forbidden: {refusal.reason}", close=True)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    # ---- routing -------------------------------------------------------------------------------

    async def route(self, req: h11.Request | SimpleRequest) -> None:
        method = req.method.decode("ascii", "replace").upper()
        target = req.target.decode("latin-1")
        if target[:1] == "/" and target[1:2] != "/" and "?" not in target and "#" not in target:
            path, pairs = target, []  # what urlsplit says of a plain path (players' segments, playlists)
        else:
            split = urlsplit(target)
            path = split.path or "/"
            pairs = parse_qsl(split.query)
        query = dict(pairs)
        # a bypassed request was routed by `_plain_file`: a file of the media service
        which = Route.MEDIA if self.bypass else route(self.services, method, path, self._cors())
        if which is Route.PREFLIGHT:
            self.respond(200, b"", "text/plain")
        elif which is Route.LIVE:
            self.respond(200, health.LIVE_BODY, "application/json")
        elif which is Route.READY:
            status, body = await health.readiness(self.ctx)
            self.respond(status, body, "application/json")
        elif which is Route.METRICS:
            await self.metrics()
        elif which is Route.API:
            if self.authorized(req, method, path):
                await self.api(method, path, query)
        elif which is Route.CONSOLE:
            if self.authorized(req, method, path):
                if path == "/console":  # the page's relative links need the slash
                    self.respond(301, b"", "text/plain", [(b"Location", b"/console/")])
                else:
                    await static.serve(self, static.CONSOLE, path[len("/console"):], self.ctx.loop)
        elif which is Route.MEDIA:
            if path.endswith(".flv") and await self.play_flv(req, path, query):
                return
            if path + "/" in static.PACKAGED:  # relative links of the page need the slash
                self.respond(301, b"", "text/plain", [(b"Location", (path + "/").encode())])
                return
            found = static.packaged(path)
            if found is not None:
                await static.serve(self, found[0], found[1], self.ctx.loop)
                return
            host = (self.header(b"host") or b"").decode("latin-1")
            if not await serve_hls(self, host, path, pairs):
                await static.serve(self, self.ctx.config.http_server.dir, path, self.ctx.loop)
        elif which is Route.NOT_ALLOWED:
            self._error(405, "method not allowed")
        else:
            self._error(404, "not found")

    async def api(self, method: str, path: str, query: dict[str, str]) -> None:
        api = Api(self.ctx)
        parts = [p for p in path.split("/") if p]
        if parts[:3] == ["api", "v1", "dvrs"]:
            def envelope(code: int, **data: Any) -> dict[str, Any]:
                return api.envelope(None, code, **data)

            answer = await dvr_api.handle(self.ctx, self, method, parts[3:], query, envelope)
            if answer is not None:
                self.respond_json(*answer)
            return
        status, obj = await api.handle(method, path, query)
        self.respond_json(status, obj)

    def authorized(self, req: h11.Request | SimpleRequest, method: str, path: str) -> bool:
        """`http_api { auth }`: True, or False once a 401 with the Basic challenge is sent."""
        header = next((v for k, v in req.headers if k == b"authorization"), None)
        why = auth.refusal(self.ctx.config.http_api.auth, header)
        if why is None:
            return True
        self.ctx.reject("api_auth")
        log.warning("%s: api %s %s refused: %s", self.peer, method, srvlog.redact_url(path), why,
                    extra=srvlog.event("refuse", client=self.peer))
        self.respond(401, b"401 unauthorized\n", "text/plain; charset=utf-8",
                     [(b"WWW-Authenticate", auth.CHALLENGE)])
        return False

    async def metrics(self) -> None:
        try:
            snap = await self.ctx.master.snapshot()
        except (TimeoutError, OSError):
            self._error(503, "master not answering")
            return
        self.respond(200, render(snap, self.ctx.config.exporter), METRICS_TYPE)

    # ---- static.FileResponse: a file's response, written by static.serve ---------------------------

    def header(self, name: bytes) -> bytes | None:
        """The request's header `name` (lower case), or None."""
        assert self.request is not None
        return next((v for k, v in self.request.headers if k == name), None)

    def error(self, status: int, reason: str) -> None:
        self._error(status, reason)

    @property
    def zero_copy(self) -> bool:
        return self.sendfile_ok

    def start_body(self, status: int, content_type: str, length: int,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.held_head = self._response_head(status, content_type, length, extra)

    def start_stream(self, status: int, content_type: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """A response of unknown length: chunked for HTTP/1.1 (h11's choice), else until close."""
        assert self.transport is not None
        if self.bypass:  # h11 frames this one: it reads the request it has not seen
            self.h11_used = True
            self.conn.receive_data(self.raw_request)
            self.conn.next_event()  # the Request
            self.conn.next_event()  # its EndOfMessage: h11 waits for our response
            self.bypass = False
        headers = [(b"Server", SERVER), (b"Content-Type", content_type.encode())] + (extra or [])
        if self._cors():
            headers += CORS
        self.transport.write(self._send(h11.Response(status_code=status, headers=headers)))

    def body(self, data: bytes | memoryview) -> None:
        assert self.transport is not None
        # h11 frames without copying: a Content-Length body passes through as it is
        pieces: list[Any] = [data]
        if not self.bypass:
            pieces = self.conn.send_with_data_passthrough(h11.Data(data=data)) or []  # type: ignore[arg-type]
        if self.held_head:
            pieces.insert(0, self.held_head)
            self.held_head = b""
        self.transport.writelines(pieces)

    async def send_file(self, fd: int, offset: int, count: int) -> int | None:
        transport = self.transport
        if transport is None or self.closed or not self.zero_copy:
            return None
        if self.held_head:
            transport.write(self.held_head)
            self.held_head = b""
        if transport.get_write_buffer_size():  # uvloop still holds bytes: they go first
            return None
        if not self.bypass:  # h11 counts the bytes against the Content-Length, never reads them
            self.conn.send_with_data_passthrough(h11.Data(data=FileBytes(count)))  # type: ignore[arg-type]
        sock = self.sock_fd
        sent = 0
        try:
            while sent < count and not self.closed:
                try:
                    n = os.sendfile(sock, fd, offset + sent, count - sent)
                except BlockingIOError:
                    await self._socket_writable(sock)
                    continue
                if n == 0:
                    break  # the file shrank
                sent += n
        except OSError:
            pass  # the client left (EPIPE, ECONNRESET): the caller closes
        finally:
            self._close_wait_fd()
        return sent

    async def _socket_writable(self, sock: int) -> None:
        """Until the socket takes bytes again. The transport owns `sock` (uvloop refuses a second
        watcher on it), so a dup of it is polled, for this response only."""
        if self.wait_fd < 0:
            self.wait_fd = os.dup(sock)
        ready = self.ctx.loop.create_future()
        self.ctx.loop.add_writer(self.wait_fd, _wake, ready)
        try:
            await ready
        finally:
            if self.wait_fd >= 0:
                self.ctx.loop.remove_writer(self.wait_fd)

    def _close_wait_fd(self) -> None:
        if self.wait_fd >= 0:  # unwatched before it is closed: its number may be reused at once
            fd, self.wait_fd = self.wait_fd, -1
            self.ctx.loop.remove_writer(fd)
            os.close(fd)

    async def drained(self) -> None:
        await self.writable.wait()

    def end_body(self) -> None:
        assert self.transport is not None
        tail = b"" if self.bypass else self._send(h11.EndOfMessage())
        if self.held_head:
            tail, self.held_head = self.held_head + tail, b""
        if tail:
            self.transport.write(tail)

    def abort(self) -> None:
        self._close()

    # ---- HTTP-FLV ------------------------------------------------------------------------------

    async def play_flv(self, req: h11.Request | SimpleRequest, path: str, query: dict[str, str]) -> bool:
        """Start an HTTP-FLV play if `path` is a mount; False if it is not one.

        With SRS's on_play hook, the play starts only once every URL accepts; a refusal is a 403
        (a HEAD asks too, and gets what a GET would)."""
        host = next((v.decode("latin-1") for k, v in req.headers if k == b"host"), "")
        name = query.get("vhost") or host.rsplit(":", 1)[0].strip("[]")
        vhost = self.ctx.config.vhost(name)
        if vhost is None or not vhost.enabled:
            return False
        found = match_mount(vhost, path)
        if found is None:
            return False
        ctx = self.ctx
        reason = ctx.refuse_at_door(log, f"{self.peer}: flv play {path} ", self.ip)
        if reason is not None:
            self._error(DOOR_STATUS.get(reason, 503), reason, close=True)
            return True
        self.ip_slot.hold(lambda: ctx.limiter.release(self.ip))
        if ctx.shared_limits():
            reason, release = await ctx.admit_shared(log, f"{self.peer}: flv play {path} ", self.ip)
            if self.closed:  # it left while the master was asked
                if release is not None:
                    release()
                return True
            if reason is not None:
                self._error(DOOR_STATUS.get(reason, 503), reason, close=True)
                return True
            if release is not None:
                self.ip_slot.hold(release)
        app, stream = found
        refusal = check_access(vhost, "play", self.ip, app, stream, query, time.time())
        if refusal is not None:
            self.refuse(refusal, f"flv play {path}")
            return True
        cid, hooked = ctx.new_cid(), None
        tc_url = f"{self.scheme}://{host or '127.0.0.1'}/{app}"
        if vhost.cluster.edge and vhost.cluster.token_traverse:  # the origin decides first
            play = edge.with_query(stream, edge.upstream_query(query))
            refusal = await edge.traverse(ctx, vhost.cluster, vhost.name, app, f"rtmp://{host or '127.0.0.1'}/{app}",
                                          f"{self.ip} ({cid})", play=play)
            if self.closed:
                return True
            if refusal is not None:
                self.refuse(refusal, f"flv play {path}")
                return True
        if hooks.wants(ctx, vhost.name, "on_play"):
            referer = next((v.decode("latin-1") for k, v in req.headers if k == b"referer"), "")
            hooked = HookRequest(cid, self.ip, vhost.name, app, tc_url, stream,
                                 tuple(query.items()), referer)
            why = await hooks.decide(ctx, "on_play", hooked, log)
            if self.closed:
                return True
            if why is not None:
                self.refuse(why, f"flv play {path}")
                return True
        headers = [(b"Server", SERVER), (b"Content-Type", b"video/x-flv"), (b"Cache-Control", b"no-cache"),
                   (b"Connection", b"close")]
        # an HTTP/1.1 client gets each write as a chunk; an HTTP/1.0 one reads until we close
        chunked = req.http_version == b"1.1"
        if chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        if self._cors():
            headers += CORS
        head = self._send(h11.Response(status_code=200, headers=headers))
        assert self.transport is not None
        if self.head_request:  # what a GET would get, without the stream
            self.transport.write(head + self._send(h11.EndOfMessage()))
            if hooked is not None:
                hooks.notify(ctx, "on_stop", hooked, log)
            return True
        self.transport.write(head)
        self.player = FlvPlayer(ctx, self.transport, vhost, app, stream, self.ip, tc_url,
                                chunked, len(head), cid, hooked, query)
        self.transport.resume_reading()  # notice the client leaving; its bytes are ignored
        self.player.start()
        log.log(srvlog.TRACE, "%s flv-play %s start", self.peer, self.player.key,
                extra=srvlog.event("play", cid=self.player.cid, client=self.peer, stream=self.player.key))
        return True
