"""The origin-cluster proxy (proxy { }): real redis-server, real proxies and origins, real clients.

Origins register with SRS's heartbeat; proxies route each publish to one origin through an
atomic Redis claim and each player to the stream's owner; HTTP-FLV goes through the proxy's
HTTP port. Failures: a killed origin, Redis stopping and coming back, bad register bodies, a
client that stops mid-handshake, an origin that answers before the task that dialled it resumes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from conftest import (
    Clients,
    Server,
    codecs,
    ffprobe,
    free_port,
    keeps_growing,
    record_flv,
    spawn_in_group,
    stop_group,
    wait_for,
)
from rtmp_tools import RtmpTestClient

from srv.cluster import rtmp_relay
from srv.cluster.balancer import MemoryBalancer, Origin
from srv.cluster.router import Router
from srv.conf.model import ProxyConfig, ServerConfig
from srv.net.context import ConnectionContext
from srv.rtmp import events as ev

STREAM_TTL = 3


class Redis:
    """A redis-server of the test's own on a free loopback port, without persistence."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = spawn_in_group(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(self.dir)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG", 10, what="redis-server PING")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc.pid)
            self.proc.wait(5)
            self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, timeout=5)
        return out.stdout.decode().strip()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()


class Cluster:
    def __init__(self, start: Callable[..., Server], redis: Redis | None) -> None:
        self.start = start
        self.redis = redis
        self.proxies: list[Server] = []
        self.origins: list[Server] = []
        self.system_ports: list[int] = []

    def proxy(self, workers: int = 2, balancer: str = "redis") -> Server:
        port = free_port()
        redis_port = self.redis.port if self.redis else 6379
        body = (f"proxy {{ enabled on; system_api 127.0.0.1:{port}; load_balancer {balancer}; "
                f"redis_port {redis_port}; stream_ttl {STREAM_TTL}; server_ttl 4; play_wait 8; }}\n")
        s = self.start(body, workers=workers, name=f"proxy{len(self.proxies) + 1}", http=True)
        self.proxies.append(s)
        self.system_ports.append(port)
        return s

    def origin(self, via: int = 0) -> Server:
        n = len(self.origins) + 1
        url = f"http://127.0.0.1:{self.system_ports[via]}/api/v1/srs/register"
        body = (f"heartbeat {{ enabled on; interval 0.5; url {url}; device_id origin{n}; ports on; }}\n"
                "vhost __defaultVhost__ { http_remux { enabled on; } "
                "hls { enabled on; hls_fragment 1; hls_window 6; hls_path .; } }\n")  # files under the http dir
        s = self.start(body, workers=1, name=f"origin{n}", http=True)
        self.origins.append(s)
        return s

    def two_by_two(self) -> tuple[Server, Server]:
        """Two proxies and two origins (one heart-beating to each proxy), both registered."""
        a, b = self.proxy(), self.proxy()
        self.origin(via=0)
        self.origin(via=1)
        self.registered(2)
        return a, b

    def registered(self, count: int) -> None:
        """Wait until the proxies see `count` live origins (index members not yet expired, as
        `RedisBalancer.origins` reads them)."""
        assert self.redis is not None

        def live() -> int:
            assert self.redis is not None
            now_ms = str(int(time.time() * 1000))
            return len(self.redis.cli("ZRANGEBYSCORE", "srv:cluster:origins", now_ms, "+inf").split())

        wait_for(lambda: live() >= count, 15, what=f"{count} origins in redis")

    def owner(self, stream: str = "live/livestream") -> str:
        assert self.redis is not None
        return self.redis.cli("GET", f"srv:cluster:stream:__defaultVhost__/{stream}")

    def holder(self, stream: str = "livestream") -> list[Server]:
        """The origins whose API lists `stream` with a publisher."""
        found = []
        for o in self.origins:
            if o.proc is None or o.proc.poll() is not None:
                continue
            with urllib.request.urlopen(f"http://127.0.0.1:{o.api_port}/api/v1/streams/", timeout=5) as r:
                streams = json.load(r)["streams"]
            if any(s["name"] == stream and s["publish"]["active"] for s in streams):
                found.append(o)
        return found


@pytest.fixture
def cluster(srs_server: Callable[..., Server], redis: Redis) -> Cluster:
    return Cluster(srs_server, redis)


def server_id(origin: Server) -> str:
    return f"{socket.gethostname()}-{origin.master_pid}"


