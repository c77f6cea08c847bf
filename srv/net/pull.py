"""Pull: a worker plays a stream from the worker that owns its publisher.

SO_REUSEPORT lands players on any worker. When a player's stream is published on another worker,
the hub starts ONE Pull: an RTMP play over that worker's internal unix socket. The pull acts as
the local source's publisher (`origin=False`: no forwarding, no registry claim), so all local
players fan out from one upstream copy. This is the same mechanism an edge uses against an origin.
"""

from __future__ import annotations

import logging
import socket

from srv import log as srvlog
from srv.app.source import LiveSource
from srv.net.context import ConnectionContext
from srv.net.rtmp_client import RtmpClientProtocol
from srv.rtmp import events as ev
from srv.rtmp.client import ClientSession

log = logging.getLogger("srv.pull")


def feed_source(src: LiveSource, feeder: object, e: ev.Event) -> bool:
    """An upstream play's media or metadata goes into `src` while `feeder` is its publisher;
    True when `e` was such a message (hot path: exact type checks)."""
    if type(e) is ev.MediaMessage or type(e) is ev.MetadataMessage:
        if src.publisher is feeder:
            m = e.message
            src.on_message(m.type_id, m.timestamp, m.payload,
                           e.metadata if type(e) is ev.MetadataMessage else None)
        return True
    return False


def advance_play(session: ClientSession, stream: str, e: ev.Event) -> bool:
    """A play client's steps: connected -> createStream -> play(stream); True when `e` was one."""
    if isinstance(e, ev.Connected):
        session.create_stream()
    elif isinstance(e, ev.StreamCreated):
        session.play(stream)
    else:
        return False
    return True


class Pull:
    def __init__(self, ctx: ConnectionContext, source: LiveSource, slot: int, address: str) -> None:
        self.ctx = ctx
        self.source = source
        self.slot = slot
        self.address = address
        self.stopped = False
        self.playing = False
        self.closed = False
        vhost, app, self.stream = source.key.split("/", 2)
        self.session = ClientSession(app=app, tc_url=f"rtmp://127.0.0.1/{app}?vhost={vhost}",
                                     out_chunk_size=ctx.config.chunk_size)
        self.proto: RtmpClientProtocol | None = None
        self.task = ctx.loop.create_task(self.run())

    async def run(self) -> None:
        loop = self.ctx.loop
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # uvloop cannot connect to an abstract address by name: connect the socket ourselves
            await loop.sock_connect(sock, self.address)
            _, proto = await loop.create_unix_connection(
                lambda: RtmpClientProtocol(self.session, self.on_event, self.on_lost), sock=sock)
            self.proto = proto  # type: ignore[assignment]
        except OSError as e:
            sock.close()
            self.on_lost(f"cannot reach worker {self.slot}: {e}")

    def on_event(self, e: ev.Event) -> None:
        src = self.source
        if feed_source(src, self, e) or advance_play(self.session, self.stream, e):
            return
        if isinstance(e, ev.StatusEvent):
            if e.code == "NetStream.Play.Start" and not self.playing:
                self.playing = True
                if src.publisher is None:
                    src.on_publish(self, origin=False)
                    log.log(srvlog.INFO, "pull %s from worker %d started", src.key, self.slot)
            elif e.code == "NetStream.Play.UnpublishNotify" and src.publisher is self:
                src.on_unpublish()
            elif e.code == "NetStream.Play.PublishNotify" and src.publisher is None and self.playing:
                src.on_publish(self, origin=False)  # the owner's source is fed again (an edge's
                # pull moved to another origin): local players resume on its headers and keyframe
        elif isinstance(e, (ev.ConnectFailed, ev.CommandFailed)):
            if self.proto is not None:
                self.proto.close(f"pull refused: {e}")

    def on_lost(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.stopped:
            log.log(srvlog.INFO, "pull %s from worker %d ended: %s", self.source.key, self.slot, reason)
            self.ctx.hub.pull_ended(self)

    def stop(self) -> None:
        self.stopped = True
        if self.proto is not None:
            self.proto.close("stopped")
        else:
            self.task.cancel()
