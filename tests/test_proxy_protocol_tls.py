"""PROXY protocol on TLS listeners (`rtmps { listen 1443 proxy_protocol; }`, `https { listen 8088
proxy_protocol; }`): the load balancer's PROXY header comes in clear before the TLS handshake
(HAProxy in TCP mode passes TLS through), so the listener reads exactly the header off the raw
socket, then hands the socket, ClientHello unread, to TLS."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Clients, Server, free_port, wait_for
from rtmp_tools import RtmpTestClient, run
from tls_certs import Authority

from srv.net.proxy_protocol import ProxyHeaderReader, encode_v1, encode_v2
from srv.rtmp import events as ev


def test_reading_what_the_reader_wants_never_reads_past_the_header() -> None:
    after = b"\x16\x03\x01\x02\x00rest of a ClientHello"
    for header in (encode_v1(("127.0.0.7", 5555), ("127.0.0.1", 1443)),
                   encode_v2(("2001:db8::7", 5555), ("2001:db8::1", 1443)), encode_v2(None),
                   b"PROXY UNKNOWN\r\n"):
        wire, reader, result = header + after, ProxyHeaderReader(), None
        pos = 0
        while result is None:
            n = reader.wanted()
            result = reader.receive_data(wire[pos:pos + n])
            pos += n
        assert pos == len(header) and result[1] == b"", header


@pytest.fixture
def server(srs_server: Callable[..., Server], tmp_path: Path) -> tuple[Server, int, int, Path]:
    authority = Authority(tmp_path / "pki")
    cert, key = authority.issue("server", 1)
    rtmps, https, api = free_port(), free_port(), free_port()
    s = srs_server(
        f"rtmps {{ enabled on; listen 127.0.0.1:{rtmps} proxy_protocol; key {key}; cert {cert}; }}\n"
        f"http_api {{ enabled on; listen 127.0.0.1:{api}; }}\n"
        f"http_server {{ enabled on; listen 127.0.0.1:{free_port()};\n"
        f"    https {{ enabled on; listen 127.0.0.1:{https} proxy_protocol; key {key}; cert {cert}; }} }}\n"
        "vhost __defaultVhost__ { http_remux { enabled on; } }\n",
        settings={"proxy_protocol_trusted": "127.0.0.1"})
    s.api_port = api
    return s, rtmps, https, authority.ca


def clients_of(s: Server) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.api_port}/api/v1/clients?count=100", timeout=10) as r:
        return json.loads(r.read())["clients"]  # type: ignore[no-any-return]


def test_rtmps_and_https_behind_a_proxy_see_the_client_address(
        server: tuple[Server, int, int, Path], clients: Clients) -> None:
    s, rtmps, https, ca = server
    tls = ssl.create_default_context(cafile=str(ca))
    clients.publish(f"{s.url}/live/s")

    async def play_rtmps() -> None:
        c = RtmpTestClient(rtmps, tls=tls, prefix=encode_v1(("127.0.0.7", 5555), ("127.0.0.1", rtmps)))
        c.keep_media = False
        await c.open()
        await c.play("s")
        await c.expect(ev.MediaMessage, timeout=15)
        assert [x["ip"] for x in clients_of(s) if x["type"] == "rtmp-play"] == ["127.0.0.7"]
        await c.close()

    run(play_rtmps())

    raw = socket.create_connection(("127.0.0.1", https), timeout=10)
    raw.sendall(encode_v2(("127.0.0.8", 6666), ("127.0.0.1", https)))
    with tls.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"FLV\x01" not in got:
            chunk = t.recv(65536)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got[:100]
        wait_for(lambda: [x["ip"] for x in clients_of(s) if x["type"] == "flv-play"] == ["127.0.0.8"], 10,
                 what="the https player as 127.0.0.8")

    # a LOCAL header (HAProxy's own check) keeps the balancer's address
    raw = socket.create_connection(("127.0.0.1", https), timeout=10)
    raw.sendall(encode_v2(None))
    with tls.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        assert t.recv(100).startswith(b"HTTP/1.1 200")
        wait_for(lambda: "127.0.0.1" in [x["ip"] for x in clients_of(s) if x["type"] == "flv-play"], 10,
                 what="the LOCAL connection as the balancer itself")


def test_tls_proxy_listeners_refuse_untrusted_peers_and_bad_headers(server: tuple[Server, int, int, Path]) -> None:
    s, rtmps, https, ca = server
    tls = ssl.create_default_context(cafile=str(ca))

    def closed_without_tls(sock: socket.socket, prefix: bytes) -> bool:
        sock.sendall(prefix)
        try:
            with tls.wrap_socket(sock, server_hostname="localhost") as t:
                return t.version() is None  # no TLS session (the close came first: no error raised)
        except (ssl.SSLError, OSError):
            return True

    untrusted = socket.create_connection(("127.0.0.1", rtmps), timeout=10, source_address=("127.0.0.9", 0))
    assert closed_without_tls(untrusted, encode_v1(("127.0.0.7", 1), ("127.0.0.1", rtmps)))
    bad = socket.create_connection(("127.0.0.1", https), timeout=10)
    assert closed_without_tls(bad, b"")  # a ClientHello where the header belongs
    s.wait_log("127.0.0.9:", timeout=10)
    s.wait_log("not in proxy_protocol_trusted")
    s.wait_log("bad PROXY header: no PROXY header")
    # the listeners go on
    raw = socket.create_connection(("127.0.0.1", https), timeout=10)
    raw.sendall(encode_v1(("127.0.0.7", 5555), ("127.0.0.1", https)))
    with tls.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert t.recv(100).startswith(b"HTTP/1.1 404")
