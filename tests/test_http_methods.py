"""HEAD and CORS on the real server: HEAD gets what GET would (status and headers) without a
body on every kind of URL, and no page from another origin is allowed to DELETE through the API.
"""

from __future__ import annotations

import socket
from typing import Any

from tests.conftest import Clients, Server

REMUX = "vhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }\n"


def exchange(port: int, requests: bytes, timeout: float = 10) -> bytes:
    """Send raw requests on one connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(requests)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def head_of(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers lower-cased, the rest) of the first response in `data`."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data[:200]
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split(" ", 2)[1]), headers, rest


def request(method: str, path: str, close: bool = True, extra: str = "") -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{conn}{extra}\r\n".encode()


def test_head_is_answered_like_get_without_a_body(srs_server: Any, clients: Clients) -> None:
    srv: Server = srs_server(REMUX, workers=1, http=True)
    (srv.dir / "page.html").write_text("<p>hello</p>")
    cases = [
        (srv.api_port, "/api/v1/versions"),   # the API (used to log a traceback and send nothing)
        (srv.api_port, "/api/v1/streams"),
        (srv.api_port, "/api/v1/nothing"),    # an API 404
        (srv.http_port, "/missing.html"),     # a missing file
        (srv.http_port, "/page.html"),
        (srv.http_port, "/health"),
        (srv.exporter_port, "/metrics"),
    ]
    for port, path in cases:
        # HEAD then GET on one keep-alive connection: the HEAD reply must be framed exactly
        # (no body after its head), else the GET's reply would not parse
        out = exchange(port, request("HEAD", path, close=False) + request("GET", path))
        status, headers, rest = head_of(out)
        get_status, get_headers, get_body = head_of(rest)
        assert status == get_status and status in (200, 404), (path, out[:300])
        assert headers["content-type"] == get_headers["content-type"], path
        assert "content-length" in headers, path
        if path not in ("/api/v1/streams", "/metrics"):  # these two change between requests
            assert int(headers["content-length"]) == len(get_body), path
        assert rest.startswith(b"HTTP/1.1 "), (path, rest[:100])  # nothing between the two replies
    assert "Traceback" not in srv.log_text()


def test_head_on_an_flv_mount_gives_the_play_headers_and_no_stream(srs_server: Any, clients: Clients) -> None:
    srv: Server = srs_server(REMUX, workers=1, http=True)
    get = socket.create_connection(("127.0.0.1", srv.http_port), timeout=10)
    get.sendall(request("GET", "/live/s.flv", close=False))  # nobody publishes: a GET waits
    data = b""
    while b"\r\n\r\n" not in data:
        data += get.recv(4096)
    get_status, get_headers, _ = head_of(data)
    get.close()
    out = exchange(srv.http_port, request("HEAD", "/live/s.flv", close=False))  # the server closes it
    status, headers, rest = head_of(out)
    assert status == get_status == 200
    assert headers["content-type"] == get_headers["content-type"] == "video/x-flv"
    assert headers.get("transfer-encoding") == get_headers.get("transfer-encoding") == "chunked"
    assert rest == b""  # no FLV header, no chunk, not even the last chunk of a chunked body
    assert "flv-play" not in exchange(srv.api_port, request("GET", "/api/v1/clients")).decode()
    assert "Traceback" not in srv.log_text()


def test_api_preflight_never_allows_delete_but_get_stays_cross_origin(srs_server: Any) -> None:
    srv: Server = srs_server(REMUX, workers=1, http=True)
    origin = "Origin: http://evil.example\r\n"
    for method in ("DELETE", "POST", "PUT"):
        out = exchange(srv.api_port, request("OPTIONS", "/api/v1/clients/1-1",
                                             extra=origin + f"Access-Control-Request-Method: {method}\r\n"))
        status, headers, _ = head_of(out)
        allowed = {m.strip() for m in headers.get("access-control-allow-methods", "").split(",")}
        assert method not in allowed, (method, headers)
    status, headers, _ = head_of(exchange(srv.api_port, request(
        "OPTIONS", "/api/v1/streams", extra=origin + "Access-Control-Request-Method: GET\r\n")))
    assert status == 200 and "GET" in headers["access-control-allow-methods"]
    status, headers, body = head_of(exchange(srv.api_port, request("GET", "/api/v1/versions", extra=origin)))
    assert status == 200 and headers["access-control-allow-origin"] == "*" and b'"version"' in body
