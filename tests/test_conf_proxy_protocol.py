"""`listen ... proxy_protocol;` and `proxy_protocol_trusted` in the config language: which
sockets expect PROXY headers, who may send them, and the mistakes reported with file:line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from srv.conf import ConfigErrors, Endpoint, ServerConfig, load
from srv.conf.listen import ListenError, listen_specs
from srv.net.proxy_gate import is_trusted

VHOST = "vhost __defaultVhost__ { }\n"


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ServerConfig:
    path = tmp_path / "x.conf"
    path.write_text(text + VHOST)
    return load(str(path), env or {})


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "x.conf"
    path.write_text(text + VHOST)
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    return [str(e).replace(str(path), "x.conf") for e in info.value.errors]


def test_proxy_protocol_marks_the_address_before_it(tmp_path: Path) -> None:
    config = _load(tmp_path, "listen 1935 127.0.0.1:19350 proxy_protocol;\n"
                             "proxy_protocol_trusted 10.0.0.0/8 127.0.0.1 ::1;\n"
                             "http_api { enabled on; listen 1985 proxy_protocol; }\n"
                             "http_server { enabled on; listen 8080; }\n")
    assert [(str(e), e.proxy_protocol) for e in config.listen] == [
        ("0.0.0.0:1935", False), ("127.0.0.1:19350", True)]
    assert config.http_api.listen.proxy_protocol and not config.http_server.listen.proxy_protocol
    assert config.proxy_protocol_trusted == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"),
                                             ipaddress.ip_network("::1/128"))
    specs = {str(s) for s in listen_specs(config)}
    assert specs == {"rtmp://0.0.0.0:1935", "rtmp://127.0.0.1:19350 proxy_protocol",
                     "http(api)://0.0.0.0:1985 proxy_protocol", "http(server)://0.0.0.0:8080"}


def test_the_flag_is_not_part_of_the_address_but_changes_the_socket(tmp_path: Path) -> None:
    """A reload that adds proxy_protocol keeps the port's socket (same endpoint) but serves it
    with the PROXY gate (another ListenSpec)."""
    plain = _load(tmp_path, "listen 1935;\n")
    marked = _load(tmp_path, "listen 1935 proxy_protocol;\nproxy_protocol_trusted 127.0.0.1;\n")
    assert plain.listen == marked.listen == (Endpoint("0.0.0.0", 1935),)
    assert listen_specs(plain) != listen_specs(marked)
    assert [s.endpoint for s in listen_specs(plain)] == [s.endpoint for s in listen_specs(marked)]


def test_environment_overrides_take_the_same_syntax(tmp_path: Path) -> None:
    config = _load(tmp_path, "listen 1935;\n", {"SRS_LISTEN": "1936 proxy_protocol",
                                                "SRS_PROXY_PROTOCOL_TRUSTED": "192.168.0.0/16"})
    assert [(e.port, e.proxy_protocol) for e in config.listen] == [(1936, True)]
    assert config.proxy_protocol_trusted == (ipaddress.ip_network("192.168.0.0/16"),)


@pytest.mark.parametrize("text,message", [
    ("listen proxy_protocol 1935;\nproxy_protocol_trusted 127.0.0.1;\n",
     'x.conf:1:1: "proxy_protocol" must follow a listen address'),
    ("listen 1935 proxy_protocol proxy_protocol;\nproxy_protocol_trusted 127.0.0.1;\n",
     'x.conf:1:1: "proxy_protocol" must follow a listen address'),
    ("listen 1935 proxy_protocol;\n",
     "x.conf:1:1: a listen address has proxy_protocol, but proxy_protocol_trusted is not set"),
    ("http_server { enabled on; listen 8080 proxy_protocol; }\n",
     "x.conf:1:1: a listen address has proxy_protocol, but proxy_protocol_trusted is not set"),
    ("http_api { listen 1985 1986; }\n", "x.conf:1:12: one listen address expected, got 2"),
    ("proxy_protocol_trusted 10.0.0.1/8;\n", 'x.conf:1:24: invalid address or CIDR block "10.0.0.1/8"'),
    ("proxy_protocol_trusted haproxy.local;\n", 'x.conf:1:24: invalid address or CIDR block "haproxy.local"'),
])
def test_mistakes_are_reported_where_they_are(tmp_path: Path, text: str, message: str) -> None:
    errors = _errors(tmp_path, text)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_services_sharing_a_port_must_agree_on_proxy_protocol(tmp_path: Path) -> None:
    config = _load(tmp_path, "proxy_protocol_trusted 127.0.0.1;\n"
                             "http_api { enabled on; listen 8080 proxy_protocol; }\n"
                             "http_server { enabled on; listen 8080; }\n")
    with pytest.raises(ListenError, match="proxy_protocol is set for only some of them"):
        listen_specs(config)


def test_trust_is_by_address_and_block_with_ipv4_mapped_peers_as_ipv4() -> None:
    trusted = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert is_trusted("10.2.3.4", trusted)
    assert is_trusted("::ffff:10.2.3.4", trusted)
    assert is_trusted("::1", trusted)
    assert not is_trusted("11.0.0.1", trusted)
    assert not is_trusted("127.0.0.1", trusted)
    assert not is_trusted("not an ip", trusted)