def test_publish_through_one_proxy_play_through_another_over_rtmp_and_flv(cluster: Cluster, clients: Clients) -> None:
    a, b = cluster.two_by_two()
    clients.publish(f"{a.url}/live/livestream")
    wait_for(lambda: cluster.holder(), 20, what="the stream on an origin")
    [owner] = cluster.holder()
    assert cluster.owner().startswith(server_id(owner) + "|")  # the key names the origin that has it
    probe = codecs(ffprobe(f"{b.url}/live/livestream"))
    assert probe["video"]["codec_name"] == "h264" and probe["audio"]["codec_name"] == "aac"
    flv = codecs(ffprobe(f"http://127.0.0.1:{b.http_port}/live/livestream.flv"))
    assert flv["video"]["codec_name"] == "h264"
    assert cluster.holder() == [owner]  # the players did not make a second copy anywhere
    b.wait_log("proxy: http")


def test_hls_through_a_proxy_comes_from_the_owning_origin(cluster: Cluster, clients: Clients) -> None:
    a, b = cluster.two_by_two()
    clients.publish(f"{a.url}/live/livestream")
    url = f"http://127.0.0.1:{b.http_port}/live/livestream.m3u8"

    def probe() -> dict[str, Any] | None:
        try:
            return codecs(ffprobe(url, timeout=10))
        except AssertionError:
            return None  # no playlist yet: the origin answers 404 until its first segment

    found = wait_for(probe, 40, interval=1, what="the playlist through proxy b")
    assert found["video"]["codec_name"] == "h264" and found["audio"]["codec_name"] == "aac"
    assert b.log_text().count("__defaultVhost__/live/livestream -> origin") >= 2  # playlist and segments
    [owner] = cluster.holder()
    assert cluster.owner().startswith(server_id(owner) + "|")


def test_two_publishers_through_two_proxies_exactly_one_wins(cluster: Cluster) -> None:
    a, b = cluster.two_by_two()

    async def race() -> list[str]:
        one, two = RtmpTestClient(a.port), RtmpTestClient(b.port)
        await asyncio.gather(one.open(), two.open())
        results = await asyncio.gather(one.publish("race"), two.publish("race"))
        await asyncio.gather(one.close(), two.close())
        return sorted(r.code for r in results)

    for _ in range(3):
        assert asyncio.run(race()) == ["NetStream.Publish.BadName", "NetStream.Publish.Start"]
        wait_for(lambda: cluster.owner("live/race") == "", STREAM_TTL + 5, what="the key released")
    assert "refused: stream already published" in a.log_text() + b.log_text()


def test_a_killed_origin_loses_its_streams_and_the_next_publish_lands_elsewhere(
        cluster: Cluster, clients: Clients) -> None:
    a, b = cluster.two_by_two()
    first = clients.publish(f"{a.url}/live/livestream")
    wait_for(lambda: cluster.holder(), 20, what="the stream on an origin")
    [dead] = cluster.holder()
    assert dead.proc is not None
    os.killpg(dead.proc.pid, signal.SIGKILL)
    dead.proc.wait(5)
    killed = time.monotonic()
    wait_for(lambda: not cluster.owner().startswith(server_id(dead)), STREAM_TTL + 2, what="the key gone")
    assert time.monotonic() - killed <= STREAM_TTL + 2
    first.wait(10)  # the proxy closed the publisher with its origin
    clients.publish(f"{a.url}/live/livestream")  # the publisher's reconnect
    wait_for(lambda: cluster.holder(), 20, what="the stream on the other origin")
    [alive] = cluster.holder()
    assert alive is not dead and cluster.owner().startswith(server_id(alive) + "|")
    for proxy in (a, b):
        assert codecs(ffprobe(f"{proxy.url}/live/livestream"))["video"]["codec_name"] == "h264"


