"""RTMP through the proxy: read a session up to publish/play, route it, then splice bytes.

Message sequence of one relayed client (C client, P proxy, O origin):

1. C <-> P: the RTMP handshake and ``connect``/``createStream`` are answered by the proxy's own
   sans-I/O ``ServerSession``; every byte C sends after its C2 is also kept verbatim.
2. C -> P ``publish``/``play``: the stream is known (``vhost/app/stream``). P stops reading C,
   asks the ``Router`` for an origin (a claim for a publish, the owner for a play) and dials it.
3. P <-> O: a client handshake of P's own, then P replays C's kept bytes unchanged, so O's chunk
   decoder ends in exactly the state of C's encoder (chunk size included); from here on C's bytes
   go to O as they come (client -> origin is a pure splice).
4. O -> P: O answers the replayed commands; P drops those answers (C already had P's) until the
   first ``onStatus``, which P re-encodes to C after a Set Chunk Size to O's chunk size. The rest
   goes to C unchanged: srv and SRS start every message with a fmt 0 header, so nothing O sends
   next depends on the chunk state C's decoder has.

The proxy never decodes media; flow control couples the two sockets (a full write buffer on one
side pauses reading on the other). A refused client gets SRS's status (``NetStream.Publish.BadName``
for a stream held elsewhere) and one log line naming it, its address and the reason.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from srv import log as srvlog
from srv.cluster.balancer import Origin
from srv.cluster.ends import ClientEnd, OriginEnd
from srv.cluster.router import Claim, Refused, Router, stream_name
from srv.net.context import ConnectionContext
from srv.rtmp.chunk import CSID_DATA, ChunkDecoder
from srv.rtmp.connection import decode_command
from srv.rtmp.errors import ProtocolError
from srv.rtmp.events import ConnectRequest, Event, PlayRequest, PublishRequest
from srv.rtmp.handshake import ClientHandshake
from srv.rtmp.messages import Message, MessageType
from srv.rtmp.session import ServerSession

log = logging.getLogger("srv.proxy")

HANDSHAKE_BYTES = 1 + 1536 + 1536  # C0 C1 C2: what the client sends before its chunk stream
MAX_IDENTIFY_BYTES = 1 << 20  # a client that sends more before publish/play is not a real one
CONNECT_TIMEOUT = 3.0
ANSWER_TIMEOUT = 10.0  # the origin has this long to answer the replayed publish/play
ATTEMPTS = 3


def _is_status(msg: Message) -> bool:
    if msg.type_id not in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
        return False
    return decode_command(msg).name == "onStatus"


class OriginLink(OriginEnd):
    """The proxy's connection to an origin, for one relayed client."""

    relay: RtmpRelay

    def __init__(self, relay: RtmpRelay, origin: Origin) -> None:
        super().__init__(relay)
        self.origin = origin
        self.handshake = ClientHandshake()
        self.decoder = ChunkDecoder()
        self.phase = "handshake"  # -> "answer" -> "splice"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        # From here on the origin may answer before the task that dialled it resumes (a busy
        # loop runs this link's callbacks first), so the link is known and the wait for its
        # answer timed from this moment, not from that task's next step.
        self.relay.link = self
        self.relay.await_answer()
        self.handshake.start()
        self.transport.write(self.handshake.data_to_send())

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        if self.phase == "splice":
            relay.sent += len(data)
            relay.transport.write(data)
            return
        assert self.transport is not None
        try:
            if self.phase == "handshake":
                self.handshake.receive_data(data)
                out = self.handshake.data_to_send()
                if not self.handshake.done:
                    self.transport.write(out)
                    return
                self.transport.write(out + relay.replay(self.transport))
                self.phase = "answer"
                data = self.handshake.leftover
            messages, used = self.decoder.feed_until(data, _is_status)
        except ProtocolError as e:
            relay.close(f"origin {self.origin.label()}: {e}")
            return
        if messages and _is_status(messages[-1]):
            self.phase = "splice"
            relay.origin_answered(messages[-1], self.decoder.chunk_size, data[used:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.close(f"origin {self.origin.label()} closed" + (f" ({exc})" if exc else ""))


class RtmpRelay(ClientEnd):
    """One RTMP client of the proxy (see the module docstring for the message sequence)."""

    def __init__(self, ctx: ConnectionContext, router: Router) -> None:
        super().__init__(ctx, router)
        cfg = ctx.config
        self.first_timeout = (cfg.handshake_timeout + cfg.identify_timeout) / 1000
        self.session = ServerSession(out_chunk_size=cfg.chunk_size)
        self.raw = bytearray()
        self.connect: ConnectRequest | None = None
        self.request: PublishRequest | PlayRequest | None = None
        self.link: OriginLink | None = None
        self.claim: Claim | None = None
        self.keeper: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def info(self) -> dict[str, Any]:
        return {**super().info(), "origin": self.link.origin.label() if self.link else ""}

    # ---- client side ----

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.upstream is not None:
            self.upstream.write(data)
            return
        self.raw += data  # while routing too: replayed to the origin after the commands
        if self.task is not None:
            return
        if len(self.raw) > MAX_IDENTIFY_BYTES:
            self.close(f"sent over {MAX_IDENTIFY_BYTES} bytes before publish or play")
            return
        try:
            events = self.session.receive_data(data)
        except ProtocolError as e:
            self.close(f"protocol error: {e}")
            return
        self._handle(events)

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.sent += len(out)
            self.transport.write(out)

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ConnectRequest):
                self.connect = event
                more = self.session.accept_connect(event)
                self._flush()
                self._handle(more)
            elif isinstance(event, (PublishRequest, PlayRequest)) and self.task is None:
                self._flush()
                self._route(event)
                return
        self._flush()

    def _route(self, request: PublishRequest | PlayRequest) -> None:
        assert self.connect is not None
        self.timer.cancel()
        self.transport.pause_reading()  # until the origin is dialled: its bytes wait in the kernel
        self.request = request
        self.kind = "publish" if isinstance(request, PublishRequest) else "play"
        vhost = request.params.get("vhost") or self.connect.vhost
        self.stream = stream_name(vhost, self.connect.app, request.stream_name)
        self.task = self.ctx.loop.create_task(self._pick_origin())

    async def _pick_origin(self) -> None:
        tried: set[str] = set()
        for _ in range(ATTEMPTS):
            claim = None
            try:
                if self.kind == "publish":
                    claim = await self.router.claim_publish(self.stream, f"{self.ctx.server_id}/{self.cid}", tried)
                    origin = claim.origin
                else:
                    origin = await self.router.find_play(self.stream, tried)
            except Refused as e:
                self.refuse(e.code, e.reason)
                return
            if self.closed:
                if claim is not None:
                    await self.router.release(claim)
                return
            host, port = origin.rtmp[0]
            try:
                _, link = await asyncio.wait_for(
                    self.ctx.loop.create_connection(partial(OriginLink, self, origin), host, port),
                    CONNECT_TIMEOUT)
            except (TimeoutError, OSError) as e:
                log.warning("proxy: client %s %s: origin %s unreachable: %s", self.cid, self.stream,
                            origin.label(), str(e) or "timeout")
                self.router.connect_failed(origin)
                tried.add(origin.server)
                if claim is not None:
                    await self.router.release(claim)
                continue
            if self.closed:
                if link.transport is not None:
                    link.transport.close()
                if claim is not None:
                    await self.router.release(claim)
                return
            self.link = link
            if claim is not None:
                self.claim = claim
                self.keeper = self.ctx.loop.create_task(self.router.keep(claim))
            log.log(srvlog.TRACE, "proxy: client %s %s %s %s -> origin %s", self.cid, self.ip, self.kind,
                    self.stream, origin.label())
            return
        code = "NetStream.Publish.Failed" if self.kind == "publish" else "NetStream.Play.Failed"
        self.refuse(code, "no origin could be reached")

    def await_answer(self) -> None:
        """Give the origin just dialled ANSWER_TIMEOUT to answer the replayed publish/play."""
        self.timer.cancel()
        if not self.closed:
            self.timer = self.ctx.loop.call_later(ANSWER_TIMEOUT, self.close, "the origin did not answer in time")

    def replay(self, origin: asyncio.Transport) -> bytes:
        """What the client sent after its handshake, for the origin; then its bytes go straight there."""
        data = bytes(self.raw[HANDSHAKE_BYTES:])
        self.raw = bytearray()
        self.upstream = origin
        self.transport.resume_reading()
        return data

    def origin_answered(self, status: Message, chunk_size: int, rest: bytes) -> None:
        self.timer.cancel()
        if chunk_size != self.session.out_chunk_size:
            self.session.set_chunk_size(chunk_size)
        self.session.send_message(status, CSID_DATA)
        self._flush()
        if rest:
            self.sent += len(rest)
            self.transport.write(rest)

    def refuse(self, code: str, reason: str) -> None:
        assert self.request is not None
        log.warning("proxy: client %s %s %s %s refused: %s (%s)", self.cid, self.ip, self.kind, self.stream,
                    reason, code)
        self.session.send_status(self.request.stream_id, "error", code, reason)
        self._flush()
        self.close("refused", quiet=True)

    # ---- both ----

    def connection_lost(self, exc: Exception | None) -> None:
        self.close("client closed" + (f" ({exc})" if exc else ""))

    def close(self, reason: str, quiet: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.cancel()
        if not quiet:
            log.log(srvlog.TRACE if self.link else srvlog.INFO, "proxy: client %s %s %s %s closed: %s",
                    self.cid, self.ip, self.kind or "-", self.stream or "-", reason)
        if self.keeper is not None:
            self.keeper.cancel()
        if self.claim is not None:
            self.ctx.loop.create_task(self.router.release(self.claim))
        if self.link is not None and self.link.transport is not None:
            self.link.transport.close()
        self.transport.close()
        self.ctx.unregister(self)
