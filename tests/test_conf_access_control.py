"""SRS's access control is enforced (`security`: tests/test_access.py, `http_hooks`:
tests/test_http_hooks.py, `http_api { auth }`: tests/test_http_api_auth.py), so switching any of
it on, in the file or from SRS's environment variables, is an ordinary directive: no warning,
and the server starts with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from srv.conf import load

DENY_PUBLISH = "vhost __defaultVhost__ {\n    security {\n        enabled on;\n        deny publish all;\n    }\n}\n"
HOOKS = ("vhost __defaultVhost__ {\n    http_hooks {\n        enabled on;\n"
         "        on_publish http://127.0.0.1:8085/api/v1/streams;\n    }\n}\n")
API_AUTH = ("http_api {\n    enabled on;\n    listen 127.0.0.1:1985;\n    auth {\n        enabled on;\n"
            "        username admin;\n        password admin;\n    }\n}\nvhost __defaultVhost__ { }\n")


@pytest.mark.parametrize("text", [DENY_PUBLISH, HOOKS, API_AUTH], ids=["security", "http_hooks", "http_api-auth"])
def test_enabled_access_control_is_an_ordinary_block(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.conf"
    path.write_text(text)
    config = load(str(path), {})
    assert config.warnings == ()
    vhost = config.vhosts["__defaultVhost__"]
    assert vhost.security.enabled or vhost.http_hooks.enabled or config.http_api.auth.enabled


@pytest.mark.parametrize("variable, enabled", [
    ("SRS_VHOST_SECURITY_ENABLED", lambda c: c.vhosts["a"].security.enabled),
    ("SRS_VHOST_HTTP_HOOKS_ENABLED", lambda c: c.vhosts["a"].http_hooks.enabled),
    ("SRS_HTTP_API_AUTH_ENABLED", lambda c: c.http_api.auth.enabled),
])
def test_the_environment_switches_access_control_on_and_off(tmp_path: Path, variable: str, enabled) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.conf"
    path.write_text("http_api { enabled on; listen 127.0.0.1:1985; auth { username a; password b; } }\n"
                    "vhost a { security { enabled on; } http_hooks { enabled on; } }\n")
    assert enabled(load(str(path), {variable: "on"}))  # as SRS reads it, for every vhost
    assert not enabled(load(str(path), {variable: "off"}))


def test_api_and_exporter_listen_on_loopback_only_when_told(srs_server) -> None:  # type: ignore[no-untyped-def]
    import json
    import urllib.request

    import psutil

    srv = srs_server(workers=1, http=True)  # http_api/exporter { listen 127.0.0.1:port; } as conf/srs.conf
    bound = {c.laddr.port: c.laddr.ip for c in psutil.Process(srv.master_pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN}
    assert bound[srv.api_port] == "127.0.0.1" and bound[srv.exporter_port] == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/api/v1/versions", timeout=10) as r:
        assert json.load(r)["code"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.exporter_port}/metrics", timeout=10) as r:
        assert b"srs_" in r.read()