def test_redis_down_keeps_running_streams_and_refuses_new_publishes_then_recovers(
        cluster: Cluster, clients: Clients, tmp_path: Path) -> None:
    a, b = cluster.proxy(), cluster.proxy(workers=1)  # b: one worker holds every mapping b learnt
    cluster.origin(via=0)
    cluster.origin(via=1)
    cluster.registered(2)
    clients.publish(f"{a.url}/live/livestream")
    wait_for(lambda: cluster.holder(), 20, what="the stream on an origin")
    recording = tmp_path / "play.flv"
    record_flv(clients, f"{b.url}/live/livestream", recording)
    wait_for(lambda: recording.exists() and recording.stat().st_size > 10000, 20, what="the player receiving")
    assert cluster.redis is not None
    cluster.redis.stop()

    async def publish(port: int, name: str) -> str:
        c = RtmpTestClient(port)
        await c.open()
        status = await c.publish(name)
        await c.close()
        return str(status.code)

    assert asyncio.run(publish(b.port, "other")) == "NetStream.Publish.Failed"
    b.wait_log("proxy: load balancer unreachable")
    b.wait_log("live/other refused: load balancer unreachable")
    assert keeps_growing(recording, 3)  # the running stream keeps flowing
    # a second player of the running stream finds it on the mapping its proxy already holds
    assert codecs(ffprobe(f"{b.url}/live/livestream"))["video"]["codec_name"] == "h264"
    cluster.redis.start()  # empty: everything registers again
    cluster.registered(2)
    wait_for(lambda: cluster.owner() != "", STREAM_TTL + 3, what="the running stream's key set again")
    assert asyncio.run(publish(b.port, "other")) == "NetStream.Publish.Start"
    assert keeps_growing(recording, 2)


def test_an_srs_shaped_register_from_a_non_srv_origin_is_accepted_and_used(
        cluster: Cluster, srs_server: Callable[..., Server], clients: Clients) -> None:
    a = cluster.proxy(workers=1)
    plain = srs_server("vhost __defaultVhost__ { }\n", workers=1, name="plain", http=True)  # no heartbeat
    body = {"device_id": "curl-origin", "ip": "127.0.0.1", "server": "vid-46p14mm", "service": "z2s3w865",
            "pid": "42583", "rtmp": [str(plain.port)], "http": [str(plain.http_port)],
            "api": [str(plain.api_port)], "srt": ["10082"], "rtc": ["udp://0.0.0.0:8001"]}
    answer = post(cluster.system_ports[0], json.dumps(body).encode())
    assert answer[0] == 200 and answer[1]["code"] == 0 and answer[1]["pid"] == str(a.master_pid)
    clients.publish(f"{a.url}/live/livestream")
    wait_for(lambda: "vid-46p14mm|" in cluster.owner(), 20, what="the stream claimed for the registered origin")
    assert codecs(ffprobe(f"{plain.url}/live/livestream"))["video"]["codec_name"] == "h264"


def post(port: int, data: bytes, path: str = "/api/v1/srs/register") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"ip": "127.0.0.1", "server": "s", "service": "x", "pid": "1"}', '"rtmp" lists no endpoint'),
    (b'{"ip": "127.0.0.1", "server": "s", "service": "x", "pid": "1", "rtmp": ["99999"]}', "bad endpoint"),
    (b'{"ip": "127.0.0.1", "server": "", "service": "x", "pid": "1", "rtmp": ["1935"]}', '"server" must be'),
    (b'{"ip": "a b", "server": "s", "service": "x", "pid": "1", "rtmp": ["1935"]}', '"ip" is not an address'),
], ids=["not-json", "array", "no-rtmp", "bad-port", "empty-server", "bad-ip"])
def test_malformed_register_bodies_get_400_and_a_log_line(cluster: Cluster, body: bytes, reason: str) -> None:
    a = cluster.proxy(workers=1)
    status, answer = post(cluster.system_ports[0], body)
    assert status == 400 and answer["code"] == 400 and reason in answer["error"]
    a.wait_log(f"proxy: register request from 127.0.0.1 refused: bad register body: {reason}")
    assert cluster.redis is not None and cluster.redis.cli("ZCARD", "srv:cluster:origins") == "0"


