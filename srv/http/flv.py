"""HTTP-FLV playback: mount matching and the player that a LiveSource writes FLV tags to.

Mounts follow SRS's `http_remux { mount [vhost]/[app]/[stream].flv; }`. As in SRS's
`SrsHttpStreamServer::http_mount`, a leading `[vhost]/` does not appear in the URL path: for
`__defaultVhost__` it is dropped, and for a named vhost it is the request's Host (or the
`?vhost=` query, which wins), so `GET /live/s.flv` plays `vhost/live/s` for whichever vhost the
request names. `[vhost]` elsewhere in the mount is replaced by the vhost's name.

`FlvPlayer` is both the source's Sink and a registered Client (type "flv-play"): the HTTP
response header goes out first, then the source writes metadata, sequence headers, the GOP
cache and live tags, the same shared `bytes` every FLV player gets. The FLV file header comes
before them, with its audio/video flags from `http_remux`'s `has_audio`/`has_video`, or, with
`guess_has_av` (the default), from the tracks the stream turns out to have: the tags before the
first frame are held back until then (`TrackGuess`), so an audio-only or video-only stream
announces only the track it has and players start at once. For an
HTTP/1.1 response each write is framed as one chunk (the framing is three small extra buffers
in the same `writelines`, never a copy of the media). A player that arrives before the publisher
waits (its response is already open); when the publisher leaves and comes back it continues.
The wait is bounded by `play { wait_timeout }`: a player whose stream has had no publisher for
that long is closed, so requests for a stream that never appears cannot hold slots forever.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from functools import lru_cache
from typing import Any

from srv import log as srvlog
from srv.app.http_hooks import HookRequest
from srv.app.hub import stream_key
from srv.app.packet import FLV
from srv.app.source import Consumer
from srv.conf.model import DEFAULT_VHOST, VhostConfig
from srv.media.flv import FLV_HEADER, TrackGuess
from srv.net import hooks
from srv.net.context import ConnectionContext
from srv.net.flow import tune_player_transport
from srv.net.wait import PublisherWait

log = logging.getLogger("srv.http")

HOLD_MAX = 1024 * 1024  # bytes of tags held for the header's guess before it is sent anyway


@lru_cache(maxsize=256)
def mount_pattern(mount: str, vhost: str) -> re.Pattern[str]:
    """The regex of request paths a mount serves for `vhost` (groups: app, stream)."""
    template = mount[len("[vhost]/"):] if mount.startswith("[vhost]/") else mount
    if vhost == DEFAULT_VHOST:
        template = template.replace(f"{DEFAULT_VHOST}/", "")
    template = "/" + template.lstrip("/").replace("[vhost]", vhost)
    rx = re.escape(template)
    rx = rx.replace(re.escape("[app]"), "(?P<app>[^?#]+?)", 1).replace(re.escape("[stream]"), "(?P<stream>[^/]+)", 1)
    return re.compile(rx)


def mount_url(vhost: VhostConfig, app: str, stream: str) -> str:
    """The path (and `?vhost=` for a named vhost) an HTTP-FLV player asks for to play
    `app/stream` of `vhost`, or "" when the vhost has no FLV mount: `match_mount`'s inverse."""
    remux = vhost.http_remux
    if not remux.enabled or not remux.mount.endswith(".flv"):
        return ""
    template = remux.mount[len("[vhost]/"):] if remux.mount.startswith("[vhost]/") else remux.mount
    if vhost.name == DEFAULT_VHOST:
        template = template.replace(f"{DEFAULT_VHOST}/", "")
    path = "/" + template.lstrip("/").replace("[vhost]", vhost.name).replace("[app]", app, 1)
    path = path.replace("[stream]", stream, 1)
    return path if vhost.name == DEFAULT_VHOST else f"{path}?vhost={vhost.name}"


def match_mount(vhost: VhostConfig, path: str) -> tuple[str, str] | None:
    """(app, stream) when `path` is an HTTP-FLV mount of `vhost`, else None."""
    remux = vhost.http_remux
    if not remux.enabled or not remux.mount.endswith(".flv"):
        return None
    m = mount_pattern(remux.mount, vhost.name).fullmatch(path)
    if m is None or "app" not in m.groupdict() or "stream" not in m.groupdict():
        return None
    app, stream = m.group("app"), m.group("stream")
    if not app or not stream or ".." in app.split("/"):
        return None
    return app, stream


