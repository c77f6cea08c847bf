"""srv behind a real HAProxy (Debian's) in TCP mode, as docs/haproxy.md configures it.

- `send-proxy` and `send-proxy-v2`: a client connecting from 127.0.0.7 is 127.0.0.7 in
  /api/v1/clients and in the log, over RTMP and HTTP-FLV; HAProxy's own health checks (a LOCAL
  header with send-proxy-v2, its own address with send-proxy) keep the server up; HAProxy from
  an address srv does not trust is refused; `security` deny rules for 127.0.0.7 refuse that client
  (RTMP publish, HTTP-FLV play) and not its neighbour; http_hooks bodies carry 127.0.0.7.
- A graceful stop (SIGQUIT) of one of two backends: `/ready` turns 503, HAProxy's
  `option httpchk` takes the backend out, and new clients land on the other one while the
  stopping one still accepts (grace_start_wait); its connected player is not cut before
  grace_final_wait.
HAProxy runs from a generated config in the test's tmp dir, on free ports, in its own process
group, and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Clients, Server, free_port, haproxy_stat, spawn_in_group, stop_group, wait_for
from tests.hookserver import HookServer
from tests.rtmp_tools import RtmpTestClient


class Backend:
    """One srv: a plain RTMP port (publishers), a PROXY-protocol RTMP port and a PROXY-protocol
    HTTP server (for HAProxy), the API on its own plain port (health checks)."""

    def __init__(self, start: Callable[..., Server], name: str, trusted: str = "127.0.0.1",
                 settings: dict[str, str] | None = None, vhost: str = "") -> None:
        self.direct, self.rtmp, self.http, self.api = free_port(), free_port(), free_port(), free_port()
        body = (f"http_api {{ enabled on; listen 127.0.0.1:{self.api}; }}\n"
                f"http_server {{ enabled on; listen 127.0.0.1:{self.http} proxy_protocol; }}\n"
                f"vhost __defaultVhost__ {{ http_remux {{ enabled on; }} {vhost} }}\n")
        self.srv = start(body, workers=1, name=name, settings={
            "listen": f"127.0.0.1:{self.direct} 127.0.0.1:{self.rtmp} proxy_protocol",
            "proxy_protocol_trusted": trusted, **(settings or {})})

    def clients(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.api}/api/v1/clients?count=100"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["clients"]  # type: ignore[no-any-return]

    def ips(self, kind: str) -> list[str]:
        return sorted(c["ip"] for c in self.clients() if c["type"] == kind)


class HAProxy:
    """haproxy -db with `config`, in its own process group; `stat()` reads its stats socket."""

    def __init__(self, tmp: Path, config: str) -> None:
        self.dir = tmp / "haproxy"
        self.dir.mkdir(exist_ok=True)
        self.sock = self.dir / "stats.sock"
        cfg = self.dir / "haproxy.cfg"
        cfg.write_text(f"global\n    stats socket {self.sock} mode 600 level admin\n    maxconn 200\n"
                       "defaults\n    mode tcp\n    timeout connect 2s\n"
                       "    timeout client 60s\n    timeout server 60s\n    timeout check 2s\n" + config)
        subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], check=True, timeout=20)
        self.proc = spawn_in_group(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        wait_for(self.sock.exists, 10, what="haproxy's stats socket")

    def stat(self) -> dict[tuple[str, str], str]:
        """`(backend, server) -> status` (UP, DOWN, ...) from `show stat`."""
        return haproxy_stat(self.sock)

    def wait_status(self, backend: str, server: str, status: str, timeout: float = 10) -> None:
        wait_for(lambda: self.stat().get((backend, server), "").startswith(status), timeout, interval=0.05,
                 what=f"haproxy {backend}/{server} {status} (now {self.stat()})")

    def close(self) -> None:
        stop_group(self.proc.pid)
        self.proc.wait(5)


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[str], HAProxy]]:
    started: list[HAProxy] = []

    def start(config: str) -> HAProxy:
        h = HAProxy(tmp_path, config)
        started.append(h)
        return h

    yield start
    for h in started:
        h.close()


def flv_get(port: int, path: str, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_clients_through_haproxy_keep_their_address(srs_server: Any, haproxy: Any, send_proxy: str) -> None:
    b = Backend(srs_server, "media01")
    f_rtmp, f_http, f_untrusted = free_port(), free_port(), free_port()
    h = haproxy(f"frontend ft_rtmp\n    bind 127.0.0.1:{f_rtmp}\n    default_backend bk_rtmp\n"
                f"frontend ft_http\n    bind 127.0.0.1:{f_http}\n    default_backend bk_http\n"
                f"frontend ft_untrusted\n    bind 127.0.0.1:{f_untrusted}\n    default_backend bk_untrusted\n"
                "backend bk_rtmp\n    balance roundrobin\n"
                f"    server media01 127.0.0.1:{b.rtmp} {send_proxy} check inter 300 fall 1 rise 1\n"
                "backend bk_http\n"
                f"    server media01 127.0.0.1:{b.http} {send_proxy} check inter 300 fall 1 rise 1\n"
                # the same srv, reached from an address it does not trust
                "backend bk_untrusted\n"
                f"    server media01 127.0.0.1:{b.rtmp} {send_proxy} source 127.0.0.3\n")
    # HAProxy's health checks go through the PROXY-protocol listeners (LOCAL / UNKNOWN header)
    h.wait_status("bk_rtmp", "media01", "UP")
    h.wait_status("bk_http", "media01", "UP")
    # send-proxy-v2 checks send LOCAL; send-proxy ones name HAProxy itself as the client
    # (most checks are a connect and a reset before the header is read: one whole one is enough)
    b.srv.wait_log("client the peer itself (LOCAL)" if send_proxy == "send-proxy-v2" else "client 127.0.0.1:",
                   timeout=30)

    async def scenario() -> None:
        publisher = RtmpTestClient(f_rtmp, source="127.0.0.7")
        await publisher.open()
        assert (await publisher.publish("s")).code == "NetStream.Publish.Start"
        try:
            assert wait_for(lambda: b.ips("fmle-publish"), 10, what="the publisher") == ["127.0.0.7"]
            player = flv_get(f_http, "/live/s.flv", "127.0.0.7")
            try:
                wait_for(lambda: b.ips("flv-play") == ["127.0.0.7"], 10, what="the HTTP-FLV player as 127.0.0.7")
            finally:
                player.close()
            # HAProxy from 127.0.0.3, which srv does not trust: refused, the client is cut
            refused = RtmpTestClient(f_untrusted, source="127.0.0.7")
            with pytest.raises((ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError)):
                await refused.open()
                await refused.close()
        finally:
            await publisher.close()

    asyncio.run(scenario())
    b.srv.wait_log("127.0.0.3:")
    log = b.srv.log_text().splitlines()
    assert any("127.0.0.7:" in ln and "accepted" in ln for ln in log)
    assert any("127.0.0.7:" in ln and "flv-play" in ln for ln in log)
    assert all("not in proxy_protocol_trusted" in ln for ln in log if "127.0.0.3:" in ln)
    # every refusal in the log is the untrusted one
    assert all("127.0.0.3:" in ln for ln in log if "refused" in ln)


def test_security_rules_apply_to_the_client_behind_haproxy(srs_server: Any, haproxy: Any) -> None:
    """`deny publish/play 127.0.0.7` refuses the client HAProxy relays from 127.0.0.7 (its socket
    peer is HAProxy, 127.0.0.1) and admits the one from 127.0.0.8."""
    b = Backend(srs_server, "media01", vhost="security { enabled on; deny publish 127.0.0.7; "
                                             "deny play 127.0.0.7; allow publish all; allow play all; }")
    f_rtmp, f_http = free_port(), free_port()
    haproxy(f"frontend ft_rtmp\n    bind 127.0.0.1:{f_rtmp}\n    default_backend bk_rtmp\n"
            f"frontend ft_http\n    bind 127.0.0.1:{f_http}\n    default_backend bk_http\n"
            f"backend bk_rtmp\n    server media01 127.0.0.1:{b.rtmp} send-proxy-v2\n"
            f"backend bk_http\n    server media01 127.0.0.1:{b.http} send-proxy\n")

    async def publish_from(source: str) -> str:
        c = RtmpTestClient(f_rtmp, source=source)
        await c.open()
        try:
            return str((await c.publish("s")).code)
        finally:
            await c.close()

    def flv_status(source: str) -> bytes:
        sock = flv_get(f_http, "/live/s.flv", source)
        try:
            return sock.recv(64).split(b"\r\n", 1)[0]
        finally:
            sock.close()

    async def scenario() -> None:
        assert await publish_from("127.0.0.7") == "NetStream.Publish.Unauthorized"
        keep = RtmpTestClient(f_rtmp, source="127.0.0.8")
        await keep.open()
        assert (await keep.publish("s")).code == "NetStream.Publish.Start"
        try:
            assert b" 403 " in await asyncio.to_thread(flv_status, "127.0.0.7")
            assert b" 200 " in await asyncio.to_thread(flv_status, "127.0.0.8")
        finally:
            await keep.close()

    asyncio.run(scenario())
    refusals = [ln for ln in b.srv.log_text().splitlines() if "127.0.0.7:" in ln and "denied" in ln.lower()]
    assert refusals, "no refusal naming 127.0.0.7 in the log"


def test_hooks_are_told_the_client_behind_haproxy(srs_server: Any, haproxy: Any) -> None:
    """on_connect, on_publish and on_play (HTTP-FLV) bodies carry 127.0.0.7, not HAProxy's address."""
    hooks = HookServer()
    try:
        b = Backend(srs_server, "media01", vhost=f"http_hooks {{ enabled on; on_connect {hooks.url('c')}; "
                                                 f"on_publish {hooks.url('p')}; on_play {hooks.url('y')}; }}")
        f_rtmp, f_http = free_port(), free_port()
        haproxy(f"frontend ft_rtmp\n    bind 127.0.0.1:{f_rtmp}\n    default_backend bk_rtmp\n"
                f"frontend ft_http\n    bind 127.0.0.1:{f_http}\n    default_backend bk_http\n"
                f"backend bk_rtmp\n    server media01 127.0.0.1:{b.rtmp} send-proxy-v2\n"
                f"backend bk_http\n    server media01 127.0.0.1:{b.http} send-proxy-v2\n")

        async def scenario() -> None:
            c = RtmpTestClient(f_rtmp, source="127.0.0.7")
            await c.open()
            assert (await c.publish("s")).code == "NetStream.Publish.Start"
            try:
                sock = await asyncio.to_thread(flv_get, f_http, "/live/s.flv", "127.0.0.7")
                try:
                    await asyncio.to_thread(wait_for, lambda: hooks.bodies("on_play"), 10, 0.05, "on_play")
                finally:
                    sock.close()
            finally:
                await c.close()

        asyncio.run(scenario())
        seen = {(body["action"], body["ip"]) for body in hooks.bodies()}
        assert {("on_connect", "127.0.0.7"), ("on_publish", "127.0.0.7"), ("on_play", "127.0.0.7")} <= seen
        assert all(ip == "127.0.0.7" for _, ip in seen), seen
    finally:
        hooks.close()


