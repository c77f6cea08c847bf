"""The worker's open-file cache for HLS files (`srv.http.openfiles`, nginx's `open_file_cache`)
through `static.resolve_open`/`serve_found` as `hls_serve` uses it: a file held open is served
right with one `stat`, a file replaced under its name (new inode) is served fresh, a deleted one
is a 404, a symlink swapped in that leads out of the root is refused, no file reached through a
symlink is kept, the files held are bounded and closed when unused, and a file evicted while it
is being sent is closed only when that response is done. A real server keeps a segment open
across requests and still serves the replaced, deleted and symlinked cases right."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

from conftest import worker_procs
from test_http_files import ZeroCopy, read_response
from test_http_hls import hls_vhost, start, write_stream
from test_http_methods import request

from srv.http import static
from srv.http.openfiles import OpenFiles


def serve(files: OpenFiles, root: Path, path: str) -> ZeroCopy:
    out = ZeroCopy()
    found = static.resolve_open(str(root), path, files)
    asyncio.run(static.serve_found(out, found, path, asyncio.new_event_loop()))
    return out


def body(out: ZeroCopy) -> bytes:
    """What the response sent of the file: by `send_file`, or written with its head (small)."""
    return out.file_bytes + b"".join(bytes(w) for w in out.writes)


def fds_of(path: Path, pid: int | str = "self") -> int:
    """How many descriptors of process `pid` are open on `path`."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
        except OSError:
            pass
    return n


