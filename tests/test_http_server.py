"""HTTP-FLV, the HTTP API, the exporter and health checks on the real server with real clients.

ffmpeg publishes over RTMP; ffprobe / ffmpeg play HTTP-FLV; the API and /metrics are read over
fresh connections, so with `workers 2` different workers answer and must agree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Clients, Server, codecs, ffprobe, wait_for

REMUX = "vhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }\n"


def http(port: int, method: str, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """One request on a fresh connection (so the kernel may pick any worker)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def api(srv: Server, path: str, method: str = "GET") -> dict[str, Any]:
    status, body = http(srv.api_port, method, path)
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def metrics(srv: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http(srv.exporter_port, "GET", "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def flv_url(srv: Server, stream: str = "s") -> str:
    return f"http://127.0.0.1:{srv.http_port}/live/{stream}.flv"


def play_flv(clients: Clients, url: str) -> subprocess.Popen[bytes]:
    """A long-running HTTP-FLV player (ffmpeg reading the stream in real time)."""
    return clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", url,
                           "-c", "copy", "-f", "null", "-"], stdout=subprocess.DEVNULL)


def flv_clients(srv: Server) -> list[dict[str, Any]]:
    return [c for c in api(srv, "/api/v1/clients")["clients"] if c["type"] == "flv-play"]


def start_publishing(srv: Server, clients: Clients, stream: str = "s") -> None:
    clients.publish(f"{srv.url}/live/{stream}")
    wait_for(lambda: any(s["publish"]["active"] for s in api(srv, "/api/v1/streams")["streams"]),
             15, interval=0.2, what="stream published")


