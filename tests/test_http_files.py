"""Files over HTTP the way players fetch them: keep-alive requests answered without h11 (the
bytes must be what h11 frames), bodies by `os.sendfile` on plain TCP (a slow reader gets every
byte, a client leaving mid-file leaves no descriptor behind), and Range requests as nginx
answers them (206, 416, a second range ignored), checked with curl, ffmpeg and urllib over HTTP
and HTTPS.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, free_port, wait_for, worker_procs
from test_http_hls import hls_vhost, start, write_stream
from test_http_methods import REMUX, exchange, head_of, request
from test_segcache import Response
from tls_certs import Authority

from srv.http import ranges, static
from srv.http.simple_request import parse

# ---- sans-I/O parts -----------------------------------------------------------------------------


def test_simple_request_takes_one_whole_plain_get_or_head_and_leaves_the_rest_to_h11() -> None:
    plain = b"GET /live/s-1.ts?x=1 HTTP/1.1\r\nHost: a.com\r\nUser-Agent: hls.js\r\nRange: bytes=0-9\r\n\r\n"
    req = parse(plain, 16384)
    assert req is not None and req.method == b"GET" and req.target == b"/live/s-1.ts?x=1"
    assert dict(req.headers) == {b"host": b"a.com", b"user-agent": b"hls.js", b"range": b"bytes=0-9"}
    assert parse(b"HEAD / HTTP/1.1\r\nhost: x\r\nConnection: Keep-Alive\r\n\r\n", 16384) is not None
    for refused in (
        plain[:-2],                                                   # incomplete
        plain + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",                 # pipelined
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",                         # HTTP/1.0: h11 closes after
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",    # a body
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",                                    # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",                        # space before the colon
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",            # a NUL
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n",              # a bare LF
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",              # obs-fold
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",                 # absolute form
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    ):
        assert parse(refused, 16384) is None, refused
    assert parse(plain, len(plain) - 1) is None  # over the size limit: h11 says 431


def test_range_decisions_are_nginx_ones() -> None:
    size = 1000
    cases: list[tuple[bytes | None, ranges.Decision]] = [
        (None, ranges.WHOLE),
        (b"bytes=0-99", ranges.Part(0, 100, size)),
        (b"bytes=900-", ranges.Part(900, 1000, size)),
        (b"bytes=-100", ranges.Part(900, 1000, size)),
        (b"bytes=-5000", ranges.Part(0, 1000, size)),          # a suffix longer than the file
        (b"bytes=990-5000", ranges.Part(990, 1000, size)),     # clipped to the end
        (b"BYTES= 5 - 9 ", ranges.Part(5, 10, size)),
        (b"bytes=0-1,5-6", ranges.WHOLE),                      # a second range: the whole file
        (b"bytes=0-1,2000-3000", ranges.Part(0, 2, size)),     # the other is past the end
        (b"items=0-1", ranges.WHOLE),                          # not bytes: ignored
        (b"bytes=1000-", ranges.Unsatisfiable(size)),
        (b"bytes=5-2", ranges.Unsatisfiable(size)),
        (b"bytes=-0", ranges.Unsatisfiable(size)),
        (b"bytes=abc", ranges.Unsatisfiable(size)),
        (b"bytes=0-1,", ranges.Unsatisfiable(size)),
    ]
    for header, want in cases:
        assert ranges.decide(header, size) == want, header
    assert ranges.decide(b"bytes=0-", 0) == ranges.WHOLE  # an empty file
    assert ranges.Part(5, 10, size).content_range == b"bytes 5-9/1000"
    assert ranges.Unsatisfiable(size).content_range == b"bytes */1000"
    etag = b'"1-2-3"'
    assert ranges.if_range_holds(None, etag, 0) and ranges.if_range_holds(etag, etag, 0)
    assert not ranges.if_range_holds(b'"0-0-0"', etag, 0)
    assert ranges.if_range_holds(b"Thu, 01 Jan 1970 00:00:10 GMT", etag, 10.5)
    assert not ranges.if_range_holds(b"Thu, 01 Jan 1970 00:00:09 GMT", etag, 10.5)


class ZeroCopy(Response):
    """A `static.FileResponse` on a plain socket: records what goes by `send_file`."""

    zero_copy = True

    def __init__(self, request_headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__(request_headers)
        self.sent_files: list[tuple[int, int]] = []
        self.file_bytes = b""

    async def send_file(self, fd: int, offset: int, count: int) -> int | None:
        self.sent_files.append((offset, count))
        self.file_bytes += os.pread(fd, count, offset)
        return count


def test_a_file_on_a_plain_socket_goes_by_sendfile_and_a_playlist_in_one_write(tmp_path: Path) -> None:
    data = os.urandom(600 * 1024)
    (tmp_path / "s-3.ts").write_bytes(data)
    (tmp_path / "s.m3u8").write_bytes(b"#EXTM3U\n")

    def serve(out: ZeroCopy, path: str) -> int:
        return asyncio.run(static.serve(out, str(tmp_path), path, asyncio.new_event_loop()))

    out = ZeroCopy()
    assert serve(out, "/s-3.ts") == len(data)
    assert out.sent_files == [(0, len(data))] and out.file_bytes == data and not out.writes and out.ended
    assert out.headers[b"Accept-Ranges"] == b"bytes"
    part = ZeroCopy({b"range": b"bytes=1000-"})
    assert serve(part, "/s-3.ts") == len(data) - 1000
    assert part.status == 206 and part.sent_files == [(1000, len(data) - 1000)] and part.file_bytes == data[1000:]
    assert part.headers[b"Content-Range"] == b"bytes 1000-%d/%d" % (len(data) - 1, len(data))
    small = ZeroCopy()
    assert serve(small, "/s.m3u8") == 8 and small.writes == [b"#EXTM3U\n"] and not small.sent_files


# ---- a real server ------------------------------------------------------------------------------


def read_response(sock: socket.socket, buf: bytearray, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response off a keep-alive connection; `buf` keeps what came after it."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, bytes(buf[:200])
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status, headers, _ = head_of(head + b"\r\n\r\n")
    length = 0 if head_only or status == 304 else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(1 << 20)
        assert chunk
        rest += chunk
    buf[:] = rest[length:]
    return status, headers, rest[:length]


def raw_head(data: bytes) -> bytes:
    return data.partition(b"\r\n\r\n")[0]


def test_keep_alive_answers_are_the_bytes_h11_frames(srs_server: Any) -> None:
    srv: Server = srs_server(REMUX, workers=1, http=True)
    (srv.dir / "page.html").write_text("<p>hello</p>")
    (srv.dir / "sub").mkdir()
    (srv.dir / "sub/index.html").write_text("index")
    etag = head_of(exchange(srv.http_port, request("GET", "/page.html")))[1]["etag"]
    cases = [("GET", "/page.html", ""), ("HEAD", "/page.html", ""), ("GET", "/missing.ts", ""),
             ("GET", "/page.html", f"If-None-Match: {etag}\r\n"), ("GET", "/%2e%2e/srs.conf", ""),
             ("GET", "/page.html", "Range: bytes=3-5\r\n"), ("GET", "/page.html", "Range: bytes=99-\r\n"),
             ("GET", "/sub/", ""), ("GET", "/sub", ""), ("GET", "/players/", "")]
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
        buf = bytearray()
        for method, path, extra in cases:
            s.sendall(request(method, path, close=False, extra=extra))  # one plain head: no h11
            status, headers, body = read_response(s, buf, head_only=method == "HEAD")
            # the same request through h11 (Connection: close is not a plain keep-alive head)
            framed = exchange(srv.http_port, request(method, path, extra=extra))
            h11_status, h11_headers, h11_body = head_of(framed)
            assert status == h11_status, (method, path)
            assert headers == {k: v for k, v in h11_headers.items() if k != "connection"}, (method, path)
            assert body == (h11_body if method != "HEAD" else b""), (method, path)
        # pipelined: two requests in one write go through h11, in order, after the fast ones
        s.sendall(request("GET", "/page.html", close=False) + request("GET", "/sub/", close=False))
        assert read_response(s, buf)[2] == b"<p>hello</p>"
        assert read_response(s, buf)[2] == b"index"
        s.sendall(request("GET", "/page.html", close=False))  # and a plain one again
        assert read_response(s, buf)[2] == b"<p>hello</p>"
    # bad bytes still get h11's 400 and a closed connection
    assert head_of(exchange(srv.http_port, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"))[0] == 400


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_large_file_reaches_a_slow_reader_whole_and_a_client_leaving_mid_file_leaks_nothing(
        srs_server: Any) -> None:
    srv: Server = srs_server(REMUX, workers=1, http=True)
    data = os.urandom(12 * 1024 * 1024)
    (srv.dir / "big.ts").write_bytes(data)
    (worker,) = worker_procs(srv.proc.pid).values()  # type: ignore[union-attr]
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:  # warm up
        s.sendall(request("GET", "/page-missing.html", close=False))
        read_response(s, bytearray())
    before = open_fds(worker.pid)
    for _ in range(2):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the server's sends fill up
            s.settimeout(20)
            s.connect(("127.0.0.1", srv.http_port))
            buf = bytearray()
            s.sendall(request("GET", "/big.ts", close=False))
            time.sleep(0.5)  # the socket is full: the server waits for it to drain
            status, headers, body = read_response(s, buf)
            assert status == 200 and headers["accept-ranges"] == "bytes" and body == data
            s.sendall(request("GET", "/big.ts", close=False, extra="Range: bytes=5000000-5000009\r\n"))
            status, headers, body = read_response(s, buf)  # the connection goes on after it
            assert status == 206 and body == data[5000000:5000010]
        with socket.socket() as s:  # leaves after 100 kB
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.connect(("127.0.0.1", srv.http_port))
            s.sendall(request("GET", "/big.ts", close=False))
            got = 0
            while got < 100_000:
                got += len(s.recv(65536))
    wait_for(lambda: open_fds(worker.pid) <= before, timeout=10)
    # the worker serves on
    assert head_of(exchange(srv.http_port, request("GET", "/big.ts", extra="Range: bytes=-4\r\n")))[2] == data[-4:]


def test_a_client_still_reading_an_answer_is_not_an_idle_keep_alive_connection(srs_server: Any) -> None:
    """The kernel takes MBs of a file at once (its send buffer grows to 4 MiB on loopback), so
    the server's part of an answer ends long before a slow client has read it. The 10 s idle
    timer must not close the connection while the client is still reading: its next request is
    answered on the same connection."""
    srv: Server = srs_server(REMUX, workers=1, http=True)
    data = os.urandom(4 * 1024 * 1024)
    (srv.dir / "big.ts").write_bytes(data)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.settimeout(30)
        s.connect(("127.0.0.1", srv.http_port))
        s.sendall(request("GET", "/big.ts", close=False))
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += s.recv(16384)
        head, _, body = bytes(buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        body_buf = bytearray(body)
        while len(body_buf) < len(data):  # ~200 KB/s: about 20 s for the whole file
            chunk = s.recv(16384)
            assert chunk, f"closed after {len(body_buf)} bytes"
            body_buf += chunk
            time.sleep(0.08)
        took = time.monotonic() - start
        assert bytes(body_buf) == data
        assert took > 12, took  # long enough that an idle timer started at the server's end would have fired
        s.sendall(request("GET", "/big.ts", close=False, extra="Range: bytes=0-9\r\n"))
        status, _, body = read_response(s, bytearray())
        assert status == 206 and body == data[:10]
    assert "idle http connection closed" not in srv.log_text()


def curl(url: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    out = subprocess.run(["curl", "-s", "-k", "-D", "-", *args, url], capture_output=True, timeout=30, check=True)
    return head_of(out.stdout)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_range_requests_with_curl_on_segments_and_static_files(srs_server: Any, tmp_path: Path, scheme: str) -> None:
    hls_path = tmp_path / "hls"
    write_stream(hls_path)
    seg = os.urandom(300_000)
    (hls_path / "live/s-7.ts").write_bytes(seg)
    cert, key = Authority(tmp_path / "pki").issue("server", 1)
    tls_port = free_port()
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_ctx off;"),
                f"https {{ enabled on; listen 127.0.0.1:{tls_port}; key {key}; cert {cert}; }}")
    (tmp_path / "www/page.html").write_bytes(b"0123456789")
    base = f"http://127.0.0.1:{srv.http_port}" if scheme == "http" else f"https://127.0.0.1:{tls_port}"
    for _ in range(2):  # the second time from the worker's segment cache over TLS
        status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "1000-1999")
        assert status == 206 and body == seg[1000:2000]
        assert headers["content-range"] == f"bytes 1000-1999/{len(seg)}" and headers["content-length"] == "1000"
        assert headers["content-type"] == "video/mp2t" and headers["cache-control"].endswith("immutable")
    status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "-10")
    assert status == 206 and body == seg[-10:]
    status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "299990-")
    assert status == 206 and body == seg[299990:]
    status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "300000-")
    assert status == 416 and headers["content-range"] == f"bytes */{len(seg)}"
    status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "0-1,5-6")  # nginx's max_ranges 1
    assert status == 200 and body == seg and headers["accept-ranges"] == "bytes"
    status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "0-9", "-H", 'If-Range: "stale"')
    assert status == 200 and body == seg
    etag = headers["etag"]
    status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "0-9", "-H", f"If-Range: {etag}")
    assert status == 206 and body == seg[:10]
    status, headers, body = curl(f"{base}/live/s-7.ts", "-r", "0-9", "-I")
    assert status == 206 and headers["content-length"] == "10"  # HEAD: the 206 head alone
    status, headers, body = curl(f"{base}/page.html", "-r", "2-4")  # any static file
    assert status == 206 and body == b"234" and headers["content-range"] == "bytes 2-4/10"
    if scheme == "https":
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        req = urllib.request.Request(f"{base}/live/s-7.ts", headers={"Range": "bytes=7-"})
        with urllib.request.urlopen(req, context=tls, timeout=10) as r:
            assert r.status == 206 and r.read() == seg[7:]


def test_ffmpeg_reads_an_mp4_with_its_index_at_the_end_by_ranges(srs_server: Any, tmp_path: Path) -> None:
    """The MP4 of a plain ffmpeg run has its `moov` after the media: a reader must seek."""
    srv: Server = srs_server(REMUX, workers=1, http=True)
    mp4 = srv.dir / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "3", "-c:v", "libx264", "-preset",
                    "ultrafast", "-c:a", "aac", str(mp4)], check=True, timeout=60)
    assert mp4.read_bytes().find(b"moov") > mp4.read_bytes().find(b"mdat")
    url = f"http://127.0.0.1:{srv.http_port}/v.mp4"
    run = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-f", "null", "-"], capture_output=True, timeout=60)
    assert run.returncode == 0 and not run.stderr, run.stderr.decode()
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", url],
                           capture_output=True, timeout=60, text=True)
    assert sorted(probe.stdout.split()) == ["aac", "h264"] and not probe.stderr


def test_a_client_that_shuts_its_side_after_a_plain_request_still_gets_the_answer(srs_server: Any) -> None:
    """`printf 'GET ...' | nc -N`: the request, then FIN; the answer comes whole, then the close."""
    srv: Server = srs_server(REMUX, workers=1, http=True)
    data = os.urandom(8 * 1024 * 1024)  # more than the socket buffers hold: the answer waits on the client
    (srv.dir / "big.ts").write_bytes(data)
    for path, want in (("/big.ts", data), ("/missing.ts", None)):
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.sendall(request("GET", path, close=False))
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.3)
            out = b""
            while chunk := s.recv(1 << 20):
                out += chunk
        status, _, body = head_of(out)
        assert (status, body) == ((200, data) if want is not None else (404, b"404 not found\n")), path
