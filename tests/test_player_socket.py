"""Player sockets as the kernel sees them: SRS's vhost `tcp_nodelay` on RTMP and HTTP-FLV players.

The option is read from the worker's own socket (a copy of its file descriptor taken with
pidfd_getfd), for the server side of each player's connection."""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Any

import psutil

from tests.conftest import Clients, player, wait_for, worker_procs
from tests.test_http_server import api

SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 alike

BODY = """
vhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }
vhost nodelay.test { tcp_nodelay on; http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }
"""


def server_socket(pid: int, client_port: int) -> socket.socket:
    """A duplicate of the socket process `pid` holds for the TCP peer at local port `client_port`."""
    conns = [c for c in psutil.Process(pid).net_connections(kind="tcp")
             if c.raddr and c.raddr.port == client_port]
    assert conns, f"worker {pid} has no connection from port {client_port}"
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, conns[0].fd, 0)
        assert fd >= 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(pidfd)
    return socket.socket(fileno=fd)


def client_port(proc: Any, server_port: int) -> int | None:
    """The local port of `proc`'s established connection to `server_port`, once it has one."""
    try:
        conns = psutil.Process(proc.pid).net_connections(kind="tcp")
    except psutil.Error:
        return None
    ports = [c.laddr.port for c in conns if c.raddr and c.raddr.port == server_port and c.status == "ESTABLISHED"]
    return ports[0] if ports else None


def nodelay(worker: int, proc: Any, server_port: int) -> int:
    port = wait_for(lambda: client_port(proc, server_port), timeout=20)
    with server_socket(worker, port) as s:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_player_sockets_follow_the_vhost_tcp_nodelay(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(BODY, workers=1, http=True)
    http = srv.http_port
    clients.publish(f"{srv.url}/live/s")
    clients.publish(f"{srv.url}/live?vhost=nodelay.test/s")
    srv.wait_log("publish start", count=2, timeout=20)
    (worker,) = [p.pid for p in worker_procs(srv.master_pid).values()]
    rtmp_off = player(clients, f"{srv.url}/live/s")
    rtmp_on = player(clients, f"{srv.url}/live?vhost=nodelay.test/s")
    flv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i"]
    flv_off = clients.spawn([*flv, f"http://127.0.0.1:{http}/live/s.flv", "-c", "copy", "-f", "null", "-"])
    flv_on = clients.spawn([*flv, f"http://127.0.0.1:{http}/live/s.flv?vhost=nodelay.test",
                            "-c", "copy", "-f", "null", "-"])
    wait_for(lambda: sum(c["type"] in ("rtmp-play", "flv-play") for c in api(srv, "/api/v1/clients")["clients"]) == 4,
             timeout=20)
    # SRS's default (and nginx-rtmp's behaviour): Nagle stays on for players
    assert nodelay(worker, rtmp_off, srv.port) == 0
    assert nodelay(worker, flv_off, http) == 0
    # `tcp_nodelay on`: each write goes out at once
    assert nodelay(worker, rtmp_on, srv.port) != 0
    assert nodelay(worker, flv_on, http) != 0