def test_http_flv_plays_on_every_worker_and_api_counts_agree(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(REMUX, workers=2, http=True)
    start_publishing(srv, clients)
    probe = codecs(ffprobe(flv_url(srv)))
    assert probe["video"]["codec_name"] == "h264" and probe["audio"]["codec_name"] == "aac"
    players = [play_flv(clients, flv_url(srv)) for _ in range(3)]
    # keep adding players until both workers serve HTTP-FLV (SO_REUSEPORT spreads them at random)
    for _ in range(12):
        wait_for(lambda: len(flv_clients(srv)) == len(players), 10, interval=0.2, what="players registered")
        if len({c["worker"] for c in flv_clients(srv)}) == 2:
            break
        players.append(play_flv(clients, flv_url(srv)))
    assert len({c["worker"] for c in flv_clients(srv)}) == 2
    for _ in range(6):  # whichever worker answers, the same figures
        streams = api(srv, "/api/v1/streams")["streams"]
        assert len(streams) == 1
        s = streams[0]
        assert s["players"] == len(players) and s["clients"] == len(players) + 1
        assert s["publish"]["active"] and s["publish"]["cid"]
        assert s["video"]["codec"] == "H264" and s["video"]["width"] == 320
        assert s["audio"]["codec"] == "AAC"
        one = api(srv, f"/api/v1/streams/{s['id']}")["stream"]
        assert one["id"] == s["id"] and one["name"] == "s" and one["app"] == "live"
        kinds = sorted(c["type"] for c in api(srv, "/api/v1/clients")["clients"])
        assert kinds == ["flv-play"] * len(players) + ["fmle-publish"]
    # rates over the last 30 s (sampled each second by every worker): in from the publisher's
    # worker, out summed over the workers that serve players. The window also covers the time
    # before the players came (a slow ffprobe on a loaded machine): the send rate grows towards
    # players x recv as it fills, so wait (up to one window) for it to pass 0.3 x recv.
    def rates() -> dict[str, int]:
        kbps: dict[str, int] = api(srv, "/api/v1/streams")["streams"][0]["kbps"]
        return kbps

    wait_for(lambda: (r := rates())["recv_30s"] * 0.3 < r["send_30s"], 35, interval=0.5, what="30 s rates")
    rate = rates()
    assert 20 < rate["recv_30s"] < 5000
    assert rate["recv_30s"] * 0.3 < rate["send_30s"] < rate["recv_30s"] * (len(players) + 1) * 1.6
    vhosts = api(srv, "/api/v1/vhosts")["vhosts"]
    assert vhosts[0]["name"] == "__defaultVhost__" and vhosts[0]["streams"] == 1
    summ = api(srv, "/api/v1/summaries")["data"]
    assert summ["ok"] and len(summ["workers"]) == 2 and summ["self"]["mem_kbyte"] > 0
    assert all(p.poll() is None for p in players)
    assert api(srv, "/api/v1/streams/nope")["code"] == 2048


def test_delete_client_kicks_it_on_whichever_worker_holds_it(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(REMUX, workers=2, http=True)
    start_publishing(srv, clients)
    players = [play_flv(clients, flv_url(srv)) for _ in range(4)]
    wait_for(lambda: len(flv_clients(srv)) == 4, 15, interval=0.2, what="players registered")
    victims = {c["id"] for c in flv_clients(srv)[:2]}
    for cid in victims:
        assert api(srv, f"/api/v1/clients/{cid}", "DELETE")["code"] == 0
    wait_for(lambda: sum(p.poll() is not None for p in players) == 2, 15, what="two players ended")
    left = {c["id"] for c in flv_clients(srv)}
    assert len(left) == 2 and not (left & victims)
    assert api(srv, "/api/v1/clients/9-999", "DELETE")["code"] == 2049
    assert api(srv, "/api/v1/clients/9-999")["code"] == 2049


def test_metrics_parse_and_byte_counters_follow_the_traffic(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(REMUX, workers=2, http=True)
    srv.header = srv.header.replace("exporter { enabled on;", "exporter { enabled on; label lab1; tag tag1;")
    srv.write_conf(REMUX)
    assert api(srv, "/api/v1/raw?rpc=reload")["code"] == 0  # label and tag apply on reload
    start_publishing(srv, clients)
    play_flv(clients, flv_url(srv))
    wait_for(lambda: len(flv_clients(srv)) == 1, 15, interval=0.2, what="player registered")
    labels = (("app", "live"), ("stream", "s"), ("vhost", "__defaultVhost__"))
    # wait for traffic, not for a fixed time: a loaded machine encodes slower
    # (in and out: each worker reports its own counters at its own moment, and what a player is
    # sent carries FLV framing the publisher's media did not, so one past 50 kB says nothing of
    # the other: out was, in was 49889, in a full-suite run)
    wait_for(lambda: min((m := metrics(srv)).get(("srs_stream_send_bytes_total", labels), 0),
                         m.get(("srs_stream_receive_bytes_total", labels), 0)) > 50_000, 20,
             interval=0.3, what="50 kB through the stream")
    first = metrics(srv)
    stream = api(srv, "/api/v1/streams")["streams"][0]
    assert first[("srs_stream_players", labels)] == 1
    assert first[("srs_stream_publishers", labels)] == 1
    assert first[("srs_streams", ())] == 1 and first[("srs_clients", ())] == 2
    assert first[("srs_workers", ())] == 2
    # the publisher sent at least the media the stream received; the player got about as much
    assert first[("srs_receive_bytes_total", ())] >= first[("srs_stream_receive_bytes_total", labels)] > 50_000
    assert first[("srs_send_bytes_total", ())] >= first[("srs_stream_send_bytes_total", labels)] > 50_000
    assert stream["recv_bytes"] > 0
    totals = ("srs_send_bytes_total", "srs_receive_bytes_total")
    second = wait_for(lambda: (m := metrics(srv)) and all(m[(n, ())] > first[(n, ())] for n in totals) and m,
                      20, interval=0.3, what="byte counters to grow")
    assert second[("srs_clients_total", ())] >= 2
    build = [k for k in second if k[0] == "srs_build_info"]
    assert dict(build[0][1])["label"] == "lab1" and dict(build[0][1])["tag"] == "tag1"


def test_killed_worker_leaves_no_stale_series_and_counters_never_go_back(srs_server: Any,
                                                                         clients: Clients) -> None:
    srv = srs_server(REMUX, workers=2, http=True)
    start_publishing(srv, clients)
    for _ in range(4):
        play_flv(clients, flv_url(srv))
    wait_for(lambda: len(flv_clients(srv)) == 4, 15, interval=0.2, what="players registered")
    # every player has been sent media, so the victim's counters are part of `before`
    wait_for(lambda: all(c["send_bytes"] > 0 for c in flv_clients(srv)), 15, interval=0.2,
             what="media sent to every player")
    before = metrics(srv)
    workers = {w["slot"]: w["pid"] for w in api(srv, "/api/v1/summaries")["data"]["workers"]}
    victim_slot = 2
    lost = [c["id"] for c in api(srv, "/api/v1/clients")["clients"] if c["worker"] == victim_slot]
    psutil.Process(workers[victim_slot]).send_signal(signal.SIGKILL)

    def replaced() -> bool:
        now = {w["slot"]: w["pid"] for w in api(srv, "/api/v1/summaries")["data"]["workers"]}
        return now.get(victim_slot, workers[victim_slot]) != workers[victim_slot] and len(now) == 2
    wait_for(replaced, 15, interval=0.2, what="worker respawned")
    after = metrics(srv)
    for name in ("srs_send_bytes_total", "srs_receive_bytes_total", "srs_clients_total"):
        assert after[(name, ())] >= before[(name, ())], name
    assert after[("srs_worker_restarts_total", ())] == before[("srs_worker_restarts_total", ())] + 1
    processes = {dict(k[1])["process"] for k in after if k[0] == "srs_process_memory"}
    assert processes == {"master", "1", "2"}
    ids = {c["id"] for c in api(srv, "/api/v1/clients")["clients"]}
    assert not (ids & set(lost))
    assert after[("srs_clients", ())] == len(ids)


def test_health_tracks_start_reload_and_graceful_stop(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(REMUX, workers=2, http=True, wait=False)
    wait_for(lambda: _status(srv, "/health") == 200, 20, interval=0.1, what="/health up")
    wait_for(lambda: _status(srv, "/ready") == 200, 20, interval=0.1, what="/ready")
    assert _status(srv, "/livez") == 200
    # a reload through the raw API keeps the server ready and is counted
    srv.header = srv.header.replace("grace_start_wait 100;", "grace_start_wait 4000;")
    srv.write_conf(REMUX)
    assert api(srv, "/api/v1/raw?rpc=reload")["code"] == 0
    assert _status(srv, "/ready") == 200
    srv.conf.write_text(srv.conf.read_text() + "vhost broken { lisen 1; }\n")
    assert api(srv, "/api/v1/raw?rpc=reload")["code"] != 0
    m = metrics(srv)
    assert m[("srs_reloads_total", (("result", "ok"),))] == 1
    assert m[("srs_reloads_total", (("result", "failed"),))] == 1
    srv.write_conf(REMUX)
    # graceful stop: workers keep accepting for grace_start_wait but are no longer ready
    srv.send_signal(signal.SIGQUIT)
    wait_for(lambda: _status(srv, "/ready") == 503, 5, interval=0.1, what="/ready 503 while stopping")
    assert _status(srv, "/health") == 200
    assert srv.proc is not None and srv.proc.wait(20) == 0


def _status(srv: Server, path: str) -> int | None:
    try:
        return http(srv.api_port, "GET", path, timeout=3)[0]
    except OSError:
        return None


def _raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


def test_bad_requests_get_4xx_and_never_escape_the_root(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(REMUX, workers=2, http=True)
    (srv.dir / "index.html").write_text("<h1>hi</h1>")
    (srv.dir / "app.js").write_text("1")
    os.symlink("/etc", srv.dir / "etc-link")
    status, body = http(srv.http_port, "GET", "/")
    assert status == 200 and body == b"<h1>hi</h1>"
    out = _raw(srv.http_port, b"GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"text/javascript" in out.split(b"\r\n\r\n")[0]
    assert http(srv.http_port, "GET", "/missing.html")[0] == 404
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
                 "/..%2f..%2fetc/passwd", "/%252e%252e/etc/passwd", "/etc-link/passwd", "/./../etc/passwd"):
        out = _raw(srv.http_port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert out.split(b" ", 2)[1] in (b"403", b"404"), (path, out[:100])
        assert b"root:" not in out
    out = _raw(srv.http_port, b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")  # and the server closed: _raw returned
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    out = _raw(srv.http_port, huge)
    assert out.split(b" ", 2)[1] in (b"431", b"400")
    assert http(srv.api_port, "GET", "/api/v1/nothing")[0] == 404


def test_slowloris_is_closed_while_an_flv_player_is_undisturbed(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(REMUX, workers=1, http=True)
    start_publishing(srv, clients)
    player = socket.create_connection(("127.0.0.1", srv.http_port), timeout=5)
    player.sendall(b"GET /live/s.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    slow = socket.create_connection(("127.0.0.1", srv.http_port), timeout=20)
    slow.sendall(b"GET / HTTP/1.1\r\n")
    started = time.monotonic()
    got = 0
    closed_at = None
    slow.setblocking(False)
    while time.monotonic() - started < 14:
        got += len(player.recv(65536))
        if closed_at is None:
            try:
                slow.sendall(b"X")  # one byte at a time, never finishing the head
                if slow.recv(1024) == b"":
                    closed_at = time.monotonic() - started
            except BlockingIOError:
                pass
            except OSError:
                closed_at = time.monotonic() - started
        time.sleep(0.05)
    assert closed_at is not None and 9 < closed_at < 13
    assert got > 100_000  # the player kept receiving all along
    player.close()
    slow.close()


def test_api_and_flv_share_one_listener(srs_server: Any, clients: Clients) -> None:
    srv = srs_server(REMUX, workers=2)
    port = srv.http_port
    srv.header += (f"http_api {{ enabled on; listen 127.0.0.1:{port}; }}\n"
                   f"http_server {{ enabled on; listen 127.0.0.1:{port}; dir {srv.dir}; }}\n")
    srv.write_conf(REMUX)
    srv.send_signal(signal.SIGHUP)
    wait_for(lambda: _status_on(port, "/api/v1/versions") == 200, 10, interval=0.2, what="api on the shared port")
    clients.publish(f"{srv.url}/live/s")
    wait_for(lambda: _status_on(port, "/api/v1/streams") == 200 and
             json.loads(http(port, "GET", "/api/v1/streams")[1])["streams"], 15, interval=0.2, what="stream")
    assert codecs(ffprobe(f"http://127.0.0.1:{port}/live/s.flv"))["video"]["codec_name"] == "h264"


def _status_on(port: int, path: str) -> int | None:
    try:
        return http(port, "GET", path, timeout=3)[0]
    except OSError:
        return None


def test_large_static_file_is_streamed_whole_and_head_has_its_length(srs_server: Any) -> None:
    import hashlib
    import os
    import urllib.request

    srv = srs_server(workers=1, http=True)
    blob = os.urandom(40 * 1024 * 1024 + 123)  # bigger than any single read or buffer
    (srv.dir / "big.bin").write_bytes(blob)
    url = f"http://127.0.0.1:{srv.http_port}/big.bin"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.headers["Content-Length"] == str(len(blob))
        digest = hashlib.sha256()
        while chunk := r.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(blob).hexdigest()
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Length"] == str(len(blob)) and r.read() == b""
    # a slow reader does not hold the worker: the API answers while it downloads
    import socket
    slow = socket.create_connection(("127.0.0.1", srv.http_port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert api(srv, "/api/v1/versions")["code"] == 0
    slow.close()


def test_stalled_flv_player_is_dropped_while_another_plays_on(srs_server: Any, clients: Clients) -> None:
    import socket

    body = ("vhost __defaultVhost__ { play { queue_length 2; } "
            "http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }\n")
    srv = srs_server(body, workers=1, http=True)
    # constant 2 Mb/s, so the stalled player's buffers fill at a known pace
    clients.publish(f"{srv.url}/live/s", video=[
        "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-minrate", "2M", "-maxrate", "2M",
        "-bufsize", "1M", "-x264-params", "nal-hrd=cbr", "-g", "25", "-pix_fmt", "yuv420p"])
    srv.wait_log("publish start", timeout=20)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", srv.http_port))
    stalled.sendall(b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
    good = play_flv(clients, flv_url(srv))
    import re

    from srv.net.flow import HIGH_WATER, PLAYER_SNDBUF

    srv.wait_log("player stalled for", timeout=25)
    assert good.poll() is None, "the reading player must not be dropped"
    # the stall surfaced after a bounded amount, not after the kernel's autotuned megabytes
    sent = re.search(r"flv-play \S+ closed \(player stalled for .*\), sent (\d+) bytes", srv.log_text())
    assert sent is not None and int(sent.group(1)) < PLAYER_SNDBUF + HIGH_WATER + 512 * 1024
    assert "Traceback" not in srv.log_text()
    stalled.close()
