"""The worker's HLS segment cache (`srv.http.segcache`) and `static.serve` with it: one disk read
for concurrent fetchers of a new segment, the same bytes object for all of them, a replaced
file read again, a deleted one gone (404), the byte bound, and unchanged validators and 304s."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from srv.http import segcache, static
from srv.http.segcache import SegmentCache


class Reads:
    """`segcache.read_whole` counting its calls, each held until `release` (so requests overlap)."""

    def __init__(self) -> None:
        self.count = 0
        self.gate = threading.Event()

    def __call__(self, path: str) -> segcache.Entry:
        self.count += 1
        self.gate.wait(5)
        return READ(path)


READ = segcache.read_whole


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    counter = Reads()
    monkeypatch.setattr(segcache, "read_whole", counter)
    return counter


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_fetchers_of_a_new_segment_cost_one_read_and_share_the_bytes(tmp_path: Path,
                                                                               reads: Reads) -> None:
    seg = tmp_path / "s-1.ts"
    seg.write_bytes(b"\x47" * 188 * 100)
    cache = SegmentCache()

    async def main() -> list[segcache.Entry | None]:
        loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(cache.get(str(seg), loop)) for _ in range(50)]
        await asyncio.sleep(0.05)
        reads.gate.set()
        got = await asyncio.gather(*tasks)
        got.append(await cache.get(str(seg), loop))  # later: from memory
        return got

    got = run(main())
    assert reads.count == 1
    assert all(g is not None and g[1] == seg.read_bytes() for g in got)
    assert len({id(g[1]) for g in got if g is not None}) == 1  # one bytes object for every fetcher


def test_a_replaced_file_is_read_again_and_a_deleted_one_is_gone(tmp_path: Path, reads: Reads) -> None:
    reads.gate.set()
    seg = tmp_path / "s-init.mp4"
    seg.write_bytes(b"old")
    cache = SegmentCache()

    async def get() -> segcache.Entry | None:
        return await cache.get(str(seg), asyncio.get_running_loop())

    assert run(get())[1] == b"old"  # type: ignore[index]
    assert run(get())[1] == b"old" and reads.count == 1  # type: ignore[index]
    seg.write_bytes(b"newer")  # same name, new size and mtime (a republish writes it again)
    assert run(get())[1] == b"newer" and reads.count == 2  # type: ignore[index]
    other = tmp_path / "other"
    other.write_bytes(b"newest")
    os.replace(other, seg)  # renamed over it: a new inode
    assert run(get())[1] == b"newest" and reads.count == 3  # type: ignore[index]
    seg.unlink()  # hls_dispose / cleanup
    assert run(get()) is None
    assert cache.size == 0 and not cache.entries


def test_the_cache_holds_at_most_its_limit_of_bytes_newest_kept(tmp_path: Path, reads: Reads) -> None:
    reads.gate.set()
    cache = SegmentCache(limit=1000)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for i in range(10):
            (tmp_path / f"s-{i}.ts").write_bytes(bytes([i]) * 300)
            assert (await cache.get(str(tmp_path / f"s-{i}.ts"), loop))[1] == bytes([i]) * 300  # type: ignore[index]
            assert cache.size <= 1000
        (tmp_path / "big.ts").write_bytes(b"b" * 1001)  # larger than the whole cache: served, not kept
        assert (await cache.get(str(tmp_path / "big.ts"), loop))[1] == b"b" * 1001  # type: ignore[index]

    run(main())
    assert cache.size == 900 and list(cache.entries) == [str(tmp_path / f"s-{i}.ts") for i in (7, 8, 9)]
    assert cache.size == sum(len(e[1][1]) for e in cache.entries.values())


class Response:
    """A `static.FileResponse` recording what is written."""

    peer = "test"
    closed = False

    def __init__(self, request_headers: dict[bytes, bytes] | None = None, head: bool = False) -> None:
        self.request_headers = request_headers or {}
        self.head = head
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.writes: list[bytes] = []
        self.ended = False

    @property
    def head_request(self) -> bool:
        return self.head

    zero_copy = False  # as over TLS: the cache's bytes are written

    async def send_file(self, fd: int, offset: int, count: int) -> int | None:
        return None

    def header(self, name: bytes) -> bytes | None:
        return self.request_headers.get(name)

    def error(self, status: int, reason: str) -> None:
        self.status = status

    def start_body(self, status: int, content_type: str, length: int,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.headers = dict(extra or []) | {b"Content-Type": content_type.encode(), b"Content-Length": b"%d" % length}

    def body(self, data: bytes | memoryview) -> None:
        self.writes.append(data)  # type: ignore[arg-type]

    async def drained(self) -> None:
        pass

    def end_body(self) -> None:
        self.ended = True

    def abort(self) -> None:
        self.closed = True


def test_serve_with_the_cache_answers_as_without_it_in_one_write(tmp_path: Path) -> None:
    data = os.urandom(600 * 1024)  # more than static.CHUNK
    (tmp_path / "live").mkdir()
    (tmp_path / "live/s-3.ts").write_bytes(data)
    cache = SegmentCache()
    extra = [(b"Cache-Control", b"public, max-age=120, immutable")]

    async def serve(out: Response, use: SegmentCache | None, path: str = "/live/s-3.ts") -> int:
        return await static.serve(out, str(tmp_path), path, asyncio.get_running_loop(), extra, use)

    plain, cached, again = Response(), Response(), Response()
    assert run(serve(plain, None)) == run(serve(cached, cache)) == run(serve(again, cache)) == len(data)
    assert cached.status == plain.status == 200 and cached.headers == plain.headers
    assert cached.headers[b"Cache-Control"] == b"public, max-age=120, immutable" and cached.headers[b"ETag"]
    assert cached.writes == [data] and cached.ended and len(plain.writes) > 1
    assert again.writes[0] is cached.writes[0]
    for conditional in ({b"if-none-match": cached.headers[b"ETag"]},
                        {b"if-modified-since": cached.headers[b"Last-Modified"]}):
        out = Response(conditional)
        assert run(serve(out, cache)) == 0 and out.status == 304 and not out.writes
        assert out.headers[b"ETag"] == cached.headers[b"ETag"]
    head = Response(head=True)
    assert run(serve(head, cache)) == 0 and head.status == 200 and not head.writes
    assert head.headers[b"Content-Length"] == b"%d" % len(data)
    (tmp_path / "live/s-3.ts").unlink()
    gone = Response()
    assert run(serve(gone, cache)) == 0 and gone.status == 404
    assert run(serve(Response(), cache, "/../x.ts")) == 0
