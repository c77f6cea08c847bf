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
import stat
import time
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import unquote

from srv.http import ranges
from srv.http.openfiles import OpenFile, OpenFiles
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
_PREFIXES = sorted(PACKAGED, key=len, reverse=True)
CONSOLE = str(WWW / "console")  # /console/ on the API's port (its own route: behind the API's auth)
CHUNK = 256 * 1024  # bytes read (in a thread) and written per step when serving a file
SMALL = 16 * 1024  # a file (a playlist) up to this is read on the loop and written with its head


class Resolved(NamedTuple):
    status: int  # 200, 403 or 404
    path: str = ""  # the file's real path (every symlink followed)
    content_type: str = ""
    st: os.stat_result | None = None  # the file's, when it was resolved
    fd: int = -1  # the file, open (`resolve_open`): whoever gets it closes it (`close_found`)
    held: OpenFile | None = None  # the open-file cache's, when `fd` is borrowed from it


def close_found(found: Resolved) -> None:
    """Close the file `resolve_open` left open (or give it back to the open-file cache)."""
    if found.held is not None:
        found.held.release()
    elif found.fd >= 0:
        os.close(found.fd)


def resolve(root: str, url_path: str) -> Resolved:
    """Which file of `root` `url_path` names (200, with its real path and stat), or 403/404."""
    found = resolve_open(root, url_path)
    if found.fd >= 0:
        os.close(found.fd)
        return found._replace(fd=-1)
    return found


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
    for prefix in _PREFIXES:
        if url_path.startswith(prefix):
            return str(PACKAGED[prefix]), url_path[len(prefix) - 1:]
    return None


def resolve_open(root: str, url_path: str, files: OpenFiles | None = None) -> Resolved:
    """`resolve`, the file left open in `fd` when it is one (the caller closes it with
    `close_found`). With `files`, a file held open by an earlier request is borrowed from it
    when the path still reaches it (one `stat`), and a file opened here is kept there."""
    try:
        path = unquote(url_path, errors="strict") if "%" in url_path else url_path
    except UnicodeDecodeError:
        return Resolved(404)
    if "\0" in path or "\\" in path:
        return Resolved(403)
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if any(s == ".." for s in segments):
        return Resolved(403)
    real_root = _real_root(root)
    full = os.path.join(real_root, *segments)
    if files is not None:
        got = files.borrow(full)
        if got is not None:
            return Resolved(200, full, got[0].content_type, got[1], got[0].fd, got[0])
    # the one syscall-cheap check: open the file and ask the kernel where it really is (every
    # symlink of every component followed), instead of `realpath`'s lstat per component
    try:
        fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return _resolve_slowly(real_root, full)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return _resolve_slowly(real_root, full)
    if (real != real_root and not real.startswith(real_root + os.sep)) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if real != real_root and not real.startswith(real_root + os.sep):
            return Resolved(403)
        return _resolve_slowly(real_root, full) if stat.S_ISDIR(st.st_mode) else Resolved(404)
    ctype = content_type(real)
    if files is not None and real == full:  # no symlink on the way: later requests may borrow it
        return Resolved(200, real, ctype, st, fd, files.keep(full, fd, st, ctype))
    return Resolved(200, real, ctype, st, fd)


def _real_root(root: str) -> str:
    """`realpath(root)`, looked up again once a second (a root moved by its admin is seen)."""
    now = time.monotonic()
    held = _REAL_ROOTS.get(root)
    if held is not None and held[0] > now:
        return held[1]
    if len(_REAL_ROOTS) > 64:
        _REAL_ROOTS.clear()
    real = os.path.realpath(root)
    _REAL_ROOTS[root] = (now + 1.0, real)
    return real


_REAL_ROOTS: dict[str, tuple[float, str]] = {}


def _resolve_slowly(real_root: str, full: str) -> Resolved:
    """Directories (their index.html), files that are not there or cannot be opened."""
    full = os.path.realpath(full)
    if full != real_root and not full.startswith(real_root + os.sep):
        return Resolved(403)
    if os.path.isdir(full):
        full = os.path.join(full, "index.html")
        if os.path.realpath(full) != full and not os.path.realpath(full).startswith(real_root + os.sep):
            return Resolved(403)
    try:
        st = os.stat(full)
    except OSError:
        return Resolved(404)
    if not stat.S_ISREG(st.st_mode):
        return Resolved(404)
    return Resolved(200, full, content_type(full), st)


