"""A `proxy_protocol` listener of the real server, fed PROXY headers by hand (HAProxy itself is
in test_haproxy.py): the client the header names is the client everywhere (API, logs); LOCAL
keeps the peer; an untrusted peer is refused; bad headers — truncated, oversized, wrong
signature, wrong family, sent twice — close only that connection, with a log line naming the
client and the reason."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.request
from typing import Any

import pytest

from srv.net.proxy_gate import HEADER_TIMEOUT
from srv.net.proxy_protocol import V2_SIGNATURE, encode_v1, encode_v2
from tests.conftest import Server, free_port, wait_for
from tests.rtmp_tools import RtmpTestClient

CLIENT = ("127.0.0.7", 40007)


class Proxied:
    """A server with a plain RTMP port, a PROXY-protocol RTMP port and a PROXY-protocol HTTP
    server, trusting only 127.0.0.1."""

    def __init__(self, start: Any) -> None:
        self.direct, self.rtmp, self.http, self.api = free_port(), free_port(), free_port(), free_port()
        body = (f"http_api {{ enabled on; listen 127.0.0.1:{self.api}; }}\n"
                f"http_server {{ enabled on; listen 127.0.0.1:{self.http} proxy_protocol; }}\n"
                "vhost __defaultVhost__ { http_remux { enabled on; } }\n")
        self.body = body
        self.srv: Server = start(body, workers=1, settings={
            "listen": f"127.0.0.1:{self.direct} 127.0.0.1:{self.rtmp} proxy_protocol",
            "proxy_protocol_trusted": "127.0.0.1 10.1.0.0/16"})

    def clients(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}/api/v1/clients?count=100", timeout=10) as r:
            return json.loads(r.read())["clients"]  # type: ignore[no-any-return]


@pytest.fixture
def proxied(srs_server: Any) -> Proxied:
    return Proxied(srs_server)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def connect(port: int, data: bytes, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    if data:
        sock.sendall(data)
    return sock


async def publish_through(port: int, header: bytes, stream: str) -> RtmpTestClient:
    c = RtmpTestClient(port, prefix=header)
    await c.open()
    status = await c.publish(stream)
    assert status.code == "NetStream.Publish.Start"
    return c


@pytest.mark.parametrize("encode", [encode_v1, encode_v2], ids=["v1", "v2"])
def test_the_client_named_in_the_header_is_the_client_everywhere(proxied: Proxied, encode: Any) -> None:
    async def scenario() -> None:
        c = await publish_through(proxied.rtmp, encode(CLIENT, ("127.0.0.1", proxied.rtmp)), "s")
        try:
            rows = wait_for(lambda: [x for x in proxied.clients() if x["type"] == "fmle-publish"], 10,
                            what="the publisher in /api/v1/clients")
            assert [r["ip"] for r in rows] == ["127.0.0.7"]
            # HTTP-FLV through the PROXY-protocol HTTP listener: that player is 127.0.0.8
            sock = connect(proxied.http, encode(("127.0.0.8", 40008), ("127.0.0.1", proxied.http))
                           + b"GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                wait_for(lambda: [x["ip"] for x in proxied.clients() if x["type"] == "flv-play"] == ["127.0.0.8"],
                         10, what="the HTTP-FLV player as 127.0.0.8")
            finally:
                sock.close()
        finally:
            await c.close()

    asyncio.run(scenario())
    log = proxied.srv.log_text()
    assert "127.0.0.7:40007 accepted" in log
    assert "127.0.0.8:40008 flv-play" in log


def test_a_local_header_keeps_the_peers_address(proxied: Proxied) -> None:
    async def scenario() -> None:
        c = await publish_through(proxied.rtmp, encode_v2(None), "local")
        try:
            rows = wait_for(lambda: [x for x in proxied.clients() if x["type"] == "fmle-publish"], 10,
                            what="the publisher in /api/v1/clients")
            assert [r["ip"] for r in rows] == ["127.0.0.1"]
        finally:
            await c.close()

    asyncio.run(scenario())
    assert "client the peer itself (LOCAL)" in proxied.srv.log_text()


def test_an_untrusted_peer_is_refused_even_with_a_valid_header(proxied: Proxied) -> None:
    for port in (proxied.rtmp, proxied.http):
        sock = connect(port, encode_v1(CLIENT, ("127.0.0.1", port)), source="127.0.0.9")
        assert closed_by_server(sock, 5)
        sock.close()
    proxied.srv.wait_log("127.0.0.9:", count=1)
    lines = [ln for ln in proxied.srv.log_text().splitlines() if "127.0.0.9:" in ln]
    assert lines and all("refused" in ln and "not in proxy_protocol_trusted" in ln for ln in lines)
    assert not any("127.0.0.7" in ln for ln in proxied.srv.log_text().splitlines())
    # the plain listener next to it is not affected
    sock = connect(proxied.direct, b"", source="127.0.0.9")
    assert not closed_by_server(sock, 0.5)
    sock.close()


BAD = {
    "wrong signature": (b"\x03" + bytes(1536), "bad PROXY header: no PROXY header"),
    "wrong v2 signature": (b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + bytes(12), "wrong v2 signature"),
    "oversized v1": (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", "longer than 107 bytes"),
    "oversized v2": (V2_SIGNATURE + b"\x21\x11\xff\xff", "v2 header of 65535 bytes"),
    "wrong family v1": (b"PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n", "unknown family 'UDP4'"),
    "wrong family v2": (V2_SIGNATURE + b"\x21\x31\x00\xd8" + bytes(216), "unsupported address family (AF_UNIX)"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_header_closes_that_connection_with_the_reason(proxied: Proxied, name: str) -> None:
    data, why = BAD[name]
    bystander = connect(proxied.rtmp, encode_v1(("10.1.2.3", 5), ("127.0.0.1", 1)))  # a header, then idle
    sock = connect(proxied.rtmp, data)
    assert closed_by_server(sock, 5)
    sock.close()
    proxied.srv.wait_log(why)
    line = next(ln for ln in proxied.srv.log_text().splitlines() if why in ln)
    assert "127.0.0.1:" in line and "refused" in line
    # only that connection: the one beside it is still open
    assert not closed_by_server(bystander, 0.3)
    bystander.close()


def test_a_truncated_header_is_dropped_after_a_few_seconds(proxied: Proxied) -> None:
    partials = ((proxied.rtmp, b"PROXY TCP4 127.0.0.7 127.0.0"), (proxied.http, encode_v2(CLIENT, CLIENT)[:20]))
    for port, partial in partials:
        sock = connect(port, partial)
        started = time.monotonic()
        assert closed_by_server(sock, HEADER_TIMEOUT + 5)
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5  # not before its time is up
        sock.close()
    proxied.srv.wait_log(f"no complete PROXY header within {HEADER_TIMEOUT:g}s", count=2)
    # a peer that closes mid-header is one line too
    sock = connect(proxied.rtmp, b"PROXY TCP4 127")
    sock.shutdown(socket.SHUT_WR)
    assert closed_by_server(sock, 5)
    sock.close()
    proxied.srv.wait_log("closed before its PROXY header was complete")


def test_a_header_sent_twice_is_the_clients_data_and_fails_its_handshake(proxied: Proxied) -> None:
    """The second header reaches RTMP as the handshake's first bytes: 'P' (0x50) or '\\r' (0x0d)
    is no RTMP version, so that client — the one the first header named — is closed."""
    for encode, byte in ((encode_v1, "0x50"), (encode_v2, "0x0d")):
        first = encode(CLIENT, ("127.0.0.1", proxied.rtmp))
        second = encode(("10.9.9.9", 9), ("127.0.0.1", proxied.rtmp))
        sock = connect(proxied.rtmp, first + second)
        assert closed_by_server(sock, 5)
        sock.close()
        proxied.srv.wait_log(f"bad handshake version {byte}")
    lines = [ln for ln in proxied.srv.log_text().splitlines() if "bad handshake version" in ln]
    assert len(lines) == 2 and all("127.0.0.7:40007" in ln for ln in lines)
    assert "10.9.9.9" not in proxied.srv.log_text()


def test_reload_moves_the_flag_and_the_trust_without_a_new_socket(proxied: Proxied) -> None:
    """SIGHUP: the direct port becomes a PROXY-protocol one (trusting only 127.0.0.9) and the
    PROXY-protocol port a plain one; both ports keep answering."""
    srv = proxied.srv
    srv.header = srv.header.replace(
        f"listen 127.0.0.1:{proxied.direct} 127.0.0.1:{proxied.rtmp} proxy_protocol;",
        f"listen 127.0.0.1:{proxied.direct} proxy_protocol 127.0.0.1:{proxied.rtmp};").replace(
        "proxy_protocol_trusted 127.0.0.1 10.1.0.0/16;", "proxy_protocol_trusted 127.0.0.9;")
    srv.write_conf(proxied.body)
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok")
    wait_for(lambda: f"now listens on rtmp://127.0.0.1:{proxied.direct} proxy_protocol" in srv.log_text(),
             10, what="the new listener")

    async def scenario() -> None:
        plain = RtmpTestClient(proxied.rtmp)  # no header needed any more
        await plain.open()
        await plain.close()
        c = RtmpTestClient(proxied.direct, source="127.0.0.9",
                           prefix=encode_v1(CLIENT, ("127.0.0.1", proxied.direct)))
        await c.open()
        assert (await c.publish("moved")).code == "NetStream.Publish.Start"
        try:
            assert [x["ip"] for x in proxied.clients() if x["type"] == "fmle-publish"] == ["127.0.0.7"]
        finally:
            await c.close()

    asyncio.run(scenario())
    sock = connect(proxied.direct, encode_v1(CLIENT, ("127.0.0.1", proxied.direct)))  # from 127.0.0.1
    assert closed_by_server(sock, 5)
    sock.close()
    srv.wait_log("127.0.0.1:", count=1)
    assert any("not in proxy_protocol_trusted" in ln for ln in srv.log_text().splitlines())
