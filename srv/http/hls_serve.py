"""HLS requests on an HTTP connection: files of `hls_path` with their headers, SRS's `hls_ctx`
viewers (`srv.app.hls_viewers`) and the per-stream request and byte counts.

A new viewer (a playlist request with `hls_ctx on` and no valid `?hls_ctx=`) passes the same
checks as an HTTP-FLV play, in the same order: a per_ip ban, `security`, `signed_url`, then
`on_play`; a refusal is a 403 and the connection closes. (per_ip connection and rate limits
are the HTTP connection's business: an HLS viewer holds none.) An admitted one becomes an `hls-play` client of
this worker and gets the variant playlist. A request with a valid ctx of another worker asks
that worker (through the master) whether the viewer is still there; if the master or the
owner does not answer within `VISIT_TIMEOUT`, the request is served (the ctx's signature
already says this server admitted it). Media and init segments come from the worker's
`segcache` (one read for all their viewers). Segments are served to anyone, as SRS does; with a
valid ctx their bytes are the viewer's.

LL-HLS (`hls_ll on`): a playlist request with `_HLS_msn`/`_HLS_part`/`_HLS_skip` and a part not
written yet go to `hls_ll_serve` (held until the part is there, the hinted part streamed as it
is written), after the viewer's checks when it carries a ctx.

`expire_viewers` (the worker's heartbeat, once a second) ends viewers that made no playlist
request for twice `hls_window` (SRS's `SrsHlsStream::on_timer`): they leave the client table
and `on_stop` fires, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from srv import log as srvlog
from srv.app import hls_reload
from srv.app.access import check_access
from srv.app.hls_viewers import HlsViewer, Visit, owner_of
from srv.app.http_hooks import HookRequest
from srv.http import eager, hls, hls_ll_serve, openfiles, segcache, static
from srv.http.hls import CTX_PARAM, HlsUrl, Kind
from srv.net import hooks
from srv.net.context import ConnectionContext

if TYPE_CHECKING:
    from srv.http.server import HttpConnection

log = logging.getLogger("srv.http")

VISIT_TIMEOUT = 1.0  # seconds a request waits for another worker's word on a viewer
LL_VISIT_EVERY = 1.0  # seconds an owner's word on a viewer holds for its LL-HLS blocking requests
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def count(ctx: ConnectionContext, key: str, nbytes: int) -> None:
    """One HLS answer: for its stream (API, exporter) and for this worker (`hls_requests`)."""
    ctx.hls.count(key, nbytes)
    ctx.counters["hls_requests"] += 1


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def serve_hls(conn: HttpConnection, host: str, path: str, query: list[tuple[str, str]]) -> bool:
    """Answer `path` if it is a file of a vhost's `hls_path`; False to let the static files try."""
    ctx = conn.ctx
    params = dict(query)
    vhost = ctx.config.vhost(hls.vhost_name(host, params))
    if vhost is None or not vhost.enabled:
        return False
    url = hls.match_hls(vhost, path)
    if url is None:
        return False
    part = hls_ll_serve.part_url(url, path) if url.kind is Kind.SEGMENT and not url.key else None
    found = static.resolve_open(vhost.hls.path, path, openfiles.FILES)
    if found.status != 200 and (part is None or found.status == 403):
        return False
    directives = hls_reload.NO_DIRECTIVES
    if url.kind is Kind.PLAYLIST and vhost.hls.ll and any(k.startswith("_HLS_") for k, _ in query):
        got = hls_reload.parse_directives(query)
        if isinstance(got, str):
            static.close_found(found)
            hls_ll_serve.refuse(conn, 400, got)
            count(ctx, url.key, 0)
            return True
        directives = got
    if url.kind is Kind.PLAYLIST and vhost.hls.ctx:
        static.close_found(found)
        await eager.in_task()  # viewers: the hook client and the master need a Task
        await _playlist_with_ctx(conn, host, path, query, url, directives)
        return True
    key = part.key if part is not None else url.key
    if found.status != 200 and part is not None:  # the part in progress (or a 404)
        await eager.in_task()
        sent = await hls_ll_serve.serve_part(conn, url, part, path)
    elif directives.blocking or directives.skip:
        static.close_found(found)
        await eager.in_task()
        sent = await hls_ll_serve.ll_playlist(conn, url, found.path, directives)
    else:
        cache = segcache.SEGMENTS if url.kind is not Kind.PLAYLIST else None
        sent = await static.serve_found(conn, found, path, ctx.loop, [(b"Cache-Control", hls.cache_control(url))],
                                        cache)
    count(ctx, key, sent)
    given = params.get(CTX_PARAM)
    owner = owner_of(ctx.hls.secret, given, key) if given and key else None
    if owner is not None and given:
        ctx.hls.served(given, owner[0], sent)
    return True


async def _visit(ctx: ConnectionContext, given: str, slot: int, blocking: bool = False) -> Visit:
    """What the viewer's owner says about a playlist request of ctx `given`. An LL-HLS blocking
    request of a viewer its owner confirmed within `LL_VISIT_EVERY` asks nobody."""
    now = time.monotonic()
    if slot == ctx.hls.slot:
        return ctx.hls.visit(given, 0, now)
    if blocking and now - ctx.hls.confirmed.get(given, -LL_VISIT_EVERY) < LL_VISIT_EVERY:
        return Visit.ALIVE
    fut = ctx.master.hls_visit(slot, given, ctx.hls.take_pending(given))
    try:
        reply = await asyncio.wait_for(fut, VISIT_TIMEOUT)
    except TimeoutError:
        return Visit.ALIVE
    try:
        state = Visit(reply.state)
    except ValueError:
        return Visit.UNKNOWN
    if state is Visit.ALIVE:
        ctx.hls.confirmed[given] = now
    else:
        ctx.hls.confirmed.pop(given, None)
    return state


