"""The web console at /console/ on the HTTP API's port, and the API fields it shows.

Over plain HTTP (the browser tests are in test_console_browser.py): the console's files are
served from the package behind the API's Basic auth (401 without credentials, like the API),
only on a listener that carries the API; the API gives what the pages show: per-stream fps,
GOP, publisher address, players per protocol and forward state, the config file and its `-t`
result, the last reload and its outcome, the listen addresses the player page builds URLs from,
and a clients total for paging through 1000 clients.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from conftest import Clients, Server, free_port, player, wait_for

from srv.conf.model import HttpRemuxConfig, VhostConfig
from srv.http.flv import match_mount, mount_url

USER, PASSWORD = "admin", "console-Pa55"
CONSOLE = Path(__file__).resolve().parents[1] / "srv" / "http" / "www" / "console"


def get(url: str, auth: tuple[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kw: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except HTTPError as e:
        return e.code, dict(e.headers), e.read()


def api(srv: Server, path: str, method: str = "GET") -> dict[str, Any]:
    status, _, body = get(f"http://127.0.0.1:{srv.api_port}/api/v1/{path}", method=method)
    assert status == 200, (path, status, body)
    return json.loads(body)  # type: ignore[no-any-return]


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, "", workers=1, http=True)
    srv.header = srv.header.replace(
        "raw_api { enabled on; allow_reload on; } }",
        f"raw_api {{ enabled on; allow_reload on; }} auth {{ enabled on; username {USER}; password {PASSWORD}; }} }}")
    srv.write_conf("vhost __defaultVhost__ { }\n")
    srv.start()
    yield srv
    srv.close()


def test_console_is_served_from_the_package_behind_the_api_auth(auth_server: Server) -> None:
    base = f"http://127.0.0.1:{auth_server.api_port}"
    status, headers, _ = get(f"{base}/console/")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert get(f"{base}/console/console.js")[0] == 401
    assert get(f"{base}/console/console.js", (USER, "wrong"))[0] == 401
    status, headers, body = get(f"{base}/console/", (USER, PASSWORD))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body == (CONSOLE / "index.html").read_bytes()
    status, headers, body = get(f"{base}/console/console.js", (USER, PASSWORD))
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert body == (CONSOLE / "console.js").read_bytes()
    status, headers, _ = get(f"{base}/console", (USER, PASSWORD))
    assert status == 301 and headers["Location"] == "/console/"
    assert get(f"{base}/console/../console/index.html", (USER, PASSWORD))[0] in (200, 403)
    assert get(f"{base}/console/%2e%2e/api.py", (USER, PASSWORD))[0] == 403
    assert get(f"{base}/console/nothing.js", (USER, PASSWORD))[0] == 404
    # the console is the API's: the media port (no API there) does not serve it
    assert get(f"http://127.0.0.1:{auth_server.http_port}/console/", (USER, PASSWORD))[0] == 404
    assert "api_auth" in get(f"http://127.0.0.1:{auth_server.exporter_port}/metrics")[2].decode()


def test_console_loads_nothing_from_outside_the_server() -> None:
    for path in CONSOLE.iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://${host}", "") and "https://" not in text, path
        assert "innerHTML" not in text, path  # server values go in as text only


def test_api_gives_the_console_stream_details_forwards_and_players_per_protocol(
        srs_server, clients: Clients) -> None:
    slave = srs_server(name="slave", workers=1)
    dead = free_port()
    srv = srs_server("vhost __defaultVhost__ {\n  http_remux { enabled on; }\n"
                     "  forward { enabled on; backoff_initial 200; backoff_max 400;\n"
                     f"    destination 127.0.0.1:{slave.port} 127.0.0.1:{dead}; }}\n}}\n",
                     name="master", workers=2, http=True)
    clients.publish(f"{srv.url}/live/cam")  # 25 fps, a keyframe every 25 frames

    def stream() -> dict[str, Any] | None:
        found = [s for s in api(srv, "streams")["streams"] if s["name"] == "cam"]
        return found[0] if found and found[0]["gop"]["frames"] and found[0]["fps"] else None

    wait_for(stream, 20, what="cam with its GOP and fps")
    player(clients, f"{srv.url}/live/cam")
    player(clients, f"http://127.0.0.1:{srv.http_port}/live/cam.flv")
    wait_for(lambda: (stream() or {}).get("players") == 2, 20, what="two players")
    s = stream()
    assert s is not None
    assert s["players_by_type"] == {"rtmp-play": 1, "flv-play": 1}, s
    assert s["flv"] == "/live/cam.flv"
    assert s["publish"]["active"] and s["publish"]["ip"] == "127.0.0.1" and s["publish"]["cid"]
    assert s["gop"]["frames"] == 25 and abs(s["gop"]["seconds"] - 1.0) < 0.1, s["gop"]
    # ffmpeg's real-time rate: 25 fps, less or more as a loaded machine slows it down and it
    # catches up; the exact measure is test_app_source's
    assert s["fps"] > 0, s["fps"]
    assert s["video"]["codec"] == "H264" and s["video"]["width"] == 320 and s["audio"]["codec"] == "AAC"
    wait_for(lambda: {f["destination"]: f["state"] for f in (stream() or {}).get("forwards", [])}.get(
        f"127.0.0.1:{slave.port}") in ("connected", "publishing"), 20, what="the forward to the slave up")
    forwards = {f["destination"]: f for f in stream()["forwards"]}  # type: ignore[index]
    assert forwards[f"127.0.0.1:{dead}"]["state"] in ("connecting", "backoff")
    wait_for(lambda: {f["destination"]: f for f in stream()["forwards"]}[  # type: ignore[index]
        f"127.0.0.1:{dead}"]["last_error"], 10, what="the dead destination's last error")


@pytest.mark.parametrize("vhost, mount, url", [
    ("__defaultVhost__", "[vhost]/[app]/[stream].flv", "/live/cam.flv"),
    ("__defaultVhost__", "[app]/[stream].flv", "/live/cam.flv"),
    ("__defaultVhost__", "/flv/[app]/[stream].flv", "/flv/live/cam.flv"),
    ("v.example", "[vhost]/[app]/[stream].flv", "/live/cam.flv?vhost=v.example"),
    ("v.example", "[app]/[vhost]-[stream].flv", "/live/v.example-cam.flv?vhost=v.example"),
    ("__defaultVhost__", "[vhost]/[app]/[stream].ts", ""),
])
def test_flv_url_of_a_stream_is_what_its_mount_serves(vhost: str, mount: str, url: str) -> None:
    config = VhostConfig(name=vhost, http_remux=HttpRemuxConfig(enabled=True, mount=mount))
    assert mount_url(config, "live", "cam") == url
    if url:
        assert match_mount(config, url.partition("?")[0]) == ("live", "cam")
    assert mount_url(VhostConfig(name=vhost), "live", "cam") == ""  # http_remux off


def test_api_gives_the_config_test_result_and_the_last_reload(srs_server) -> None:
    srv = srs_server(workers=1, http=True)
    data = api(srv, "summaries")["data"]
    assert data["config"]["file"] == str(srv.conf)
    assert data["last_reload"] is None
    assert data["listen"]["rtmp"] == [f"127.0.0.1:{srv.port}"]
    assert data["listen"]["http"] == [f"127.0.0.1:{srv.http_port}"]
    assert data["listen"]["api"] == [f"127.0.0.1:{srv.api_port}"]
    test = api(srv, "config")["data"]
    assert test == {"file": str(srv.conf), "ok": True, "errors": [], "warnings": []}
    srv.send_signal(signal.SIGHUP)
    wait_for(lambda: api(srv, "summaries")["data"]["last_reload"], 15, what="a reload")
    last = api(srv, "summaries")["data"]["last_reload"]
    assert last["ok"] is True and last["at"] > 0
    good = srv.conf.read_text()
    srv.conf.write_text(good + "vhost broken { lisen 1; }\n")
    srv.send_signal(signal.SIGHUP)
    wait_for(lambda: not api(srv, "summaries")["data"]["last_reload"]["ok"], 15, what="a failed reload")
    last = api(srv, "summaries")["data"]["last_reload"]
    assert "lisen" in last["message"] and str(srv.conf) in last["message"], last
    test = api(srv, "config")["data"]
    assert test["ok"] is False and any("lisen" in e for e in test["errors"]), test
    assert api(srv, "summaries")["data"]["reloads"]["failed"] == 1


def test_clients_page_through_a_thousand_with_a_total(srs_server) -> None:
    # 1000 TCP clients that never shake hands: they stay for handshake_timeout
    srv = srs_server(workers=2, http=True, settings={"max_connections": "2000", "handshake_timeout": "300000"})
    socks = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        wait_for(lambda: api(srv, "clients")["total"] >= 1000, 30, what="1000 clients")
        seen: set[str] = set()
        for start in range(0, 1000, 100):
            page = api(srv, f"clients?start={start}&count=100")
            assert len(page["clients"]) == 100 and page["total"] == 1000
            seen |= {c["id"] for c in page["clients"]}
        assert len(seen) == 1000
        assert api(srv, "clients?start=990&count=100")["clients"].__len__() == 10
        one = api(srv, "clients?start=500&count=10")["clients"][0]["id"]
        api(srv, f"clients/{one}", method="DELETE")
        wait_for(lambda: api(srv, "clients")["total"] == 999, 10, what="the kicked client gone")
        assert api(srv, f"clients/{one}")["code"] != 0
    finally:
        for s in socks:
            s.close()