def test_graceful_stop_moves_new_clients_to_the_other_backend(srs_server: Any, haproxy: Any,
                                                             clients: Clients) -> None:
    grace = {"grace_start_wait": "4000", "grace_final_wait": "6000"}
    a = Backend(srs_server, "media01", settings=grace)
    b = Backend(srs_server, "media02", settings=grace)
    front = free_port()
    h = haproxy(f"frontend ft_rtmp\n    bind 127.0.0.1:{front}\n    default_backend bk_rtmp\n"
                "backend bk_rtmp\n    balance roundrobin\n    option httpchk GET /ready\n"
                f"    server media01 127.0.0.1:{a.rtmp} send-proxy-v2 check port {a.api} inter 200 fall 1 rise 1\n"
                f"    server media02 127.0.0.1:{b.rtmp} send-proxy-v2 check port {b.api} inter 200 fall 1 rise 1\n")
    h.wait_status("bk_rtmp", "media01", "UP")
    h.wait_status("bk_rtmp", "media02", "UP")
    clients.publish(f"rtmp://127.0.0.1:{a.direct}/live/s")
    clients.publish(f"rtmp://127.0.0.1:{b.direct}/live/s")
    wait_for(lambda: a.ips("fmle-publish") and b.ips("fmle-publish"), 20, what="both publishers")

    async def scenario() -> None:
        # players through HAProxy, from 127.0.0.7, until one plays on media01
        players = []
        for _ in range(4):
            p = RtmpTestClient(front, source="127.0.0.7")
            await p.open()
            await p.play("s")
            players.append(p)
            if a.ips("rtmp-play"):
                break
        assert a.ips("rtmp-play") == ["127.0.0.7"], "roundrobin never chose media01"
        on_a = players[-1]
        quit_at = time.monotonic()
        a.srv.send_signal(signal.SIGQUIT)
        # /ready answers 503 at once: HAProxy takes media01 out ...
        await asyncio.to_thread(h.wait_status, "bk_rtmp", "media01", "DOWN", 3)
        # ... while media01 still accepts (grace_start_wait): new clients go elsewhere by choice
        probe = RtmpTestClient(a.direct)
        await probe.open()
        await probe.close()
        assert time.monotonic() - quit_at < 4.0, "too slow to tell: the listeners may be closed already"
        newcomers = []
        for _ in range(6):
            c = RtmpTestClient(front, source="127.0.0.8")
            await c.open()
            newcomers.append(c)
        assert b.ips("rtmp-connect").count("127.0.0.8") == 6
        assert "127.0.0.8" not in a.ips("rtmp-connect")
        # the player on media01 plays on past the close of its listeners (grace_start_wait),
        # into grace_final_wait
        await asyncio.sleep(max(0.0, quit_at + 5.0 - time.monotonic()))
        before = on_a.media_bytes
        await asyncio.sleep(1.0)
        assert not on_a.closed.is_set()
        assert on_a.media_bytes > before, "the player on the stopping backend stopped receiving"
        for c in [*newcomers, *players]:
            await c.close()

    asyncio.run(scenario())
