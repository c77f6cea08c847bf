"""Edge (SRS `cluster { mode remote; }`): real servers on their own loopback addresses.

Origins listen on 127.0.0.2 and 127.0.0.3, the edge on 127.0.0.1, so "a connection at the
origin" is what the origin's /api/v1/clients lists. The 50 players are one light process
(scripts/loadclient.py: one socket per player, counting bytes); one ffmpeg decodes beside them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Clients, Server, ffprobe, free_port, wait_for
from rtmp_tools import RtmpTestClient, run

from srv.rtmp import events as ev

ROOT = Path(__file__).resolve().parent.parent
LOADCLIENT = ROOT / "scripts" / "loadclient.py"


def api(server: Server, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.api_port}{path}", timeout=5) as r:
        return json.loads(r.read())


def clients_of(server: Server, kind: str) -> list[dict[str, Any]]:
    return [c for c in api(server, "/api/v1/clients?count=1000")["clients"] if c["type"] == kind]


def origin(srs_server: Callable[..., Server], name: str, ip: str, body: str = "vhost __defaultVhost__ { }\n",
           workers: int = 1) -> Server:
    port = free_port()
    s: Server = srs_server(body, workers=workers, name=name, http=True, settings={"listen": f"{ip}:{port}"})
    s.port = port
    s.ip = ip  # type: ignore[attr-defined]
    return s


def edge_conf(*origins: Server, extra: str = "") -> str:
    listed = " ".join(f"{o.ip}:{o.port}" for o in origins)  # type: ignore[attr-defined]
    return f"vhost __defaultVhost__ {{ cluster {{ mode remote; origin {listed}; {extra} }} }}\n"


def rtmp(server: Server, path: str) -> str:
    return f"rtmp://{getattr(server, 'ip', '127.0.0.1')}:{server.port}/{path}"


class Watch:
    """Lines of a child's stdout, read in a thread (the last one, and how many)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    def last(self) -> dict[str, Any]:
        return json.loads(self.lines[-1]) if self.lines else {"alive": 0, "bytes": []}


def kill_server(server: Server) -> None:
    """kill -9 the whole server (master and workers): its sockets close at once."""
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(5)


def test_fifty_players_on_a_two_worker_edge_make_one_origin_connection_and_survive_its_death(
        srs_server: Callable[..., Server], clients: Clients) -> None:
    # origin B has the publisher and forwards to origin A; the edge lists A first
    a = origin(srs_server, "origin-a", "127.0.0.2")
    b = origin(srs_server, "origin-b", "127.0.0.3",
               body=f"vhost __defaultVhost__ {{ forward {{ enabled on; destination {a.ip}:{a.port}; }} }}\n")
    edge = srs_server(edge_conf(a, b), workers=2, name="edge", http=True)
    clients.publish(rtmp(b, "live/s"))
    wait_for(lambda: clients_of(a, "fmle-publish"), 20, what="the stream forwarded to origin A")

    players = clients.spawn([sys.executable, str(LOADCLIENT), f"{edge.url}/live/s", "-n", "50", "-t", "120",
                             "--report-every", "0.5"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    watch = Watch(players)
    wait_for(lambda: watch.last()["alive"] == 50, 40, what="50 players playing")
    decoder = clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "20000000",
                             "-i", f"{edge.url}/live/s", "-map", "0:v", "-f", "framemd5", "-"])
    frames = Watch(decoder)
    wait_for(lambda: len(frames.lines) > 30, 20, what="ffmpeg decoding from the edge")

    # both workers have players, yet origin A sees ONE play, from the edge, and B none
    per_worker = {c["id"].split("-", 1)[0] for c in clients_of(edge, "rtmp-play")}
    assert len(per_worker) == 2, per_worker
    wait_for(lambda: len(clients_of(a, "rtmp-play")) == 1, 10, what="one pull at origin A")
    time.sleep(1)
    assert len(clients_of(a, "rtmp-play")) == 1
    assert clients_of(b, "rtmp-play") == []

    before = watch.last()["bytes"]
    decoded = len(frames.lines)
    kill_server(a)
    killed = time.monotonic()

    def all_resumed() -> bool:
        now = watch.last()
        return now["alive"] == 50 and all(x > y for x, y in zip(now["bytes"], before, strict=True))

    # every player goes on, from origin B, within 5 s (media it had before the kill was
    # already counted, so new bytes come from B)
    wait_for(all_resumed, 5, what="all 50 players receiving from origin B")
    assert time.monotonic() - killed < 5
    wait_for(lambda: len(clients_of(b, "rtmp-play")) == 1, 5, what="the edge's pull at origin B")
    wait_for(lambda: len(frames.lines) > decoded + 50, 15, what="ffmpeg decoding on after the switch")
    assert decoder.poll() is None
    assert len(clients_of(b, "rtmp-play")) == 1  # still one connection for the host

    # the last player leaves: the edge's pull at the origin closes
    players.terminate()
    decoder.terminate()
    wait_for(lambda: clients_of(b, "rtmp-play") == [], 15, what="the upstream closed at origin B")
    assert "stopped pulling from" in edge.log_text()