def test_a_held_file_is_served_right_with_one_stat_and_stays_open(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    data = os.urandom(300 * 1024)
    (root / "s-1.ts").write_bytes(data)
    files = OpenFiles()
    first = serve(files, root, "/s-1.ts")
    assert first.status == 200 and body(first) == data and first.headers[b"Accept-Ranges"] == b"bytes"
    assert (files.hits, files.misses) == (0, 1) and fds_of(root / "s-1.ts") == 1  # kept open
    for _ in range(3):
        again = serve(files, root, "/s-1.ts")
        assert again.status == 200 and body(again) == data
        assert again.headers[b"ETag"] == first.headers[b"ETag"]
    assert (files.hits, files.misses) == (3, 1) and fds_of(root / "s-1.ts") == 1
    # a file written again in place (same inode) is sent with its new size and validators
    (root / "s-1.ts").write_bytes(data[:1000])
    changed = serve(files, root, "/s-1.ts")
    assert body(changed) == data[:1000] and changed.headers[b"ETag"] != first.headers[b"ETag"]
    files.close_all()
    assert fds_of(root / "s-1.ts") == 0


def test_a_replaced_file_is_served_fresh_and_a_deleted_one_is_404(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    (root / "s.m3u8").write_bytes(b"#EXTM3U\n#old\n")
    files = OpenFiles()
    assert serve(files, root, "/s.m3u8").writes == [b"#EXTM3U\n#old\n"]
    (root / "new.tmp").write_bytes(b"#EXTM3U\n#new playlist\n")
    os.rename(root / "new.tmp", root / "s.m3u8")  # as the HLS writer does: a new inode
    assert serve(files, root, "/s.m3u8").writes == [b"#EXTM3U\n#new playlist\n"]
    assert serve(files, root, "/s.m3u8").writes == [b"#EXTM3U\n#new playlist\n"]
    assert files.hits == 1
    (root / "s.m3u8").unlink()  # HLS cleanup
    gone = serve(files, root, "/s.m3u8")
    assert gone.status == 404 and not gone.writes
    assert not files.entries


def test_a_symlink_swapped_in_that_leads_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path.resolve() / "hls"
    (root / "live").mkdir(parents=True)
    (tmp_path / "secret.ts").write_bytes(b"secret" * 100)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/s-1.ts").write_bytes(b"secret" * 100)
    (root / "live/s-1.ts").write_bytes(b"\x47" * 376)
    (root / "live/s-2.ts").write_bytes(b"\x47" * 188)
    files = OpenFiles()
    assert body(serve(files, root, "/live/s-1.ts")) == b"\x47" * 376
    assert body(serve(files, root, "/live/s-2.ts")) == b"\x47" * 188
    (root / "live/s-1.ts").unlink()
    (root / "live/s-1.ts").symlink_to(tmp_path / "secret.ts")  # the file itself
    refused = serve(files, root, "/live/s-1.ts")
    assert refused.status == 403 and b"secret" not in body(refused)
    os.rename(root / "live", root / "old")
    (root / "live").symlink_to(tmp_path / "outside")  # a folder on the way
    refused = serve(files, root, "/live/s-2.ts")
    assert refused.status == 403 and b"secret" not in body(refused)
    # a file reached through a symlink inside the root is served, never kept
    (root / "inside.ts").symlink_to(root / "old/s-2.ts")
    assert body(serve(files, root, "/inside.ts")) == b"\x47" * 188
    assert body(serve(files, root, "/inside.ts")) == b"\x47" * 188
    assert files.hits == 0 and not files.entries


def test_held_files_are_bounded_closed_when_unused_and_never_under_a_send(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    for i in range(10):
        (root / f"s-{i}.ts").write_bytes(bytes([i]) * 1000)
    files = OpenFiles(limit=4, inactive=0.5)
    for i in range(10):
        assert body(serve(files, root, f"/s-{i}.ts")) == bytes([i]) * 1000
        assert len(files.entries) <= 4
    assert sum(fds_of(root / f"s-{i}.ts") for i in range(10)) == 4  # the 4 newest
    assert [fds_of(root / f"s-{i}.ts") for i in range(6, 10)] == [1, 1, 1, 1]
    time.sleep(0.6)
    assert body(serve(files, root, "/s-0.ts")) == bytes([0]) * 1000  # the unused ones close
    assert list(files.entries) == [str(root / "s-0.ts")]
    assert sum(fds_of(root / f"s-{i}.ts") for i in range(1, 10)) == 0
    time.sleep(0.6)
    files.expire()  # the worker's heartbeat: an unused file closes with no request
    assert not files.entries and fds_of(root / "s-0.ts") == 0
    assert body(serve(files, root, "/s-0.ts")) == bytes([0]) * 1000
    # a file evicted while a response sends it stays open until that response is done
    found = static.resolve_open(str(root), "/s-0.ts", files)
    assert found.held is not None and found.fd >= 0
    files.close_all()
    assert os.pread(found.fd, 4, 0) == bytes(4)
    static.close_found(found)
    assert fds_of(root / "s-0.ts") == 0


def test_a_worker_keeps_a_segment_open_across_requests_and_serves_changes_right(srs_server: Any,
                                                                                 tmp_path: Path) -> None:
    hls_path = (tmp_path / "hls").resolve()
    files = write_stream(hls_path)
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_ctx off;"))
    workers = [p.pid for p in worker_procs(srv.proc.pid).values()]  # type: ignore[union-attr]
    segment = hls_path / "live/s-1.ts"
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
        buf = bytearray()

        def get(path: str) -> tuple[int, bytes]:
            s.sendall(request("GET", path, close=False))
            status, _, body = read_response(s, buf)
            return status, body

        for _ in range(3):
            assert get("/live/s-1.ts") == (200, files["live/s-1.ts"])
        assert sum(fds_of(segment, pid) for pid in workers) == 1  # held between requests
        (hls_path / "live/new.tmp").write_bytes(b"\x47" * 188 * 3)
        os.rename(hls_path / "live/new.tmp", segment)
        assert get("/live/s-1.ts") == (200, b"\x47" * 188 * 3)
        (tmp_path / "secret.ts").write_bytes(b"secret")
        segment.unlink()
        assert get("/live/s-1.ts")[0] == 404
        segment.symlink_to(tmp_path / "secret.ts")
        status, body = get("/live/s-1.ts")
        assert status in (403, 404) and b"secret" not in body
