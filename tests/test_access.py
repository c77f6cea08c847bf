"""Access control with real clients: SRS's `security { }` (its evaluation order and its surprise,
IPv6 on ::1), srv's signed URLs (minted by `srs --sign`), over RTMP and HTTP-FLV, and what a
refused client is told: ffmpeg prints the server's reason, an HTTP-FLV player gets 403; per-IP
limits with clients bound to different loopback source addresses (127.0.0.2, ...)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from conftest import SRS, Server, codecs, ffprobe, free_port, wait_for
from rtmp_tools import RtmpTestClient

from srv.app.access import make_token
from srv.rtmp import events as ev

SECURITY = """
vhost __defaultVhost__ {{
    http_remux {{ enabled on; }}
    security {{ enabled on; deny publish all; allow play 127.0.0.1; allow play 10.0.0.0/8; }}
}}
vhost surprise {{
    http_remux {{ enabled on; }}
    security {{ enabled on; allow publish 127.0.0.1; }}
}}
vhost v6 {{
    http_remux {{ enabled on; }}
    security {{ enabled on; allow publish ::1; allow play ::/120; }}
}}
vhost denyonly {{
    http_remux {{ enabled on; }}
    security {{ enabled on; deny play 127.0.0.0/8; }}
}}
http_server {{ enabled on; listen [::]:{http}; }}
exporter {{ enabled on; listen 127.0.0.1:{exporter}; }}
"""


def ffmpeg(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args],
                          capture_output=True, text=True, timeout=timeout)


def publish_refused(url: str) -> str:
    """ffmpeg publishing to `url` must fail at once; what it prints."""
    out = ffmpeg("-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "5", "-c:v", "libx264",
                 "-preset", "ultrafast", "-f", "flv", url)
    assert out.returncode != 0
    return out.stderr


def play_refused(url: str) -> str:
    out = ffmpeg("-rw_timeout", "10000000", "-i", url, "-t", "1", "-f", "null", "-")
    assert out.returncode != 0
    return out.stderr


def http_status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def rtmp_play_answer(port: int, host: str, app: str, name: str = "s") -> ev.StatusEvent:
    """The first onStatus a player of app/name gets (Play.Reset when it may play)."""
    c = RtmpTestClient(port, app=app, host=host)
    await c.open()
    try:
        status = await c.request_play(name)
        if status.level == "error":
            await asyncio.wait_for(c.closed.wait(), 10)  # and then the server closes
        return status
    finally:
        await c.close()


@pytest.fixture
def secure(srs_server: Any, clients: Any) -> Server:
    port, http, exporter = free_port(), free_port(), free_port()
    srv: Server = srs_server(SECURITY.format(http=http, exporter=exporter), workers=1,
                             settings={"listen": f"127.0.0.1:{port} [::1]:{port}"})
    srv.port, srv.http_port, srv.exporter_port = port, http, exporter
    return srv


def test_security_matrix_deny_publish_allow_play_by_ip_and_cidr(secure: Server) -> None:
    """The issue's example: nobody publishes; 127.0.0.1 plays; ::1 matches no allow rule."""
    port, http = secure.port, secure.http_port
    said = publish_refused(f"rtmp://127.0.0.1:{port}/live/s")
    assert "Server error: security: publish from 127.0.0.1 denied by rule deny publish all" in said
    ok = asyncio.run(rtmp_play_answer(port, "127.0.0.1", "live"))
    assert ok.code == "NetStream.Play.Reset"
    refused = asyncio.run(rtmp_play_answer(port, "::1", "live"))
    assert (refused.level, refused.code) == ("error", "NetStream.Play.Failed")
    assert refused.description == "security: play from ::1 not allowed by any of 2 allow rules"
    said = play_refused(f"rtmp://[::1]:{port}/live/s")
    assert "Server error: security: play from ::1 not allowed by any of 2 allow rules" in said
    status, body = http_status(f"http://[::1]:{http}/live/s.flv")
    assert status == 403 and "not allowed by any of 2 allow rules" in body
    secure.wait_log("publish refused: security: publish from 127.0.0.1 denied by rule deny publish all")
    with urllib.request.urlopen(f"http://127.0.0.1:{secure.exporter_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'srs_connections_rejected_total{reason="security"} 4.0' in metrics


def test_security_surprise_an_allow_publish_rule_alone_denies_every_player(
        secure: Server, clients: Any) -> None:
    """SRS's surprise, kept: `allow publish 127.0.0.1;` alone lets 127.0.0.1 publish and
    nobody play, over RTMP and HTTP-FLV alike."""
    port, http = secure.port, secure.http_port
    clients.publish(f"rtmp://127.0.0.1:{port}/live?vhost=surprise/s")
    secure.wait_log("surprise/live/s publish start")
    said = play_refused(f"rtmp://127.0.0.1:{port}/live?vhost=surprise/s")
    assert "Server error: security: play from 127.0.0.1 not allowed by any of 1 allow rules" in said
    status, body = http_status(f"http://127.0.0.1:{http}/live/s.flv?vhost=surprise")
    assert status == 403 and "play from 127.0.0.1 not allowed by any of 1 allow rules" in body


def test_security_ipv6_rules_match_clients_on_loopback_v6_only(secure: Server, clients: Any) -> None:
    port, http = secure.port, secure.http_port
    said = publish_refused(f"rtmp://127.0.0.1:{port}/live?vhost=v6/s")
    assert "Server error: security: publish from 127.0.0.1 not allowed by any of 2 allow rules" in said
    clients.publish(f"rtmp://[::1]:{port}/live?vhost=v6/s")
    assert "video" in codecs(ffprobe(f"rtmp://[::1]:{port}/live?vhost=v6/s"))  # ::1 is in ::/120
    assert "video" in codecs(ffprobe(f"http://[::1]:{http}/live/s.flv?vhost=v6"))
    said = play_refused(f"rtmp://127.0.0.1:{port}/live?vhost=v6/s")
    assert "Server error: security: play from 127.0.0.1 not allowed" in said
    assert http_status(f"http://127.0.0.1:{http}/live/s.flv?vhost=v6")[0] == 403


def test_security_with_only_deny_rules_lets_everyone_else_through(secure: Server, clients: Any) -> None:
    port, http = secure.port, secure.http_port
    clients.publish(f"rtmp://127.0.0.1:{port}/live?vhost=denyonly/s")  # no publish rule: passes
    assert "video" in codecs(ffprobe(f"rtmp://[::1]:{port}/live?vhost=denyonly/s"))
    assert "video" in codecs(ffprobe(f"http://[::1]:{http}/live/s.flv?vhost=denyonly"))
    said = play_refused(f"rtmp://127.0.0.1:{port}/live?vhost=denyonly/s")
    assert "Server error: security: play from 127.0.0.1 denied by rule deny play 127.0.0.0/8" in said
    status, body = http_status(f"http://127.0.0.1:{http}/live/s.flv?vhost=denyonly")
    assert status == 403 and "denied by rule deny play 127.0.0.0/8" in body
    wait_for(lambda: secure.log_text().count("play refused: security") >= 1, what="the refusal logged")


# ---- signed URLs ---------------------------------------------------------------------------

SIGNED = """
vhost __defaultVhost__ {
    http_remux { enabled on; }
    signed_url { enabled on; publish on; play on; key k1 old-secret-1; key k2 new-secret-2; }
}
"""


def mint(srv: Server, action: str, url: str, *extra: str) -> str:
    """A signed URL from `srs --sign`, the operator's tool."""
    out = subprocess.run([str(SRS), "-c", str(srv.conf), "--sign", action, url, *extra],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def token_of(signed: str) -> str:
    return signed.rpartition("token=")[2]


def test_signed_urls_valid_expired_wrong_stream_wrong_key_over_rtmp_and_http_flv(
        srs_server: Any, clients: Any) -> None:
    srv: Server = srs_server(SIGNED, workers=1, http=True)
    rtmp, flv = f"{srv.url}/live/s", f"http://127.0.0.1:{srv.http_port}/live/s.flv"
    said = publish_refused(rtmp)
    assert "Server error: signed_url: publish needs a token" in said
    clients.publish(mint(srv, "publish", rtmp))
    assert "video" in codecs(ffprobe(mint(srv, "play", rtmp)))
    assert "video" in codecs(ffprobe(mint(srv, "play", flv)))
    # expired: signed correctly, but an hour ago
    expired = make_token("k2", "new-secret-2", "play", "__defaultVhost__", "live", "s", int(time.time()) - 3600)
    assert "Server error: signed_url: token expired" in play_refused(f"{rtmp}?token={expired}")
    status, body = http_status(f"{flv}?token={expired}")
    assert status == 403 and "signed_url: token expired" in body
    # a token for another stream, or for publishing, does not let one play this stream
    other = token_of(mint(srv, "play", f"{srv.url}/live/other"))
    assert "Server error: signed_url: bad signature for play live/s" in play_refused(f"{rtmp}?token={other}")
    publish_token = token_of(mint(srv, "publish", rtmp))
    assert http_status(f"{flv}?token={publish_token}")[0] == 403
    # a wrong secret under a real key name, and a key the server does not have
    forged = make_token("k2", "guessed", "play", "__defaultVhost__", "live", "s", int(time.time()) + 60)
    assert "Server error: signed_url: bad signature" in play_refused(f"{rtmp}?token={forged}")
    unknown = make_token("k9", "new-secret-2", "play", "__defaultVhost__", "live", "s", int(time.time()) + 60)
    assert "Server error: signed_url: unknown key" in play_refused(f"{rtmp}?token={unknown}")
    # the token may ride on the tcUrl (the app's query) instead of the stream name
    in_tcurl = token_of(mint(srv, "play", rtmp))
    ok = asyncio.run(rtmp_play_answer(srv.port, "127.0.0.1", f"live?token={in_tcurl}"))
    assert ok.code == "NetStream.Play.Reset"
    # secrets and signatures never reach the log
    log = srv.log_text()
    assert "signed_url: token expired" in log and "bad signature for play live/s" in log
    for secret in ("old-secret-1", "new-secret-2", publish_token.rpartition(".")[2], in_tcurl.rpartition(".")[2]):
        assert secret not in log
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.exporter_port}/metrics", timeout=10) as r:
        assert 'srs_connections_rejected_total{reason="signed_url"}' in r.read().decode()


def test_signed_url_key_rotation_accepts_both_keys_then_only_the_new_one(srs_server: Any, clients: Any) -> None:
    srv: Server = srs_server(SIGNED, workers=1, http=True)
    rtmp = f"{srv.url}/live/s"
    clients.publish(mint(srv, "publish", rtmp, "--key", "k2"))
    old = mint(srv, "play", rtmp, "--key", "k1")
    assert "video" in codecs(ffprobe(old))  # both keys while rotating
    srv.write_conf(SIGNED.replace("key k1 old-secret-1; ", ""))  # the rotation is done
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok")
    assert "Server error: signed_url: unknown key" in play_refused(old)
    assert "video" in codecs(ffprobe(mint(srv, "play", rtmp)))  # the default key is the last one: k2


# ---- per-IP limits -------------------------------------------------------------------------

LIMITED = """
per_ip { max_connections 2; connect_rate 0.01; connect_burst 4; ban_after 3; ban_window 60; ban_time 600; }
vhost __defaultVhost__ {
    http_remux { enabled on; }
    security { enabled on; deny publish 127.0.0.5; }
}
"""


def rtmp_from(source: str, port: int) -> tuple[socket.socket, bool]:
    """A TCP connection from `source` that sends the RTMP C0+C1; whether the server answered
    (True) or closed it at once (False). The socket stays open (it holds a connection)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(b"\x03" + bytes(1536))
    try:
        answered = bool(s.recv(1))
    except ConnectionResetError:
        answered = False
    return s, answered


def flv_status(source: str, port: int, path: str = "/live/s.flv") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def metric(srv: Server, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.exporter_port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def test_per_ip_concurrent_connections_are_capped_per_source_address(srs_server: Any) -> None:
    srv: Server = srs_server(LIMITED.replace("connect_rate 0.01; ", ""), workers=1, http=True)
    held = [rtmp_from("127.0.0.2", srv.port) for _ in range(2)]
    assert all(ok for _, ok in held)
    third, ok = rtmp_from("127.0.0.2", srv.port)
    assert not ok  # a third from 127.0.0.2 is closed at once
    other, ok = rtmp_from("127.0.0.3", srv.port)
    assert ok  # another address is not affected
    assert flv_status("127.0.0.2", srv.http_port) == 429  # HTTP-FLV counts the same connections
    held[0][0].close()

    def one_more() -> bool:
        s, ok = rtmp_from("127.0.0.2", srv.port)
        s.close()
        return ok

    wait_for(one_more, what="the slot a closed connection freed")
    srv.wait_log("rejected: 127.0.0.2 already has 2 connections (per_ip max_connections)")
    assert metric(srv, 'srs_connections_rejected_total{reason="ip_connections"}') >= 2
    for s in (third, other, *(h for h, _ in held)):
        s.close()


def test_per_ip_new_connection_rate_allows_a_burst_then_refuses(srs_server: Any) -> None:
    srv: Server = srs_server(LIMITED, workers=1, http=True)
    answers = []
    for _ in range(5):
        s, ok = rtmp_from("127.0.0.4", srv.port)
        answers.append(ok)
        s.close()
    assert answers == [True, True, True, True, False]  # burst 4, then 0.01/s
    assert rtmp_from("127.0.0.6", srv.port)[1]
    assert flv_status("127.0.0.4", srv.http_port) == 429
    srv.wait_log("rejected: more than 0.01 new connections/s (burst 4) from 127.0.0.4")
    assert metric(srv, 'srs_connections_rejected_total{reason="ip_rate"}') == 2


def test_per_ip_ban_after_failed_auths(srs_server: Any) -> None:
    srv: Server = srs_server(LIMITED, workers=1, http=True)

    async def refused_publishes() -> list[str]:
        codes = []
        for _ in range(3):
            c = RtmpTestClient(srv.port, source="127.0.0.5")
            await c.open()
            codes.append((await c.publish("s")).code)
            await asyncio.wait_for(c.closed.wait(), 10)
            await c.close()
        return codes

    assert asyncio.run(refused_publishes()) == ["NetStream.Publish.Unauthorized"] * 3
    srv.wait_log("127.0.0.5 banned for 600s after 3 refused auths within 60s")
    s, ok = rtmp_from("127.0.0.5", srv.port)
    assert not ok  # banned: closed at the door, RTMP and HTTP alike
    s.close()
    assert flv_status("127.0.0.5", srv.http_port) == 403
    assert rtmp_from("127.0.0.7", srv.port)[1]
    assert metric(srv, "srs_ip_bans_total") == 1
    assert metric(srv, 'srs_connections_rejected_total{reason="ip_banned"}') == 2
    assert metric(srv, 'srs_connections_rejected_total{reason="security"}') == 3


def test_per_ip_ban_decided_by_one_worker_is_enforced_by_every_worker(srs_server: Any) -> None:
    """With `workers 2` the kernel spreads 127.0.0.8's connections over both workers: the worker
    whose refusals reach ban_after bans the address, and the other one refuses it as well."""
    srv: Server = srs_server(LIMITED.replace("127.0.0.5", "127.0.0.8").replace("connect_rate 0.01; ", ""),
                             workers=2, http=True)

    async def refused_publish() -> str:
        c = RtmpTestClient(srv.port, source="127.0.0.8")
        await c.open()
        code = (await c.publish("s")).code
        await asyncio.wait_for(c.closed.wait(), 10)
        await c.close()
        return code

    banned = "127.0.0.8 banned for 600s after 3 refused auths within 60s"
    for _ in range(5):  # 3 refusals reach one of the 2 workers within 5
        assert asyncio.run(refused_publish()) == "NetStream.Publish.Unauthorized"
        if banned in srv.log_text():
            break
    srv.wait_log(banned)
    banner = next(line for line in srv.log_text().splitlines() if banned in line).split("][")[2]  # "wN"

    def refused_by_the_other_worker() -> bool:
        s, ok = rtmp_from("127.0.0.8", srv.port)
        s.close()
        if ok:  # the other worker took it before the master's ban message reached it: try again
            return False
        return any("rejected: 127.0.0.8 is banned" in line and line.split("][")[2] != banner
                   for line in srv.log_text().splitlines())

    wait_for(refused_by_the_other_worker, what=f"the worker other than {banner} refusing the address")
    assert rtmp_from("127.0.0.9", srv.port)[1]
    assert metric(srv, "srs_ip_bans_total") == 1  # one ban, decided once


def workers_seen(srv: Server, ip: str) -> set[str]:
    """The workers ("wN") whose log shows a connection from `ip` arriving."""
    return {line.split("][")[2] for line in srv.log_text().splitlines() if f" {ip}:" in line and " accepted" in line}


def test_per_ip_connections_are_the_servers_with_two_workers(srs_server: Any) -> None:
    """With `workers 2` one address's connections land on both workers (SO_REUSEPORT), yet the
    server admits `max_connections` of them in all (and `connect_burst` new ones at once, below)."""
    body = LIMITED.replace("connect_rate 0.01; ", "").replace("max_connections 2", "max_connections 3")
    srv: Server = srs_server(body, workers=2, http=True)
    held: list[tuple[socket.socket, bool]] = []

    def both_workers_hit() -> bool:
        held.append(rtmp_from("127.0.0.2", srv.port))
        return len(held) >= 8 and len(workers_seen(srv, "127.0.0.2")) == 2

    wait_for(both_workers_hit, what="connections from 127.0.0.2 on both workers")
    assert sum(ok for _, ok in held) == 3  # not 3 per worker
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/api/v1/clients?count=100", timeout=10) as r:
        ids = [c["id"] for c in json.loads(r.read())["clients"] if c["ip"] == "127.0.0.2"]
    assert len(ids) == 3
    assert flv_status("127.0.0.2", srv.http_port) == 429
    assert rtmp_from("127.0.0.3", srv.port)[1]
    srv.wait_log("rejected: 127.0.0.2 already has 3 connections (per_ip max_connections)")
    next(s for s, ok in held if ok).close()

    def one_more() -> bool:
        s, ok = rtmp_from("127.0.0.2", srv.port)
        s.close()
        return ok

    wait_for(one_more, what="the slot a closed connection freed")
    for s, _ in held:
        s.close()


def test_per_ip_rate_is_the_servers_with_two_workers(srs_server: Any) -> None:
    rated: Server = srs_server(LIMITED, workers=2, http=True)
    answers = []
    while len(answers) < 10 or len(workers_seen(rated, "127.0.0.4")) < 2:
        s, ok = rtmp_from("127.0.0.4", rated.port)
        answers.append(ok)
        s.close()
        assert len(answers) < 60
    assert answers[:4] == [True] * 4 and not any(answers[4:])  # burst 4 for the server, then 0.01/s
    rated.wait_log("rejected: more than 0.01 new connections/s (burst 4) from 127.0.0.4")


def test_per_ip_falls_back_to_the_workers_decision_when_the_master_is_silent(srs_server: Any) -> None:
    srv: Server = srs_server(LIMITED.replace("connect_rate 0.01; ", ""), workers=2, http=True)
    os.kill(srv.master_pid, signal.SIGSTOP)
    try:
        s, ok = rtmp_from("127.0.0.2", srv.port)  # waits ADMIT_TIMEOUT, then its worker decides
        s.close()
    finally:
        os.kill(srv.master_pid, signal.SIGCONT)
    assert ok
    srv.wait_log("the master did not answer a per_ip check within 1s: this worker decides alone")


# ---- a second publisher --------------------------------------------------------------------


def test_a_second_publisher_is_rejected_by_default_or_takes_the_stream_over(srs_server: Any, clients: Any) -> None:
    srv: Server = srs_server("vhost __defaultVhost__ { }\n"
                             "vhost takeover { publish { second_publisher takeover; } }\n", workers=2)
    first = clients.publish(f"{srv.url}/live/s")
    assert "video" in codecs(ffprobe(f"{srv.url}/live/s"))

    async def second_answer(app: str) -> ev.StatusEvent:
        c = RtmpTestClient(srv.port, app=app)
        await c.open()
        try:
            return await c.publish("s")
        finally:
            await c.close()

    busy = asyncio.run(second_answer("live"))
    assert (busy.code, busy.level) == ("NetStream.Publish.BadName", "error")  # reject, SRS's way
    assert first.poll() is None
    old = clients.publish(f"{srv.url}/live?vhost=takeover/s")
    assert "video" in codecs(ffprobe(f"{srv.url}/live?vhost=takeover/s"))
    new = clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i",
                         "testsrc=size=160x120:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                         "-pix_fmt", "yuv420p", "-f", "flv", f"{srv.url}/live?vhost=takeover/s"],
                        stdout=subprocess.DEVNULL)
    assert old.wait(20) != 0  # the first publisher was kicked
    srv.wait_log("(second_publisher takeover)")
    video = codecs(ffprobe(f"{srv.url}/live?vhost=takeover/s"))["video"]
    assert (video["width"], video["height"]) == (160, 120)  # and the new one publishes
    assert new.poll() is None