class FileResponse(Protocol):
    """What `serve` writes to: one response of the HTTP connection."""

    peer: str
    closed: bool

    @property
    def head_request(self) -> bool: ...

    @property
    def zero_copy(self) -> bool:
        """Whether `send_file` can hand file bytes to the kernel (plain TCP; not TLS)."""
        ...

    def header(self, name: bytes) -> bytes | None: ...
    def error(self, status: int, reason: str) -> None: ...
    def start_body(self, status: int, content_type: str, length: int,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None: ...
    def body(self, data: bytes | memoryview) -> None: ...
    async def drained(self) -> None: ...
    async def send_file(self, fd: int, offset: int, count: int) -> int | None:
        """Send `count` bytes of file `fd` from `offset` with `os.sendfile` after the response
        head: the bytes sent (fewer if the client left), None if it cannot now (nothing sent)."""
        ...
    def end_body(self) -> None: ...
    def abort(self) -> None: ...


@lru_cache(maxsize=4096)
def _http_date(seconds: int) -> bytes:
    return formatdate(seconds, usegmt=True).encode()


def validators(st: os.stat_result) -> list[tuple[bytes, bytes]]:
    """A file's `ETag` and `Last-Modified` headers: any change of content (a rename over it
    included) changes the ETag."""
    etag = b'"%x-%x-%x"' % (st.st_ino, st.st_size, st.st_mtime_ns)
    return [(b"ETag", etag), (b"Last-Modified", _http_date(int(st.st_mtime)))]


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
    """Answer a GET or HEAD for a file of `root`: 200 with the file, 206 or 416 for a Range,
    304, 403 or 404, with `headers` added to a 200, 206 or 304. The number of body bytes sent.
    On plain HTTP the file goes from the page cache to the socket (`send_file`); with a `cache`
    (HLS segments) and no zero copy (TLS), it comes whole from the cache in one write."""
    return await serve_found(out, resolve_open(root, url_path), url_path, loop, headers, cache)


async def serve_found(out: FileResponse, found: Resolved, url_path: str, loop: asyncio.AbstractEventLoop,
                      headers: list[tuple[bytes, bytes]] | None = None, cache: SegmentCache | None = None) -> int:
    """`serve` for a path the caller already resolved (HLS checks the file before it answers);
    it closes the file `found` holds open."""
    try:
        if found.status == 403:
            log.warning("%s: refused static path %r", out.peer, url_path)
            out.error(403, "forbidden")
            return 0
        if found.status != 200 or found.st is None:
            out.error(404, "not found")
            return 0
        if cache is not None and not out.zero_copy:
            entry = await cache.get(found.path, loop, found.st)
            if out.closed:
                return 0
            if entry is None:
                out.error(404, "not found")
                return 0
            return await _answer(out, found, entry[0], headers, entry[1], -1, loop)
        if found.fd >= 0:
            return await _answer(out, found, found.st, headers, None, found.fd, loop)
        try:
            fd = os.open(found.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            out.error(404, "not found")
            return 0
        try:
            return await _answer(out, found, os.fstat(fd), headers, None, fd, loop)
        finally:
            os.close(fd)
    finally:
        close_found(found)


async def _answer(out: FileResponse, found: Resolved, st: os.stat_result, headers: list[tuple[bytes, bytes]] | None,
                  data: bytes | None, fd: int, loop: asyncio.AbstractEventLoop) -> int:
    """The response for a file whose stat is `st`, its bytes in `data` or to be read from `fd`."""
    extra = validators(st)
    if headers:
        extra += headers
    if not_modified(out, st, extra[0][1]):
        out.start_body(304, found.content_type, -1, extra)
        out.end_body()
        return 0
    size = st.st_size
    part = ranges.decide(out.header(b"range"), size) \
        if ranges.if_range_holds(out.header(b"if-range"), extra[0][1], st.st_mtime) else ranges.WHOLE
    if isinstance(part, ranges.Unsatisfiable):
        body = b"416 range not satisfiable\n"
        out.start_body(416, "text/plain; charset=utf-8", len(body), [(b"Content-Range", part.content_range)])
        if not out.head_request:
            out.body(body)
        out.end_body()
        return 0
    if isinstance(part, ranges.Part):
        status, start, end = 206, part.start, part.end
        extra.append((b"Content-Range", part.content_range))
    else:
        status, start, end = 200, 0, size
        extra.append((b"Accept-Ranges", b"bytes"))
    count = end - start
    out.start_body(status, found.content_type, count, extra)
    if out.head_request or count == 0:
        out.end_body()
        return 0
    if data is not None:  # the cache's bytes object: no copy on srv's side for a whole file
        out.body(data if count == len(data) else memoryview(data)[start:end])
        out.end_body()
        await out.drained()
        return count
    if count <= SMALL:  # a playlist: one read of a page-cache file, written with the head
        chunk = os.pread(fd, count, start)
        if len(chunk) < count:
            out.abort()
            return 0
        out.body(chunk)
        out.end_body()
        return count
    if out.zero_copy:
        sent = await out.send_file(fd, start, count)
        if sent is not None:
            if sent < count:
                out.abort()  # the client left, or the file shrank: Content-Length cannot be met
            else:
                out.end_body()
            return sent
    return await _send_chunks(out, fd, start, count, loop)


async def _send_chunks(out: FileResponse, fd: int, start: int, left: int, loop: asyncio.AbstractEventLoop) -> int:
    """The file in `CHUNK`s read off the loop, paced by the client's back-pressure."""
    sent = 0
    while left > 0:
        chunk = await loop.run_in_executor(None, os.pread, fd, min(CHUNK, left), start + sent)
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
