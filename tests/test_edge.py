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
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Clients, Server, ffprobe, free_port, wait_for
from rtmp_tools import RtmpTestClient, run

from srv.app.access import make_token
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


def stream_entry(server: Server, name: str = "s") -> dict[str, Any]:
    return next(s for s in api(server, "/api/v1/streams?count=100")["streams"] if s["name"] == name)


def edge_state(server: Server) -> tuple[str, str] | None:
    """(origin, state) of the edge's pull of live/s as /api/v1/streams shows it."""
    e = stream_entry(server)["edge"]
    return (e["origin"], e["state"]) if e else None


def metrics_text(server: Server) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.exporter_port}/metrics", timeout=5) as r:
        return r.read().decode()


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

    # the API and the exporter name the origin the edge pulls from
    wait_for(lambda: edge_state(edge) == (f"{a.ip}:{a.port}", "pulling"), 10, what="the edge object at origin A")
    assert stream_entry(edge)["edge"]["origins"] == [f"{a.ip}:{a.port}", f"{b.ip}:{b.port}"]
    switches = stream_entry(edge)["edge"]["switches"]

    before = watch.last()["bytes"]
    decoded = len(frames.lines)
    kill_server(a)
    killed = time.monotonic()
    killed_at = time.time()

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
    wait_for(lambda: edge_state(edge) == (f"{b.ip}:{b.port}", "pulling"), 5, what="the edge object at origin B")
    moved = stream_entry(edge)["edge"]
    assert moved["switches"] == switches + 1 and moved["reconnects"] >= 1, moved
    assert moved["since"] / 1000 >= killed_at - 1, moved
    text = metrics_text(edge)
    assert (f'srs_edge_state{{app="live",origin="{b.ip}:{b.port}",state="pulling",stream="s",'
            f'vhost="__defaultVhost__"}} 1.0') in text, text
    assert 'srs_edge_switches_total{app="live",stream="s",vhost="__defaultVhost__"} 1.0' in text

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


SECRET = "edge-test-secret"
SIGNED = f"vhost __defaultVhost__ {{ signed_url {{ enabled on; publish off; play on; key k1 {SECRET}; }} }}\n"


def test_the_edge_pull_shows_a_signed_origin_the_first_players_token(
        srs_server: Callable[..., Server], clients: Clients) -> None:
    a = origin(srs_server, "origin-a", "127.0.0.2", body=SIGNED)
    plain = srs_server(edge_conf(a), workers=1, name="edge", http=True)
    checked = srs_server(edge_conf(a, extra="token_traverse on;").replace(
        "} }", "} http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }"),
        workers=1, name="edge-traverse", http=True)
    clients.publish(rtmp(a, "live/s"))
    token = make_token("k1", SECRET, "play", "__defaultVhost__", "live", "s", int(time.time()) + 600)
    # token_traverse off: the first player's token goes upstream with the edge's pull, so the
    # origin plays it to the edge; a player without one then rides the same pull (the edge
    # cannot check it: docs/cluster.md)
    run(_token_then_bare(plain.port, token))
    # token_traverse on: the origin is asked with each player's own params first
    refused = run(_request_play(checked.port, "s"))
    assert refused.level == "error" and "signed_url: play needs a token" in refused.description, refused
    status = urllib.request.Request(f"http://127.0.0.1:{checked.http_port}/live/s.flv")
    try:
        urllib.request.urlopen(status, timeout=15)
        raise AssertionError("a tokenless HTTP-FLV play through the edge was admitted")
    except urllib.error.HTTPError as e:
        assert e.code == 403
    probe = ffprobe(f"http://127.0.0.1:{checked.http_port}/live/s.flv?token={token}")
    assert {s["codec_type"] for s in probe["streams"]} == {"video", "audio"}
    assert "token traverse" in checked.log_text()
    assert token not in a.log_text() and token not in checked.log_text()  # logs show query values as ***


async def _token_then_bare(port: int, token: str) -> None:
    good = RtmpTestClient(port)
    await good.open()
    await good.play(f"s?token={token}")
    await good.expect(ev.MediaMessage, timeout=15)
    bare = RtmpTestClient(port)
    await bare.open()
    await bare.play("s")
    await bare.expect(ev.MediaMessage, timeout=15)
    await bare.close()
    await good.close()


async def _request_play(port: int, name: str) -> ev.StatusEvent:
    c = RtmpTestClient(port)
    await c.open()
    status: ev.StatusEvent = await c.request_play(name)
    await c.close()
    return status


def test_an_expired_first_token_gives_way_to_a_newer_players_on_reconnect(
        srs_server: Callable[..., Server], clients: Clients) -> None:
    a = origin(srs_server, "origin-a", "127.0.0.2", body=SIGNED)
    b = origin(srs_server, "origin-b", "127.0.0.3", body=SIGNED)
    edge = srs_server(edge_conf(a), workers=1, name="edge", http=True)
    clients.publish(rtmp(a, "live/s"))
    clients.publish(rtmp(b, "live/s"))
    expires = int(time.time()) + 4

    def decoder(token: str) -> Watch:
        return Watch(clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout",
                                    "20000000", "-i", f"{edge.url}/live/s?token={token}", "-map", "0:v",
                                    "-f", "framemd5", "-"]))

    first = decoder(make_token("k1", SECRET, "play", "__defaultVhost__", "live", "s", expires))
    wait_for(lambda: len(first.lines) > 10, 20, what="the first player decoding")
    later = decoder(make_token("k1", SECRET, "play", "__defaultVhost__", "live", "s", expires + 600))
    wait_for(lambda: len(later.lines) > 10, 20, what="a later player decoding")
    time.sleep(max(0.0, expires + 1 - time.time()))  # the first player's token has expired

    # the pull reconnects (to origin B, by a reload): the first player's token is refused there,
    # the later player's is asked with at once
    edge.write_conf(edge_conf(b))
    edge.send_signal(signal.SIGHUP)
    wait_for(lambda: len(clients_of(b, "rtmp-play")) == 1, 10, what="the pull at origin B")
    decoded = len(first.lines), len(later.lines)
    wait_for(lambda: len(first.lines) > decoded[0] + 30 and len(later.lines) > decoded[1] + 30, 15,
             what="both players decoding from origin B")
    log = edge.log_text()
    assert "signed_url: token expired" in log and "using a newer player's" in log
