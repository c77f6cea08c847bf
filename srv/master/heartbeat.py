"""SRS's ``heartbeat { }``, sent by the master: who this server is, POSTed to a URL on an interval.

An SRS 7 origin-cluster proxy (or srv's own ``proxy { }``) learns its origins this way: the body
is SRS's ``{device_id, ip, server, service, pid}`` plus, with ``ports on``, the listen endpoints
``rtmp``, ``http`` and ``api`` (``"1935"`` for every address, ``"tcp://ip:port"`` for one). The
answer (``{"code": 0, "pid": "..."}``) is checked; a failure is logged once when it starts and
once when it ends, never on every beat.

The master runs no event loop (``arbiter``), so the POST is a small non-blocking exchange driven
by the master's selector: ``tick`` starts one when due, ``on_ready`` moves it on, and a POST
that takes longer than ``POST_TIMEOUT`` (or the interval) is abandoned. Only the master sends,
whatever the worker count. Host names are resolved with a blocking ``getaddrinfo`` once per
beat; use an address (or localhost) in ``url`` where that matters.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import h11
import psutil  # type: ignore[import-untyped]

from srv import __version__
from srv import log as srvlog
from srv.conf.model import Endpoint, ServerConfig

log = logging.getLogger("srv.heartbeat")

POST_TIMEOUT = 5.0
MAX_ANSWER = 64 * 1024


def endpoint_text(ep: Endpoint) -> str:
    """SRS's listen endpoint spelling: the port alone for every address, else tcp://ip:port."""
    if ep.host in ("0.0.0.0", "::", ""):
        return str(ep.port)
    return f"tcp://{ep}"


def report_ip(config: ServerConfig, environ: dict[str, str]) -> str:
    """The address a proxy should dial: SRS_DEVICE_IP, else the RTMP listen address when it is
    a single one, else the first non-loopback IPv4 of this machine, else 127.0.0.1."""
    if environ.get("SRS_DEVICE_IP"):
        return environ["SRS_DEVICE_IP"]
    for ep in config.listen:
        if ep.host not in ("0.0.0.0", "::", ""):
            return ep.host
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return "127.0.0.1"


def heartbeat_body(config: ServerConfig, ip: str, server_id: str, service_id: str, pid: int) -> dict[str, Any]:
    """The JSON SRS's SrsHttpHeartbeat POSTs, for ``config``."""
    hb = config.heartbeat
    body: dict[str, Any] = {
        "device_id": hb.device_id, "ip": ip, "server": server_id, "service": service_id,
        "pid": str(pid), "version": f"srv/{__version__}",
    }
    if hb.ports:
        body["rtmp"] = [endpoint_text(ep) for ep in config.listen]
        if config.http_server.enabled:
            body["http"] = [endpoint_text(config.http_server.listen)]
        if config.http_api.enabled:
            body["api"] = [endpoint_text(config.http_api.listen)]
    return body