async def _playlist_with_ctx(conn: HttpConnection, host: str, path: str, query: list[tuple[str, str]],
                             url: HlsUrl, directives: hls_reload.Directives) -> None:
    ctx, vhost = conn.ctx, url.vhost
    given = dict(query).get(CTX_PARAM, "")
    owner = owner_of(ctx.hls.secret, given, url.key) if given and url.key else None
    if owner is not None:
        state = await _visit(ctx, given, owner[0], directives.blocking)
        if conn.closed:
            return
        if state is Visit.EOF:
            conn.error(404, f"HLS stream {given} is EOF")
            return
        if state is Visit.ALIVE:
            if directives.blocking or directives.skip:  # LL-HLS: held until the part is there
                found = static.resolve(vhost.hls.path, path)
                got = await hls_ll_serve.ll_text(conn, url, found.path, directives)
                if got is None or conn.closed:
                    return
                body = hls.with_ctx(got[0], given) if vhost.hls.ts_ctx else got[0]
                conn.respond(200, body, PLAYLIST_TYPE, [(b"Cache-Control", hls.PRIVATE)])
                sent = 0 if conn.head_request else len(body)
            elif not vhost.hls.ts_ctx:  # SRS: the playlist as a plain file
                sent = await static.serve(conn, vhost.hls.path, path, ctx.loop, [(b"Cache-Control", hls.NO_CACHE)])
            else:
                found = static.resolve(vhost.hls.path, path)
                try:
                    if found.st is not None and found.st.st_size <= static.SMALL:
                        text = read_file(found.path)  # a playlist: a page-cache read, on the loop
                    else:
                        text = await ctx.loop.run_in_executor(None, read_file, found.path)
                except OSError:
                    conn.error(404, "not found")
                    return
                body = hls.with_ctx(text, given)
                conn.respond(200, body, PLAYLIST_TYPE, [(b"Cache-Control", hls.PRIVATE)])
                sent = 0 if conn.head_request else len(body)
            count(ctx, url.key, sent)
            ctx.hls.served(given, owner[0], sent)
            return
    await _new_viewer(conn, host, path, query, url)


async def _new_viewer(conn: HttpConnection, host: str, path: str, query: list[tuple[str, str]],
                      url: HlsUrl) -> None:
    """SRS's `serve_new_session`: the play checks, then a viewer and its variant playlist."""
    ctx, vhost = conn.ctx, url.vhost
    params = dict(query)
    refusal = ctx.limiter.banned(conn.ip, time.monotonic()) or \
        check_access(vhost, "play", conn.ip, url.app, url.stream, params, time.time())
    if refusal is not None:
        conn.refuse(refusal, f"hls play {path}")
        return
    cid = ctx.new_cid()
    tc_url = f"{conn.scheme}://{host or '127.0.0.1'}/{url.app}"
    hooked = None
    if hooks.wants(ctx, vhost.name, "on_play"):
        referer = conn.header(b"referer") or b""
        hooked = HookRequest(cid, conn.ip, vhost.name, url.app, tc_url, url.stream,
                             tuple((k, v) for k, v in query if k != CTX_PARAM), referer.decode("latin-1"))
        why = await hooks.decide(ctx, "on_play", hooked, log)
        if conn.closed:
            return
        if why is not None:
            conn.refuse(why, f"hls play {path}")
            return
    viewer = HlsViewer(cid, ctx.hls.ctx_for(cid, url.key), url.key, vhost.name, conn.ip, path, tc_url,
                       timeout=2 * vhost.hls.window, hooked=hooked)
    viewer.kicked = ctx.unregister
    ctx.hls.open(viewer)
    ctx.register(viewer)
    log.log(srvlog.TRACE, "[%s] %s hls-play %s start, hls_ctx %s", cid, conn.peer, url.key, viewer.ctx)
    body = hls.variant(path, viewer.ctx, query)
    conn.respond(200, body, PLAYLIST_TYPE, [(b"Cache-Control", hls.PRIVATE)])
    viewer.sent += 0 if conn.head_request else len(body)
    count(ctx, url.key, 0 if conn.head_request else len(body))


def expire_viewers(ctx: ConnectionContext) -> None:
    """End the viewers that stopped asking for their playlist: client table, log, on_stop."""
    for viewer in ctx.hls.expired(time.monotonic()):
        if not viewer.interrupted:
            ctx.unregister(viewer)
        log.log(srvlog.TRACE, "[%s] %s hls-play %s closed (%s), sent %d bytes, %.1fs", viewer.cid, viewer.ip,
                viewer.key, "kicked" if viewer.interrupted else f"no request for {viewer.timeout:g}s",
                viewer.sent, time.time() - viewer.started)
        if viewer.hooked is not None:
            hooks.notify(ctx, "on_stop", viewer.hooked, log)