def test_a_client_that_stops_mid_handshake_is_closed_and_the_proxy_serves_on(
        cluster: Cluster, clients: Clients) -> None:
    a = cluster.proxy(workers=1)
    cluster.origin()
    cluster.registered(1)
    with socket.create_connection(("127.0.0.1", a.port)) as s:
        s.sendall(b"\x03" + bytes(700))  # half a C1, then gone
    with socket.create_connection(("127.0.0.1", a.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not RTMP at all
        assert s.recv(100) == b""
    a.wait_log("protocol error: bad handshake version 0x47 (not RTMP: HTTP?)")
    a.wait_log("closed: client closed")
    clients.publish(f"{a.url}/live/livestream")
    assert codecs(ffprobe(f"{a.url}/live/livestream"))["video"]["codec_name"] == "h264"


def test_one_proxy_with_the_memory_balancer(srs_server: Callable[..., Server], clients: Clients) -> None:
    c = Cluster(srs_server, None)
    a = c.proxy(workers=1, balancer="memory")
    c.origin()
    a.wait_log("proxy: origin origin1")
    clients.publish(f"{a.url}/live/livestream")
    assert codecs(ffprobe(f"{a.url}/live/livestream"))["video"]["codec_name"] == "h264"
    assert codecs(ffprobe(f"http://127.0.0.1:{a.http_port}/live/livestream.flv"))["audio"]["codec_name"] == "aac"


def test_an_origin_that_stops_mid_handshake_closes_only_that_client(cluster: Cluster, clients: Clients) -> None:
    a = cluster.proxy(workers=1)
    half = socket.create_server(("127.0.0.1", 0))  # an "origin" that sends half an S0S1 and hangs up

    def serve() -> None:
        conn, _ = half.accept()
        with conn:
            conn.recv(1537)
            conn.sendall(b"\x03" + bytes(600))

    threading.Thread(target=serve, daemon=True).start()
    body = {"ip": "127.0.0.1", "server": "half", "service": "s", "pid": "1", "rtmp": [str(half.getsockname()[1])]}
    assert post(cluster.system_ports[0], json.dumps(body).encode())[0] == 200

    async def publish() -> bool:
        c = RtmpTestClient(a.port)
        await c.open()
        c.session.create_stream()
        c._flush()
        await c.expect(ev.StreamCreated)
        c.session.publish("halfway")
        c._flush()
        await asyncio.wait_for(c.closed.wait(), 10)
        return True

    assert asyncio.run(publish())  # the proxy closed the client
    a.wait_log("live/halfway closed: origin half (127.0.0.1:")
    wait_for(lambda: cluster.owner("live/halfway") == "", STREAM_TTL + 2, what="the claim given back")
    half.close()


class LateLoop:
    """A proxy worker's loop as a busy (or descheduled) one runs it: the task that dialled an
    origin resumes only after the origin's answer has been handled (the link's callbacks come
    first). Everything else is the real loop's."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)

    async def create_connection(self, factory: Callable[[], asyncio.Protocol], host: str,
                                port: int) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        transport, link = await self.loop.create_connection(factory, host, port)
        deadline = time.monotonic() + 5
        while getattr(link, "phase", "") != "splice" and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return transport, link


def test_a_client_whose_origin_answered_before_the_dialling_task_resumed_is_not_timed_out(
        srs_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer timer counts from the dial, not from the dialling task's next step: armed
    after that step, it was never cancelled (the answer had come) and closed a playing client
    ANSWER_TIMEOUT later, as "the origin did not answer in time" (500 players joining a loaded
    proxy: 77-86 of them; a player in the Redis outage test)."""
    monkeypatch.setattr(rtmp_relay, "ANSWER_TIMEOUT", 3.0)
    origin = srs_server(workers=1, name="origin")
    relays: list[rtmp_relay.RtmpRelay] = []

    async def run() -> tuple[str, list[bool], bool]:
        config = ProxyConfig(load_balancer="memory")
        balancer = MemoryBalancer(config)
        await balancer.register(Origin("o1", "s1", "1", "127.0.0.1", "origin", (("127.0.0.1", origin.port),)))
        router = Router(balancer, config)
        ctx = cast(ConnectionContext, SimpleNamespace(
            config=ServerConfig("proxy.conf"), loop=LateLoop(asyncio.get_running_loop()), server_id="proxy",
            new_cid=lambda: f"1-{len(relays)}", register=relays.append, unregister=lambda c: None))
        proxy = await asyncio.get_running_loop().create_server(
            lambda: rtmp_relay.RtmpRelay(ctx, router), "127.0.0.1", 0)
        c = RtmpTestClient(proxy.sockets[0].getsockname()[1])
        await c.open()
        status = await c.publish("late")
        await asyncio.sleep(rtmp_relay.ANSWER_TIMEOUT + 1)
        closed, still_open = [r.closed for r in relays], not c.closed.is_set()
        await c.close()
        proxy.close()
        return str(status.code), closed, still_open

    code, closed, still_open = asyncio.run(run())
    assert code == "NetStream.Publish.Start"
    assert closed == [False] and still_open
    assert "live/late publish start" in origin.log_text()