class HeartbeatSender:
    """One POST at a time to ``heartbeat.url``, driven by the master's selector."""

    def __init__(self, sel: selectors.BaseSelector, config: ServerConfig, environ: dict[str, str]) -> None:
        self.sel = sel
        self.environ = environ
        self.service_id = uuid.uuid4().hex[:8]  # SRS: changes on every start
        self.server_id = f"{socket.gethostname()}-{os.getpid()}"  # as the workers' server_id
        self.sock: socket.socket | None = None
        self.started = 0.0
        self.next_due = 0.0
        self.failing = ""  # why the last POST failed ("" when it worked)
        self.answered = 0  # POSTs the peer accepted
        self.peer_pid = ""
        self.configure(config)

    def configure(self, config: ServerConfig) -> None:
        self.config = config
        if self.sock is not None and not config.heartbeat.enabled:
            self._close()

    def tick(self, now: float) -> None:
        hb = self.config.heartbeat
        if self.sock is not None and now - self.started > min(POST_TIMEOUT, max(hb.interval, 1.0)):
            self._failed(f"no answer within {now - self.started:.1f}s")
        if not hb.enabled or self.sock is not None or now < self.next_due:
            return
        self.next_due = now + hb.interval
        self._start(now)

    def _start(self, now: float) -> None:
        url = urlsplit(self.config.heartbeat.url)
        if url.scheme != "http" or not url.hostname:
            self._failed("only http:// URLs are supported")
            return
        port = url.port or 80
        body = json.dumps(heartbeat_body(self.config, report_ip(self.config, self.environ), self.server_id,
                                         self.service_id, os.getpid())).encode()
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.conn = h11.Connection(h11.CLIENT)
        headers = [("Host", url.netloc.rsplit("@", 1)[-1]), ("Content-Type", "application/json"),
                   ("Content-Length", str(len(body))), ("Connection", "close"),
                   ("User-Agent", f"srv/{__version__}")]
        self.request = b"".join((self.conn.send(h11.Request(method="POST", target=target, headers=headers)) or b"",
                                 self.conn.send(h11.Data(data=body)) or b"",
                                 self.conn.send(h11.EndOfMessage()) or b""))
        self.status, self.body = 0, bytearray()
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(url.hostname, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as e:
            self._failed(f"cannot resolve {url.hostname}: {e}")
            return
        sock.setblocking(False)
        self.sock, self.started = sock, now
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            self._failed(f"connect: {os.strerror(err)}")
            return
        self.sel.register(sock, selectors.EVENT_WRITE, self)

    def on_ready(self, mask: int) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            if mask & selectors.EVENT_WRITE:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._failed(f"connect: {os.strerror(err)}")
                    return
                sock.sendall(self.request)  # a few hundred bytes: the socket buffer takes them
                self.sel.modify(sock, selectors.EVENT_READ, self)
                return
            data = sock.recv(65536)
        except OSError as e:
            self._failed(str(e))
            return
        self.conn.receive_data(data)
        try:
            while True:
                event = self.conn.next_event()
                if isinstance(event, h11.Response):
                    self.status = event.status_code
                elif isinstance(event, h11.Data):
                    self.body += event.data
                    if len(self.body) > MAX_ANSWER:
                        self._failed(f"answer larger than {MAX_ANSWER} bytes")
                        return
                elif isinstance(event, h11.EndOfMessage):
                    self._done(self.status, self.body)
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    self._failed("closed before a whole answer")
                    return
                else:  # NEED_DATA (or PAUSED, not expected)
                    return
        except h11.RemoteProtocolError as e:
            self._failed(f"bad HTTP answer: {e}")

    def _done(self, status: int, body: bytearray) -> None:
        if status != 200:
            self._failed(f"HTTP status {status or 'missing'}")
            return
        try:
            answer = json.loads(body)
            code = answer.get("code") if isinstance(answer, dict) else None
        except ValueError:
            code, answer = None, None
        if code != 0:
            self._failed(f"answer is not {{\"code\": 0}}: {bytes(body[:200])!r}")
            return
        self._close()
        self.answered += 1
        pid = str(answer.get("pid", ""))
        if self.failing or self.answered == 1 or pid != self.peer_pid:
            log.log(srvlog.TRACE, "heartbeat: %s accepted (peer pid %s)%s", self.config.heartbeat.url,
                    pid or "?", f" after failing: {self.failing}" if self.failing else "")
        self.failing, self.peer_pid = "", pid

    def _failed(self, why: str) -> None:
        self._close()
        if not self.failing:
            log.warning("heartbeat: POST to %s failed: %s (retrying every %gs)", self.config.heartbeat.url, why,
                        self.config.heartbeat.interval)
        self.failing = why

    def _close(self) -> None:
        if self.sock is not None:
            try:
                self.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None

    def close_in_child(self) -> None:
        """A forked worker drops its copy of a POST under way (the master owns it)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
