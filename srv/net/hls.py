"""The HLS writer as a worker starts it: the hub's "hls" recorder, with SRS's HLS hooks.

`start_hls` is the factory the worker puts in `StreamHub.recorders["hls"]`: for a local
publish on a vhost with ``hls { enabled on; }`` it starts an `HlsWriter` (srv/app/hls.py)
writing through the worker's disk threads, and hands it two things only this layer has:

- after each segment, SRS's ``on_hls`` (POST, the JSON body of srv/app/http_hooks.py with
  duration, cwd, file, url, m3u8, m3u8_url, seq_no) and ``on_hls_notify`` (a GET of each URL
  with ``[server_id] [vhost] [app] [stream] [ts_url] [param]`` filled in, reading at most
  ``hls_nb_notify`` bytes of the answer), in the background and in order per stream: a slow
  hook server never holds a segment back;
- ``hls_on_error disconnect``: ending the publisher's connection;
- LL-HLS (``hls_ll on``): each `PartEvent` (a part, a segment, the end) goes to the worker's
  ``ctx.hls.on_part``, which the serving side sets to wake its blocked playlist requests here
  and on the other workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from srv import log as srvlog
from srv.app.hls import HlsWriter, SegmentEvent
from srv.app.hls_ll import PartEvent
from srv.app.http_hooks import HookRequest
from srv.app.paths import UnsafePath
from srv.app.source import LiveSource
from srv.net import hooks
from srv.net.context import ConnectionContext

log = logging.getLogger("srv.hls")


def publisher_request(src: LiveSource) -> HookRequest:
    """The hooks' view of the stream's publisher (who published it, with which query)."""
    vhost, app, stream = src.key.split("/", 2)
    p = src.publisher
    params = dict(getattr(p, "params", None) or {})
    return HookRequest(client_id=getattr(p, "cid", ""), ip=getattr(p, "ip", ""), vhost=vhost, app=app,
                       tc_url=getattr(p, "tc_url", ""), stream=stream, params=tuple(params.items()))


def notify_url(template: str, server_id: str, request: HookRequest, ts_url: str) -> str:
    """An on_hls_notify URL with SRS's variables filled in."""
    out = template
    for variable, value in (("[server_id]", server_id), ("[vhost]", request.vhost), ("[app]", request.app),
                            ("[stream]", request.stream), ("[ts_url]", ts_url), ("[param]", request.param)):
        out = out.replace(variable, value)
    return out


class HlsHooks:
    """on_hls and on_hls_notify for one writer, sent in the order the segments were written."""

    def __init__(self, ctx: ConnectionContext, request: HookRequest, nb_notify: int) -> None:
        self.ctx = ctx
        self.request = request
        self.nb_notify = nb_notify
        self.last: asyncio.Task[None] | None = None
        self.logger = srvlog.ConnLog(log, request.client_id or "hls", f"{request.app}/{request.stream}")

    def __call__(self, event: SegmentEvent) -> None:
        ctx, request = self.ctx, self.request
        self.last = hooks.notify(ctx, "on_hls", request, self.logger, after=self.last,
                                 duration=round(event.duration, 3), cwd=os.getcwd(), file=event.file,
                                 url=event.url, m3u8=event.m3u8, m3u8_url=event.m3u8_url, seq_no=event.seq)
        config = ctx.config.vhosts.get(request.vhost)
        urls = config.http_hooks.urls("on_hls_notify") if config is not None else ()
        if urls:
            timeout = config.http_hooks.timeout if config is not None else None
            self.last = hooks.background(ctx.loop, self._notify(urls, event.url, timeout, self.last))

    async def _notify(self, urls: tuple[str, ...], ts_url: str, timeout: float | None,
                      after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await asyncio.wait([after])
        for template in urls:
            url = notify_url(template, self.ctx.server_id, self.request, ts_url)
            started = time.monotonic()
            try:
                answer = await self.ctx.hooks.get(url, self.nb_notify, timeout)
            except hooks.HookError as e:
                hooks.count_call(self.ctx.counters, "on_hls_notify", "failed", time.monotonic() - started, e.kind)
                self.logger.warning("http hook on_hls_notify failed, ignored: %s", e)
                continue
            hooks.count_call(self.ctx.counters, "on_hls_notify", "accepted", time.monotonic() - started)
            self.logger.log(srvlog.TRACE, "http hook on_hls_notify %s: HTTP %d, %d bytes read",
                            srvlog.redact_url(url), answer.status, len(answer.text))


def start_hls(ctx: ConnectionContext, src: LiveSource) -> HlsWriter | None:
    """The hub's "hls" recorder: a writer for a local publish whose vhost wants HLS."""
    hls = src.vhost.hls
    if not hls.enabled or not src.origin:
        return None
    request = publisher_request(src)
    publisher = src.publisher

    def disconnect(reason: str) -> None:
        kick = getattr(publisher, "kick", None)
        if kick is not None:
            kick(reason)

    def on_part(event: PartEvent) -> None:
        listener = ctx.hls.on_part  # the serving side's, looked up at each event
        if listener is not None:
            listener(event)

    try:
        return HlsWriter(src, hls, ctx.disk, HlsHooks(ctx, request, hls.nb_notify), disconnect, on_part)
    except UnsafePath as e:
        log.error("hls %s/%s: not written: %s", request.app, request.stream, e)
        return None