def test_publish_on_the_edge_reaches_the_origin(srs_server: Callable[..., Server], clients: Clients) -> None:
    a = origin(srs_server, "origin-a", "127.0.0.2")
    edge = srs_server(edge_conf(a), workers=2, name="edge", http=True)
    clients.publish(f"{edge.url}/live/up")
    wait_for(lambda: clients_of(a, "fmle-publish"), 20, what="the edge's push at the origin")
    probe = ffprobe(rtmp(a, "live/up"))
    assert {s["codec_type"] for s in probe["streams"]} == {"video", "audio"}


def test_token_traverse_refusal_by_the_origin_refuses_the_client(
        srs_server: Callable[..., Server], clients: Clients) -> None:
    from hookserver import HookServer

    hooks = HookServer()
    try:
        a = origin(srs_server, "origin-a", "127.0.0.2", body=(
            f"vhost __defaultVhost__ {{ http_hooks {{ enabled on; on_connect {hooks.url('c')}; }} }}\n"))
        edge = srs_server(edge_conf(a, extra="token_traverse on;"), workers=1, name="edge", http=True)
        clients.publish(rtmp(a, "live/s"))
        # the origin's hook refuses the app "v_code1" (tests/hookserver.py): so does the edge
        refused = run(_refused_connect(edge.port, "v_code1"))
        assert refused.code == "NetConnection.Connect.Rejected", refused
        assert "origin" in refused.description and "refused" in refused.description, refused
        # an app the origin accepts plays; the origin was asked with the client's own tcUrl
        run(_accepted_play(edge.port, "live"))
        asked = [b.get("tcUrl", "") for b in hooks.bodies("on_connect")]
        assert any(u.startswith(f"rtmp://127.0.0.1:{edge.port}/v_code1") and "token=t1" in u for u in asked), asked
        assert "token traverse" in edge.log_text()
    finally:
        hooks.close()


async def _refused_connect(port: int, app: str) -> ev.ConnectFailed:
    c = RtmpTestClient(port, app=app, tc_url=f"rtmp://127.0.0.1:{port}/{app}?token=t1")
    c.reader, c.writer = await asyncio.open_connection("127.0.0.1", port)
    c.session.start()
    c._flush()
    c.task = asyncio.ensure_future(c._pump())
    e: ev.ConnectFailed = await c.expect(ev.ConnectFailed, timeout=15)
    await c.close()
    return e


async def _accepted_play(port: int, app: str) -> None:
    c = RtmpTestClient(port, app=app, tc_url=f"rtmp://127.0.0.1:{port}/{app}?token=t1")
    await c.open()
    await c.play("s")
    await c.expect(ev.MediaMessage, timeout=15)
    await c.close()


def test_reloading_the_origin_list_moves_the_pull_and_keeps_the_players(
        srs_server: Callable[..., Server], clients: Clients) -> None:
    a = origin(srs_server, "origin-a", "127.0.0.2")
    b = origin(srs_server, "origin-b", "127.0.0.3")
    edge = srs_server(edge_conf(a), workers=2, name="edge", http=True)
    clients.publish(rtmp(a, "live/s"))
    clients.publish(rtmp(b, "live/s"))
    players = clients.spawn([sys.executable, str(LOADCLIENT), f"{edge.url}/live/s", "-n", "10", "-t", "120",
                             "--report-every", "0.5"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    watch = Watch(players)
    wait_for(lambda: watch.last()["alive"] == 10, 30, what="10 players playing")
    wait_for(lambda: len(clients_of(a, "rtmp-play")) == 1, 10, what="the pull at origin A")
    ids = {c["id"] for c in clients_of(edge, "rtmp-play")}

    edge.write_conf(edge_conf(b))
    edge.send_signal(signal.SIGHUP)
    wait_for(lambda: len(clients_of(b, "rtmp-play")) == 1, 10, what="the pull moved to origin B")
    wait_for(lambda: clients_of(a, "rtmp-play") == [], 10, what="origin A left")
    before = watch.last()["bytes"]
    wait_for(lambda: all(x > y for x, y in zip(watch.last()["bytes"], before, strict=True)), 10,
             what="players receiving from origin B")
    assert watch.last()["alive"] == 10
    assert {c["id"] for c in clients_of(edge, "rtmp-play")} == ids  # the same connections
