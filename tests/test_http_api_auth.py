"""`http_api { auth { } }` (SRS 5+): HTTP Basic on every API route, on the real server.

Without credentials, or with wrong ones, the API answers 401 with a Basic challenge and does
nothing: no client is kicked, no reload happens. The exporter and the health checks stay open.
The password is compared in constant time (a pure function, tested here too) and never logged.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from srv.conf import ConfigErrors, load
from srv.conf.model import ApiAuthConfig
from srv.http import auth
from tests.conftest import SRS, Clients, Server, wait_for

PASSWORD = "s3cret-Pa55:with-colon"
RIGHT = ("admin", PASSWORD)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# ---- the decision ---------------------------------------------------------------------------------


ON = ApiAuthConfig(enabled=True, username="admin", password=PASSWORD)


@pytest.mark.parametrize("header, why", [
    (None, "no credentials"),
    (b"", "no credentials"),
    (b"Bearer abc", "not Basic credentials"),
    (b"Basic !!!", "malformed Basic credentials"),
    (b"Basic " + base64.b64encode(b"admin"), "malformed Basic credentials"),  # no colon
    (basic("admin", "wrong").encode(), "wrong username or password"),
    (basic("root", PASSWORD).encode(), "wrong username or password"),
    (basic("admin", PASSWORD + "x").encode(), "wrong username or password"),
    (basic("admin", "").encode(), "wrong username or password"),
])
def test_wrong_or_missing_credentials_are_refused_without_echoing_them(header: bytes | None, why: str) -> None:
    assert auth.refusal(ON, header) == why
    assert PASSWORD not in why and "admin" not in why


def test_right_credentials_pass_whatever_the_scheme_case() -> None:
    assert auth.refusal(ON, basic(*RIGHT).encode()) is None
    assert auth.refusal(ON, b"basic " + basic(*RIGHT).encode().split()[1]) is None
    assert auth.refusal(ApiAuthConfig(), None) is None  # auth off: everyone passes


def test_the_password_never_shows_in_the_config_repr() -> None:
    assert PASSWORD not in repr(ON) and "admin" in repr(ON)


# ---- the config -----------------------------------------------------------------------------------


def test_auth_without_a_password_does_not_load(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("http_api {\n    enabled on;\n    auth {\n        enabled on;\n        username admin;\n"
                    "    }\n}\nvhost __defaultVhost__ { }\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    assert [str(e) for e in info.value.errors] == [
        f"{path}:4:9: auth is enabled without a username and a password"]
    config = load(str(path), {"SRS_HTTP_API_AUTH_PASSWORD": "from-env"})  # SRS's variable
    assert config.http_api.auth == ApiAuthConfig(True, "admin", "from-env")
    path.write_text("http_api { enabled on; }\nvhost __defaultVhost__ { }\n")
    config = load(str(path), {"SRS_HTTP_API_AUTH_ENABLED": "on", "SRS_HTTP_API_AUTH_USERNAME": "u",
                              "SRS_HTTP_API_AUTH_PASSWORD": "p"})
    assert config.http_api.auth == ApiAuthConfig(True, "u", "p")


def run_t(tmp_path: Path, http_api: str) -> str:
    conf = tmp_path / "t.conf"
    conf.write_text(f"listen 127.0.0.1:1;\npid {tmp_path / 'srs.pid'};\ndaemon off;\n"
                    f"http_api {{ {http_api} }}\nvhost __defaultVhost__ {{ }}\n")
    out = subprocess.run([str(SRS), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0 and "test is successful" in out.stderr, out.stderr
    return out.stderr


@pytest.mark.parametrize("http_api, warned", [
    ("enabled on; listen 1985;", True),
    ("enabled on; listen 10.1.2.3:1985;", True),
    ("enabled on; listen [::]:1985;", True),
    ("enabled on; listen 1985; auth { enabled on; username a; password b; }", False),
    ("enabled on; listen 127.0.0.1:1985;", False),
    ("enabled on; listen 127.0.0.2:1985;", False),
    ("enabled on; listen [::1]:1985;", False),
    ("enabled off; listen 1985;", False),
])
def test_t_warns_of_an_api_beyond_loopback_without_auth(tmp_path: Path, http_api: str, warned: bool) -> None:
    err = run_t(tmp_path, http_api)
    assert ("without auth: whoever reaches it can kick clients" in err) is warned, err
    assert "srs: warning:" in err if warned else "warning" not in err


# ---- the real server ------------------------------------------------------------------------------


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, "", workers=2)
    srv.write_conf(
        f"http_api {{ enabled on; listen 127.0.0.1:{srv.api_port}; crossdomain on;\n"
        f"  raw_api {{ enabled on; allow_reload on; }}\n"
        f"  auth {{ enabled on; username {RIGHT[0]}; password {PASSWORD}; }} }}\n"
        f"exporter {{ enabled on; listen 127.0.0.1:{srv.exporter_port}; }}\n"
        "vhost __defaultVhost__ { }\n")
    try:
        yield srv.start()
    finally:
        srv.close()


def call(port: int, method: str, path: str, authorization: str | None = None,
         extra: str = "") -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (any worker may answer): status, headers, body."""
    creds = f"Authorization: {authorization}\r\n" if authorization is not None else ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{creds}{extra}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


