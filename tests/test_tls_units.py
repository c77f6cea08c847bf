"""TLS without a server: which sockets the config asks for (`listen_specs`), where an RTMPS
forward goes (`resolve`), and the contexts `srv.net.tls` builds from files."""

from __future__ import annotations

from pathlib import Path

import pytest
from tls_certs import Authority

from srv.app.forward_target import on_forward_urls, resolve
from srv.conf import load
from srv.conf.listen import ListenError, ListenSpec, listen_specs
from srv.conf.model import Endpoint, ServerConfig
from srv.net.tls import TlsError, client_context, server_context


def specs(tmp_path: Path, text: str) -> list[ListenSpec]:
    path = tmp_path / "x.conf"
    path.write_text(text + "vhost __defaultVhost__ { }\n")
    return listen_specs(load(str(path), {}))


def test_rtmps_and_https_sockets_carry_their_files(tmp_path):
    got = specs(tmp_path, "listen 1935;\nrtmps { enabled on; listen 1443 [::1]:1444; key k; cert c; }\n"
                          "http_server { enabled on; https { enabled on; key k2; cert c2; } }\n"
                          "http_api { enabled on; https { enabled on; } }\n")
    assert [str(s) for s in got] == ["rtmp://0.0.0.0:1935", "http(api)://0.0.0.0:1985",
                                     "http(server)://0.0.0.0:8080", "rtmps://0.0.0.0:1443", "rtmps://[::1]:1444",
                                     "https(api)://0.0.0.0:1990", "https(server)://0.0.0.0:8088"]
    assert got[3].tls == ("c", "k") and got[6].tls == ("c2", "k2")
    assert got[5].tls == ("./conf/server.crt", "./conf/server.key")


def test_disabled_blocks_open_nothing(tmp_path):
    # https needs its http_server/http_api enabled, as in SRS
    got = specs(tmp_path, "rtmps { enabled off; }\nhttp_server { enabled off; https { enabled on; } }\n")
    assert [s.tls for s in got] == [None]


@pytest.mark.parametrize("text, message", [
    ("listen 1443;\nrtmps { enabled on; listen 1443; }\n", "listen 0.0.0.0:1443: used by both rtmp://0.0.0.0:1443 and"),
    ("http_api { enabled on; https { enabled on; listen 8088; key a; } }\n"
     "http_server { enabled on; https { enabled on; } }\n", "with other certificate files"),
    ("rtmps { enabled on; listen 8088; }\nhttp_server { enabled on; https { enabled on; } }\n",
     "listen 0.0.0.0:8088: used by both rtmps://0.0.0.0:8088 and https"),
])
def test_a_tls_port_serves_one_thing(tmp_path, text, message):
    with pytest.raises(ListenError) as info:
        specs(tmp_path, text)
    assert message in str(info.value)


def test_rtmps_on_dials_host_port_over_tls_as_srs7():
    t = resolve("127.0.0.1:19430", "__defaultVhost__", "live", "s", {}, None, rtmps=True)
    assert (t.host, t.port, t.tls, t.tc_url) == ("127.0.0.1", 19430, True, "rtmps://127.0.0.1:19430/live")
    assert not resolve("127.0.0.1:19430", "__defaultVhost__", "live", "s", {}, None).tls


def test_rtmps_urls_are_tls_and_default_to_port_443():
    t = resolve("rtmps://live.example.com/app/[stream]?k=1", "__defaultVhost__", "live", "s", {}, None)
    assert (t.host, t.port, t.app, t.stream, t.tls) == ("live.example.com", 443, "app", "s?k=1", True)
    assert t.tc_url == "rtmps://live.example.com:443/app"
    assert on_forward_urls(200, '{"code": 0, "data": {"urls": ["rtmps://a/b/c"]}}') == ["rtmps://a/b/c"]


def test_contexts_from_files(tmp_path):
    ca = Authority(tmp_path)
    cert, key = ca.issue("s", 7)
    assert server_context(str(cert), str(key)).minimum_version.name == "TLSv1_2"
    with pytest.raises(TlsError, match=f"cannot load certificate {cert} with key {cert}: "):
        server_context(str(cert), str(cert))  # no key in it
    with pytest.raises(TlsError, match=f"cannot load certificate {tmp_path}/none.crt .*No such file"):
        server_context(str(tmp_path / "none.crt"), str(key))
    assert client_context(True, str(ca.ca)).check_hostname
    assert not client_context(False).check_hostname
    with pytest.raises(TlsError, match="cannot load CA file"):
        client_context(True, str(tmp_path / "none.crt"))


def test_rtmps_defaults_are_srs7s():
    rtmps = ServerConfig("x").rtmps
    assert (rtmps.enabled, rtmps.listen, rtmps.key, rtmps.cert) == (
        False, (Endpoint("0.0.0.0", 1443),), "./conf/server.key", "./conf/server.crt")


def test_an_https_api_beyond_loopback_without_auth_is_warned_of(tmp_path):
    path = tmp_path / "x.conf"
    path.write_text("http_api { enabled on; listen 127.0.0.1:1985; https { enabled on; } }\nvhost v { }\n")
    assert any("the HTTP API listens on 0.0.0.0:1990 without auth" in w for w in load(str(path), {}).warnings)
    path.write_text("http_api { enabled on; listen 127.0.0.1:1985; https { enabled on; listen 127.0.0.1:1990; } }\n"
                    "vhost v { }\n")
    assert load(str(path), {}).warnings == ()
