"""SRS's heartbeat { }: the master POSTs SRS's register body to a proxy on an interval."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Server, wait_for
from register_server import RegisterServer

from srv.conf.errors import ConfigErrors
from srv.conf.loader import load


@pytest.fixture
def register() -> Iterator[RegisterServer]:
    r = RegisterServer()
    yield r
    r.close()


def _heartbeat(url: str, ports: str = "on") -> str:
    return (f"heartbeat {{ enabled on; interval 0.3; url {url}; device_id origin-x; ports {ports}; }}\n"
            "vhost __defaultVhost__ { }\n")


def test_origin_posts_srs_register_body_from_the_master_only(
        srs_server: Callable[..., Server], register: RegisterServer) -> None:
    srv = srs_server(_heartbeat(register.url), workers=2, http=True)
    wait_for(lambda: register.count() >= 4, 30, what="4 heartbeats")
    bodies = list(register.bodies)
    first = bodies[0]
    assert first["device_id"] == "origin-x"
    assert first["ip"] == "127.0.0.1"  # the RTMP listen address: what a proxy dials
    assert first["pid"] == str(srv.master_pid)  # the master sends, not each worker
    assert first["server"] and first["service"]
    assert first["rtmp"] == [f"tcp://127.0.0.1:{srv.port}"]
    assert first["http"] == [f"tcp://127.0.0.1:{srv.http_port}"]
    assert first["api"] == [f"tcp://127.0.0.1:{srv.api_port}"]
    # one sender: the same process and service every time, never one POST per worker
    ids = {(b["pid"], b["service"], b["server"]) for b in bodies}
    assert ids == {(first["pid"], first["service"], first["server"])}
    srv.wait_log("heartbeat: " + register.url + " accepted (peer pid 4242)")


def test_ports_off_sends_identity_only(srs_server: Callable[..., Server], register: RegisterServer) -> None:
    srs_server(_heartbeat(register.url, ports="off"), workers=1)
    wait_for(lambda: register.count() >= 1, 30, what="a heartbeat")
    assert not {"rtmp", "http", "api"} & set(register.bodies[0])


def test_failures_are_logged_once_then_the_recovery(
        srs_server: Callable[..., Server], register: RegisterServer) -> None:
    register.status = 500
    srv = srs_server(_heartbeat(register.url), workers=1)
    wait_for(lambda: register.count() >= 4, 30, what="4 heartbeats")
    assert srv.log_text().count(f"heartbeat: POST to {register.url} failed: HTTP status 500") == 1
    register.status = 200
    srv.wait_log("accepted (peer pid 4242) after failing: HTTP status 500")


def test_a_refused_connection_is_a_failure_and_the_server_keeps_serving(
        srs_server: Callable[..., Server], register: RegisterServer) -> None:
    url = register.url
    register.close()  # nobody listens there any more
    srv = srs_server(_heartbeat(url), workers=1)
    srv.wait_log(f"heartbeat: POST to {url} failed: connect: Connection refused")
    assert srv.proc is not None and srv.proc.poll() is None


def test_heartbeat_url_must_be_http(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("heartbeat { enabled on; url ftp://x/; }\nvhost __defaultVhost__ { }\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    assert 'invalid URL "ftp://x/"' in str(info.value)


def test_srs7_origin_for_proxy_conf_loads_its_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parent / "data" / "srs-trunk-conf")
    config = load("conf/origin2-for-proxy.conf", {})
    hb = config.heartbeat
    assert (hb.enabled, hb.interval, hb.url, hb.device_id, hb.ports) == (
        True, 9.0, "http://127.0.0.1:12025/api/v1/srs/register", "origin2", True)
    assert not any("heartbeat" in w for w in config.warnings)