class FlvPlayer:
    """One HTTP-FLV play: the Sink of its consumer and a Client of the worker."""

    def __init__(self, ctx: ConnectionContext, transport: asyncio.Transport, vhost: VhostConfig,
                 app: str, stream: str, ip: str, tc_url: str, chunked: bool, header_bytes: int,
                 cid: str = "", hooked: HookRequest | None = None, params: dict[str, str] | None = None) -> None:
        self.ctx = ctx
        self.transport = transport
        self.vhost = vhost
        self.app = app
        self.stream = stream
        self.key = stream_key(vhost.name, app, stream)
        self.ip = ip
        self.tc_url = tc_url  # scheme://host/app, as the player asked
        self.params = dict(params or {})  # the URL's query (an edge passes it to the origin)
        self.chunked = chunked
        self.closed = False
        self.started = time.time()
        self.sent = header_bytes
        self.recv_bytes = 0
        self.cid = cid or ctx.new_cid()
        self.hooked = hooked  # what its on_play was asked with: on_stop is due when it ends
        self.consumer: Consumer | None = None
        self.close_reason = ""
        remux = vhost.http_remux
        self.guess: TrackGuess | None = TrackGuess() if remux.guess_has_av else None
        self.held: list[bytes] = []  # tags waiting for the FLV header while guessing
        self.held_bytes = 0
        self.wait = PublisherWait(ctx.loop, vhost.play.wait_timeout, self.close)

    def start(self) -> None:
        self.ctx.register(self)
        # a stall must show as back-pressure, as for RTMP; and the vhost's tcp_nodelay
        tune_player_transport(self.transport, self.vhost.tcp_nodelay)
        if self.guess is None:
            remux = self.vhost.http_remux
            self._send([FLV_HEADER(remux.has_audio, remux.has_video)])
        self.consumer = self.ctx.hub.play(self.key, self.vhost, self, FLV, params=self.params)
        if self.consumer.source.publisher is None:
            self.wait.waiting()

    def _hold(self, parts: list[bytes]) -> None:
        """Keep tags back until the tracks are known, then send the header and them."""
        guess = self.guess
        assert guess is not None
        decided = False
        for p in parts:
            decided = guess.feed(p) or decided
            self.held_bytes += len(p)
        self.held.extend(parts)
        if not decided and self.held_bytes < HOLD_MAX:
            return
        remux = self.vhost.http_remux
        has_audio, has_video = guess.has_audio, guess.has_video
        if not (has_audio or has_video):  # only metadata, and a lot of it: fall back to the config
            has_audio, has_video = remux.has_audio, remux.has_video
        held, self.held, self.guess = self.held, [], None
        log.log(srvlog.TRACE, "flv-play %s header: audio %s, video %s", self.key,
                "yes" if has_audio else "no", "yes" if has_video else "no",
                extra=srvlog.event("flv_header", cid=self.cid, stream=self.key))
        self._send([FLV_HEADER(has_audio, has_video), *held])

    def stop(self) -> None:
        """The connection is gone: leave the source and the client table."""
        self.closed = True
        self.wait.fed()
        if self.consumer is not None:
            self.sent += self.consumer.sent_bytes
            self.ctx.hub.stop_play(self.consumer)
            self.consumer = None
        self.ctx.unregister(self)
        if self.hooked is not None:
            hooks.notify(self.ctx, "on_stop", self.hooked, log)

    # ---- flow control --------------------------------------------------------------------------

    def pause(self) -> None:
        if self.consumer is not None:
            self.consumer.pause()

    def resume(self) -> None:
        if self.consumer is not None:
            self.consumer.resume()

    # ---- Sink ----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self.guess is not None:
            self._hold([data])
        elif self.chunked:
            self.transport.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
        else:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if self.closed:
            return
        if self.guess is not None:
            self._hold(data)
        else:
            self._send(data)

    def _send(self, data: list[bytes]) -> None:
        if self.chunked:
            n = sum(map(len, data))
            if n:
                self.transport.writelines([b"%x\r\n" % n, *data, b"\r\n"])
        else:
            self.transport.writelines(data)

    def on_unpublish(self) -> None:
        # keep the response open: the player continues when the publisher is back (SRS)
        if not self.closed:
            self.wait.waiting()

    def on_publish(self) -> None:
        self.wait.fed()

    def close_slow(self, reason: str) -> None:
        self.ctx.counters["clients_errs_total"] += 1
        self.close(reason)

    # ---- Client --------------------------------------------------------------------------------

    def byte_counts(self) -> tuple[int, int]:
        """(sent, received), cheaply: read every second for the server-wide counters."""
        return self.sent + (self.consumer.sent_bytes if self.consumer is not None else 0), self.recv_bytes

    def info(self) -> dict[str, Any]:
        sent = self.byte_counts()[0]
        return {
            "id": self.cid, "ip": self.ip, "vhost": self.vhost.name, "stream": self.key,
            "url": f"/{self.app}/{self.stream}.flv", "tcUrl": self.tc_url,
            "type": "flv-play", "alive": time.time() - self.started,
            "recv_bytes": self.recv_bytes, "send_bytes": sent,
        }

    def kick(self, reason: str) -> None:
        self.close(reason)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.close_reason = reason
            self.closed = True
            self.transport.abort()