def api(srv: Server, method: str, path: str) -> dict[str, Any]:
    status, _, body = call(srv.api_port, method, path, basic(*RIGHT))
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


WRONG = [None, basic("admin", "wrong"), basic(PASSWORD, PASSWORD), "Bearer " + PASSWORD, "Basic %%%"]


def test_every_api_route_wants_credentials(api_server: Server) -> None:
    srv = api_server
    for path in ("/api", "/api/v1", "/api/v1/versions", "/api/v1/summaries", "/api/v1/streams",
                 "/api/v1/clients", "/api/v1/raw?rpc=raw", "/api/v1/nothing"):
        for creds in WRONG:
            status, headers, body = call(srv.api_port, "GET", path, creds)
            assert status == 401, (path, creds, body)
            assert headers["www-authenticate"].startswith('Basic realm="'), headers
            assert b'"code"' not in body  # nothing of the API's answer leaks
    assert api(srv, "GET", "/api/v1/versions")["code"] == 0
    assert api(srv, "GET", "/api/v1/raw?rpc=raw")["data"]["allow_reload"] is True
    # HEAD gets GET's status and challenge; the exporter and health checks stay open
    status, headers, body = call(srv.api_port, "HEAD", "/api/v1/versions")
    assert status == 401 and "www-authenticate" in headers and body == b""
    assert call(srv.exporter_port, "GET", "/metrics")[0] == 200
    assert call(srv.api_port, "GET", "/health")[0] == 200


def test_a_401_still_carries_what_a_cross_origin_page_needs(api_server: Server) -> None:
    origin = "Origin: http://console.example\r\n"
    status, headers, _ = call(api_server.api_port, "GET", "/api/v1/streams", None, origin)
    assert status == 401 and headers["access-control-allow-origin"] == "*"
    assert "WWW-Authenticate" in headers["access-control-expose-headers"]
    # the preflight carries no credentials (as in SRS): it is answered, and lets a page that
    # knows the password send it, while still never allowing DELETE cross-origin
    status, headers, _ = call(api_server.api_port, "OPTIONS", "/api/v1/clients/1-1", None,
                              origin + "Access-Control-Request-Method: DELETE\r\n"
                                       "Access-Control-Request-Headers: authorization\r\n")
    assert status == 200 and "Authorization" in headers["access-control-allow-headers"]
    assert "DELETE" not in headers["access-control-allow-methods"]


def test_kick_without_credentials_kicks_no_one(api_server: Server, clients: Clients) -> None:
    srv = api_server
    ffmpeg = clients.publish(f"{srv.url}/live/s")
    wait_for(lambda: [s["publish"]["active"] for s in api(srv, "GET", "/api/v1/streams")["streams"]] == [True],
             15, interval=0.2, what="the stream published")
    cid = api(srv, "GET", "/api/v1/clients")["clients"][0]["id"]
    for creds in WRONG:
        assert call(srv.api_port, "DELETE", f"/api/v1/clients/{cid}", creds)[0] == 401
    srv.wait_log("refused: wrong username or password", count=2)
    assert ffmpeg.poll() is None
    assert [c["id"] for c in api(srv, "GET", "/api/v1/clients")["clients"]] == [cid]
    assert api(srv, "GET", "/api/v1/streams")["streams"][0]["publish"]["active"]
    assert api(srv, "DELETE", f"/api/v1/clients/{cid}")["code"] == 0  # the same request, authorized
    wait_for(lambda: not api(srv, "GET", "/api/v1/clients")["clients"], 15, what="the publisher kicked")


def test_reload_without_credentials_reloads_nothing(api_server: Server) -> None:
    srv = api_server
    for creds in WRONG:
        assert call(srv.api_port, "GET", "/api/v1/raw?rpc=reload", creds)[0] == 401
    srv.wait_log("refused: no credentials")
    assert api(srv, "GET", "/api/v1/summaries")["data"]["reloads"] == {"ok": 0, "failed": 0}
    assert "reload ok" not in srv.log_text() and "reload failed" not in srv.log_text()
    assert api(srv, "GET", "/api/v1/raw?rpc=reload")["code"] == 0
    srv.wait_log("reload ok")
    assert api(srv, "GET", "/api/v1/summaries")["data"]["reloads"]["ok"] == 1


def test_the_password_never_reaches_the_log(api_server: Server) -> None:
    srv = api_server
    for creds in [*WRONG, basic(*RIGHT), basic(PASSWORD, "x")]:
        call(srv.api_port, "GET", f"/api/v1/versions?p={PASSWORD}", creds)
    srv.wait_log("api GET /api/v1/versions refused", count=len(WRONG) + 1)
    srv.send_signal(signal.SIGHUP)  # a reload logs what changed
    srv.wait_log("reload ok")
    text = srv.log_text()
    secret = PASSWORD.split(":")[0]
    assert secret not in text and base64.b64encode(PASSWORD.encode()).decode()[:12] not in text
    rejected = [ln for ln in call(srv.exporter_port, "GET", "/metrics")[2].decode().splitlines()
                if ln.startswith('srs_connections_rejected_total{reason="api_auth"}')]
    assert rejected and float(rejected[0].split()[-1]) == len(WRONG) + 1
