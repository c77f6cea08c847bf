"""LL-HLS over HTTP, from every worker: blocking playlist reloads, delta playlists and the
preload-hinted part served while the owner worker writes it.

Playlists (`ll_playlist`): a request with `_HLS_msn`/`_HLS_part` (srv/app/hls_reload.py) that
the playlist does not answer yet is held on its stream's watch (srv/net/hls_waits.py) until the
part is listed, at most three target durations (then 503, as Apple's spec says); one more than
two segments (or the Advance Part Limit of parts) ahead is a 400 at once; one behind gets the
playlist as it is. `_HLS_skip=YES|v2` answers the writer's delta playlist (`render_delta`).
The answer to a blocking request is `public, max-age` of three target durations: the URL with
its query is the cache key of a CDN.

Parts (`serve_part`): a part file that is there is served like a segment (the segment cache,
immutable). One that is not is the hinted part or a 404: the owner worker appends its CMAF
chunks to `<part>.partial` and renames it to `<part>` when it is complete (same inode). A
request for the hinted part waits for its first chunk, then gets the bytes as they land in a
chunked response (`Transfer-Encoding: chunked`, one HTTP chunk per read), woken by the writer's
"chunk" events (through the master on other workers), and ends when the rename says the part is
complete. A part that is not hinted (yet) is a 404, as is a hinted one the writer abandons.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from srv.app import hls_reload
from srv.app.hls import stream_files
from srv.app.hls_ll import PARTIAL_SUFFIX, render_delta, split_part
from srv.app.hls_reload import Directives, LiveState, Verdict
from srv.app.paths import UnsafePath
from srv.http import hls, segcache, static
from srv.http.hls import HlsUrl
from srv.net.hls_waits import FALLBACK_POLL, PlaylistWatch

if TYPE_CHECKING:
    from srv.http.server import HttpConnection

CHUNK_POLL = 0.1  # seconds a streamed part waits for a chunk event before it looks at the file anyway


def refuse(conn: HttpConnection, status: int, reason: str) -> None:
    """An error answer no cache keeps (a CDN may cache a bare 404 by heuristics)."""
    conn.respond(status, f"{status} {reason}\n".encode(), "text/plain; charset=utf-8",
                 [(b"Cache-Control", b"no-store")])


def part_url(vhost_url: HlsUrl, path: str) -> HlsUrl | None:
    """The stream of an LL-HLS part path (named after its segment), or None if it is none."""
    split = split_part(path)
    if split is None or not vhost_url.vhost.hls.ll:
        return None
    seg = hls.match_hls(vhost_url.vhost, split[0])
    if seg is None or not seg.key:
        return None
    return seg


def watch_of(conn: HttpConnection, url: HlsUrl, path: str) -> PlaylistWatch:
    return conn.ctx.playlists.watch(url.key or path, path)


async def ll_text(conn: HttpConnection, url: HlsUrl, path: str, d: Directives) -> tuple[bytes, LiveState] | None:
    """The playlist at `path` that answers `d` (held until it does), or None once an error is
    sent (400 too far ahead, 503 held too long, 404 gone)."""
    ctx = conn.ctx
    w = watch_of(conn, url, path)
    state, text = await w.current()
    if hls_reload.holds(state, d):
        v = hls_reload.verdict(state, d)
        if v is Verdict.TOO_FAR:  # maybe this worker's copy is behind: read it again first
            await w.refresh("checked")
            state, text = w.state, w.text
            v = hls_reload.verdict(state, d)
        if v is Verdict.TOO_FAR:
            ctx.counters["hls_ll_too_far"] += 1
            refuse(conn, 400, f"_HLS_msn={d.msn} _HLS_part={d.part} is too far ahead of the playlist "
                            f"(next segment {state.next_msn}, {state.parts} parts of it)")
            return None
        if v is Verdict.WAIT:
            got = await ctx.playlists.hold(w, lambda s: hls_reload.verdict(s, d) is not Verdict.WAIT, state.hold)
            if conn.closed:
                return None
            if got is None:
                ctx.counters["hls_ll_timeouts"] += 1
                refuse(conn, 503, f"_HLS_msn={d.msn} _HLS_part={d.part} not there within {state.hold:g}s")
                return None
            state, text = got
    if not text:
        refuse(conn, 404, "not found")
        return None
    if d.skip and state.can_skip_until > 0:
        text = render_delta(text.decode("utf-8", "replace")).encode()
    return text, state


def cache_control(state: LiveState, d: Directives) -> list[tuple[bytes, bytes]]:
    return [(b"Cache-Control", hls_reload.cache_control(state, d))]


async def ll_playlist(conn: HttpConnection, url: HlsUrl, path: str, d: Directives) -> int:
    """Answer a playlist request with directives (no viewer ctx); the body bytes sent."""
    got = await ll_text(conn, url, path, d)
    if got is None or conn.closed:
        return 0
    text, state = got
    conn.respond(200, text, static.content_type(path), cache_control(state, d))
    return 0 if conn.head_request else len(text)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


async def serve_part(conn: HttpConnection, url: HlsUrl, part: HlsUrl, path: str) -> int:
    """Answer a request for LL-HLS part `path` (of stream `part`) whose file is not there yet:
    stream the hinted part as it is written, else 404. The body bytes sent."""
    ctx, root = conn.ctx, url.vhost.hls.path
    try:
        m3u8, _ = stream_files(url.vhost.hls, part.vhost.name, part.app, part.stream)
    except UnsafePath:
        refuse(conn, 404, "not found")
        return 0
    w = ctx.playlists.watch(part.key, m3u8)
    state, _ = await w.current()
    if not hls_reload.is_hint(state, path) and not state.ended:
        await w.refresh("checked")  # this worker's copy may be a part behind
        state = w.state

    async def serve_if_complete() -> int | None:
        found = static.resolve(root, path)
        if found.status != 200:
            return None
        return await static.serve_found(conn, found, path, ctx.loop, [(b"Cache-Control", hls.cache_control(url))],
                                        segcache.SEGMENTS)

    if state.ended or not hls_reload.is_hint(state, path):
        sent = await serve_if_complete()  # it may have been completed meanwhile
        if sent is None:
            refuse(conn, 404, "not found (not the preload hint)")
            return 0
        return sent
    deadline = ctx.loop.time() + state.hold
    w.waiters += 1
    try:
        while not conn.closed:
            sent = await serve_if_complete()
            if sent is not None:
                return sent
            partial = static.resolve(root, path + PARTIAL_SUFFIX)
            if partial.status == 200:
                sent = await _stream_partial(conn, w, url, partial.path, partial.path[:-len(PARTIAL_SUFFIX)],
                                             static.content_type(path), deadline)
                if sent is not None:
                    return sent
                continue  # renamed under us: the part is complete
            if partial.status == 403 or ctx.loop.time() > deadline or w.state.ended:
                refuse(conn, 404 if partial.status != 403 else 403, "not found")
                return 0
            await _next_chunk(w, min(FALLBACK_POLL, max(0.0, deadline - ctx.loop.time())))
        return 0
    finally:
        w.waiters -= 1


async def _next_chunk(w: PlaylistWatch, timeout: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(w.next_chunk()), timeout)
    except TimeoutError:
        pass


async def _stream_partial(conn: HttpConnection, w: PlaylistWatch, url: HlsUrl, partial: str, final: str,
                          ctype: str, deadline: float) -> int | None:
    """Send `partial` as it grows, chunked, until the writer renames it to `final`; the bytes
    sent, or None if it was renamed before it could be opened."""
    try:
        f = open(partial, "rb")
    except OSError:
        return None
    ctx = conn.ctx
    with f:
        ino = os.fstat(f.fileno()).st_ino
        conn.start_stream(200, ctype, [(b"Cache-Control", hls.cache_control(url))])
        ctx.counters["hls_ll_streamed_parts"] += 1
        if conn.head_request:
            conn.end_body()
            return 0
        sent = 0
        while not conn.closed:
            data = f.read()
            if data:
                conn.body(data)
                sent += len(data)
                await conn.drained()
            st = _stat(final)
            if st is not None and st.st_ino == ino:  # complete: nothing more is appended
                rest = f.read()
                if rest:
                    conn.body(rest)
                    sent += len(rest)
                conn.end_body()
                return sent
            if ctx.loop.time() > deadline or (w.state.ended and _stat(partial) is None):
                conn.abort()  # the writer gave it up: the client sees a cut response
                return sent
            await _next_chunk(w, CHUNK_POLL)
        return sent

