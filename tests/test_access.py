"""Access control with real clients: SRS's `security { }` (its evaluation order and its surprise,
IPv6 on ::1), over RTMP and HTTP-FLV, and what a refused client is told: ffmpeg prints the
server's reason, an HTTP-FLV player gets 403."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest
from conftest import Server, codecs, ffprobe, free_port, wait_for
from rtmp_tools import RtmpTestClient

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
