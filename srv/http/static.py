"""Static files from `http_server.dir`, with no way out of that directory, and srv's own pages.

`PACKAGED` maps URL prefixes to folders shipped inside the package (`srv/http/www/`): the player
page at `/players/` and the vendored JavaScript it loads. They win over `dir`, so they are the
ones of this version of srv whatever the document root holds (`packaged`).

`resolve` maps a request path to a file under the root or says why not:
- the path is percent-decoded exactly once; a NUL, a backslash or a `..` segment (also when it
  was written `%2e%2e`) is refused with 403 before the filesystem is touched;
- the result is resolved with `realpath` and must still be inside the root's `realpath`, so a
  symlink that points out of the root is refused too (403);
- a directory serves its `index.html`; anything that is not a regular file is 404.

`serve` streams the file to a `FileResponse` (the HTTP connection) in `CHUNK`s read off the
event loop, never holding it whole in memory nor blocking other sessions on the disk; the
client's back-pressure paces it. Every file has a validator, `ETag` (inode, size and mtime) and
`Last-Modified`; a conditional GET that matches (`If-None-Match`, else `If-Modified-Since`) is
answered 304 with no body. HLS segments come whole from the worker's `segcache` instead (one
read for all the viewers of a new segment; the same validators).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from srv.http.segcache import SegmentCache

log = logging.getLogger("srv.http")

EXTRA_TYPES = {
    ".flv": "video/x-flv",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".js": "text/javascript",
    ".json": "application/json",
    ".wasm": "application/wasm",
}
WWW = Path(__file__).resolve().parent / "www"
# URL prefix -> folder of the package; the longest matching prefix wins
PACKAGED = {"/players/vendor/": WWW / "vendor", "/players/": WWW / "players"}
CONSOLE = str(WWW / "console")  # /console/ on the API's port (its own route: behind the API's auth)
CHUNK = 256 * 1024  # bytes read (in a thread) and written per step when serving a file


@dataclass(frozen=True)
class Resolved:
    status: int  # 200, 403 or 404
    path: str = ""
    content_type: str = ""


def content_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in EXTRA_TYPES:
        return EXTRA_TYPES[ext]
    guessed, _ = mimetypes.guess_type(path)
    ctype = guessed or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/xml"):
        ctype += "; charset=utf-8"
    return ctype


def packaged(url_path: str) -> tuple[str, str] | None:
    """(folder, path inside it) when `url_path` is one of srv's own pages, else None."""
    for prefix in sorted(PACKAGED, key=len, reverse=True):
        if url_path.startswith(prefix):
            return str(PACKAGED[prefix]), url_path[len(prefix) - 1:]
    return None


def resolve(root: str, url_path: str) -> Resolved:
    try:
        path = unquote(url_path, errors="strict") if "%" in url_path else url_path
    except UnicodeDecodeError:
        return Resolved(404)
    if "\0" in path or "\\" in path:
        return Resolved(403)
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if any(s == ".." for s in segments):
        return Resolved(403)
    real_root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(real_root, *segments))
    if full != real_root and not full.startswith(real_root + os.sep):
        return Resolved(403)
    if os.path.isdir(full):
        full = os.path.join(full, "index.html")
        if os.path.realpath(full) != full and not os.path.realpath(full).startswith(real_root + os.sep):
            return Resolved(403)
    if not os.path.isfile(full):
        return Resolved(404)
    return Resolved(200, full, content_type(full))


class FileResponse(Protocol):
    """What `serve` writes to: one response of the HTTP connection."""

    peer: str
    closed: bool

    @property
    def head_request(self) -> bool: ...

    def header(self, name: bytes) -> bytes | None: ...
    def error(self, status: int, reason: str) -> None: ...
    def start_body(self, status: int, content_type: str, length: int,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None: ...
    def body(self, data: bytes) -> None: ...
    async def drained(self) -> None: ...
    def end_body(self) -> None: ...
    def abort(self) -> None: ...


def validators(st: os.stat_result) -> list[tuple[bytes, bytes]]:
    """A file's `ETag` and `Last-Modified` headers: any change of content (a rename over it
    included) changes the ETag."""
    etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'.encode()
    return [(b"ETag", etag), (b"Last-Modified", formatdate(st.st_mtime, usegmt=True).encode())]


def not_modified(out: FileResponse, st: os.stat_result, etag: bytes) -> bool:
    """Whether the request's conditions say the client's copy is current (RFC 9110 13.1)."""
    match = out.header(b"if-none-match")
    if match is not None:
        tags = [t.strip().removeprefix(b"W/") for t in match.split(b",")]
        return b"*" in tags or etag in tags
    since = out.header(b"if-modified-since")
    if since is None:
        return False
    try:
        return int(st.st_mtime) <= parsedate_to_datetime(since.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return False


async def serve(out: FileResponse, root: str, url_path: str, loop: asyncio.AbstractEventLoop,
                headers: list[tuple[bytes, bytes]] | None = None, cache: SegmentCache | None = None) -> int:
    """Answer a GET or HEAD for a file of `root`: 200 with the file, 304, 403 or 404, with
    `headers` added to a 200 or 304. The number of body bytes sent. With a `cache` (HLS
    segments), the file comes whole from it and is written at once."""
    return await serve_found(out, resolve(root, url_path), url_path, loop, headers, cache)


async def serve_found(out: FileResponse, found: Resolved, url_path: str, loop: asyncio.AbstractEventLoop,
                      headers: list[tuple[bytes, bytes]] | None = None, cache: SegmentCache | None = None) -> int:
    """`serve` for a path the caller already resolved (HLS checks the file before it answers)."""
    if found.status == 403:
        log.warning("%s: refused static path %r", out.peer, url_path)
        out.error(403, "forbidden")
        return 0
    if cache is not None and found.status == 200:
        return await _serve_cached(out, found, loop, headers, cache)
    try:
        f = open(found.path, "rb") if found.status == 200 else None
    except OSError:
        f = None
    if f is None:
        out.error(404, "not found")
        return 0
    with f:
        st = os.fstat(f.fileno())
        size = st.st_size
        extra = validators(st) + list(headers or [])
        if not_modified(out, st, extra[0][1]):
            out.start_body(304, found.content_type, -1, extra)
            out.end_body()
            return 0
        out.start_body(200, found.content_type, size, extra)
        left = 0 if out.head_request else size
        sent = 0
        while left > 0:
            chunk = await loop.run_in_executor(None, f.read, min(CHUNK, left))
            if not chunk or out.closed:
                break  # the file shrank, or the client left: Content-Length cannot be met
            left -= len(chunk)
            sent += len(chunk)
            out.body(chunk)
            await out.drained()
        if left > 0:
            out.abort()
            return sent
        out.end_body()
        return sent


async def _serve_cached(out: FileResponse, found: Resolved, loop: asyncio.AbstractEventLoop,
                        headers: list[tuple[bytes, bytes]] | None, cache: SegmentCache) -> int:
    entry = await cache.get(found.path, loop)
    if out.closed:
        return 0
    if entry is None:
        out.error(404, "not found")
        return 0
    st, data = entry
    extra = validators(st) + list(headers or [])
    if not_modified(out, st, extra[0][1]):
        out.start_body(304, found.content_type, -1, extra)
        out.end_body()
        return 0
    out.start_body(200, found.content_type, len(data), extra)
    if out.head_request or not data:
        out.end_body()
        return 0
    out.body(data)  # the cache's bytes object: no copy on srv's side
    out.end_body()
    await out.drained()
    return len(data)
