"""The RTMP server connection: binds srv.rtmp.ServerSession to an asyncio transport.

Callbacks stay thin: bytes go into the sans-I/O session, its events are acted on here, its
output goes back out. A publisher's media goes straight into its LiveSource; a player is a Sink
the source writes shared bytes to. Malformed bytes raise ProtocolError in the session: that one
connection is closed with a log line naming the client and the reason, nothing else is touched.

The same class serves the workers' internal unix socket, where another worker pulls a stream it
has players for (`internal=True`: plays only what is published here, never pulls in turn).

SRS's http_hooks: on_connect, on_publish and on_play are awaited (in a task; the loop runs on)
before the connect, publish or play is answered, and a refusal gets a real RTMP answer before the
close (`refuse`). Messages the client sends meanwhile are held by the session (connect) or in
`pending_media` (publish). on_unpublish, on_stop and on_close are notifications, sent in that
order per connection (`notify`), never awaited by the connection.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from srv import log as srvlog
from srv.app.access import Refusal, check_access, plain_ip
from srv.app.forward_target import loop_refusal
from srv.app.http_hooks import HookRequest
from srv.app.hub import stream_key
from srv.app.packet import rtmp_encoding
from srv.app.source import Consumer, LiveSource
from srv.conf.model import VhostConfig
from srv.net import edge, hooks, pulse
from srv.net.context import ConnectionContext, IpSlot
from srv.net.flow import MergedRead, tune_player_transport
from srv.net.forward import ask_backends
from srv.net.refuse import REFUSE_LINGER, record_refusal
from srv.net.wait import PublisherWait
from srv.rtmp import events as ev
from srv.rtmp.errors import ProtocolError
from srv.rtmp.session import ServerSession, ServerState

log = logging.getLogger("srv.rtmp")

# Largest message a publisher may announce once its publish is accepted (before, the session
# allows 1 MiB, nginx-rtmp's max_message; a 4K keyframe can pass 3 MB). A bigger length header
# is an attack or garbage: close before buffering it.
MAX_MESSAGE_SIZE = 8 * 1024 * 1024
# Media a publisher may send while its publish is being decided (on_publish, forward backends), held and
# then handed to the source.
MAX_PENDING_MEDIA = 1000
# What a connection may send while the master decides its per_ip admission (C0+C1 is 1537 bytes).
HELD_MAX = 64 * 1024
MAX_PENDING_MEDIA_BYTES = 8 * 1024 * 1024
# How long a publisher taking a stream over (second_publisher takeover) waits for the kicked one
# to let go of it, on whichever worker it was.
TAKEOVER_WAIT = 5.0
# A publish-timeout check that runs this late (seconds) found the loop held, not the publisher silent.
HELD_LOOP = 0.5


class Role(enum.Enum):
    """What an RTMP connection does; the value is its client type in the API (SRS's names)."""

    NONE = "rtmp-connect"
    PUBLISH = "fmle-publish"
    PLAY = "rtmp-play"


class RtmpServerProtocol(asyncio.Protocol):
    # One per connection, thousands per worker: slots, not a dict. CPython shares an instance
    # dict's keys only up to 29 attributes; past that every connection carries its own ~1.5 KiB
    # dict (it did: 7.2 KiB per player instead of 5.4, docs/performance.md).
    __slots__ = ("app", "cid", "client", "close_reason", "closed", "connect_params", "consumer", "ctx",
                 "deadline", "held_data", "in_handshake", "internal", "ip", "ip_slot", "key", "last_media",
                 "log", "media_seen", "merged_read", "notified", "page_url", "params", "pending_bytes", "pending_media",
                 "recv_bytes", "role", "send_bytes", "session", "source", "started", "stream", "stream_id",
                 "tc_url", "timer", "transport", "unpublished", "url", "vhost", "wait")

    def __init__(self, ctx: ConnectionContext, internal: bool = False,
                 client: tuple[str, int] | None = None) -> None:
        self.ctx = ctx
        self.internal = internal
        self.client = client  # the client's (ip, port) from a PROXY header; else the peer's
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.role = Role.NONE
        self.vhost: VhostConfig | None = None
        self.app = ""
        self.tc_url = ""
        self.key = ""
        self.url = ""
        self.params: dict[str, str] = {}  # the publish's query (forwarders pass it on)
        self.connect_params: dict[str, str] = {}  # the tcUrl's and app's query
        self.ip_slot = IpSlot()  # its per_ip counts, given back when it ends
        self.held_data: bytearray | None = None  # what arrives while the master decides (per_ip)
        self.page_url = ""
        self.stream = ""  # the stream name, without its query
        self.notified: asyncio.Task[None] | None = None  # the last hook notification sent
        self.stream_id = 1
        self.source: LiveSource | None = None
        self.consumer: Consumer | None = None
        self.recv_bytes = 0
        self.send_bytes = 0
        self.started = time.time()
        self.last_media = time.monotonic()
        self.media_seen = False
        self.pending_media: list[tuple[int, int, bytes, dict[str, Any] | None]] | None = None
        self.pending_bytes = 0  # payload bytes in pending_media
        self.timer: asyncio.TimerHandle | None = None
        # handshake_timeout, then identify_timeout until it publishes or plays (none: internal)
        self.deadline: asyncio.TimerHandle | None = None
        self.in_handshake = True
        self.unpublished = False  # it published, then unpublished (FCUnpublish / deleteStream)
        self.wait: PublisherWait | None = None
        self.close_reason = ""
        self.merged_read: MergedRead | None = None  # publish { mr on; }: made at the first read it pauses

    # ---- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # asyncio or uvloop transport
        pulse.beat()  # a connect storm is a long turn of these: slow, not stuck
        self.transport = transport  # type: ignore[assignment]
        ctx = self.ctx
        self.cid = ctx.new_cid()
        # the one address of this client (PROXY header, else the socket's): limits, security,
        # hooks, logs and the API all read self.ip
        peer = self.client or transport.get_extra_info("peername")
        self.ip = plain_ip(peer[0]) if isinstance(peer, tuple) else "worker"
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "worker-pull"
        self.log = srvlog.ConnLog(log, self.cid, client)
        if not self.internal:
            if ctx.refuse_at_door(self.log, "", self.ip) is not None:
                self.closed = True
                transport.abort()
                return
            self.ip_slot.hold(lambda: ctx.limiter.release(self.ip))
            ctx.register(self)
        self.session = ServerSession(out_chunk_size=ctx.config.chunk_size,
                                     max_message_size=MAX_MESSAGE_SIZE)
        self.log.log(srvlog.INFO, "accepted", extra=srvlog.event("accept"))
        if not self.internal:
            self._arm_deadline("handshake_timeout", ctx.config.handshake_timeout)
            if ctx.shared_limits():  # handle nothing until the master's per_ip verdict
                self.held_data = bytearray()
                ctx.loop.create_task(self._admit_shared(transport))

    async def _admit_shared(self, transport: Any) -> None:
        reason, release = await self.ctx.admit_shared(self.log, "", self.ip)
        if self.closed:  # it left while the master was asked
            if release is not None:
                release()
            return
        if reason is not None:
            self.closed = True
            transport.abort()
            return
        if release is not None:
            self.ip_slot.hold(release)
        data, self.held_data = self.held_data, None
        if data:
            self.data_received(bytes(data))
        if not self.closed:
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        pulse.beat()
        if self.closed:
            return
        if self.held_data is not None:  # the master is deciding (per_ip): keep it, bounded
            self.held_data += data
            if len(self.held_data) > HELD_MAX:
                self.transport.pause_reading()  # type: ignore[union-attr]
            return
        self.recv_bytes += len(data)
        src = self.source
        try:
            if src is not None:  # publishing: audio and video go straight into the source
                session = self.session
                delivered = session.media_received
                events = session.receive_data(data, src.on_message)
                if session.media_received != delivered:
                    self.last_media = time.monotonic()  # the publisher is alive (one clock read)
                    self.media_seen = True
            else:
                events = self.session.receive_data(data)
            if self.in_handshake and self.session.state is not ServerState.HANDSHAKE:
                self.in_handshake = False
                if self.deadline is not None:
                    self._arm_deadline("identify_timeout", self.ctx.config.identify_timeout)
            if events:  # a publisher's reads mostly carry media only, all in the source already
                self.dispatch(events)
        except ProtocolError as e:
            self.fail(f"protocol error: {e}")
            return
        except Exception:  # a bug must cost this one connection, never the worker
            self.log.exception("internal error while handling this connection's data")
            self.fail("internal error")
            return
        self.flush()
        src = self.source
        if src is not None and src.vhost.publish.mr and not src.vhost.min_latency and not self.closed:
            latency = src.vhost.publish.mr_latency
            if self.merged_read is None:
                self.merged_read = MergedRead(self.transport, self.ctx.loop)
                self.merged_read.size_buffer(latency)
            self.merged_read.after_read(len(data), latency)

    def dispatch(self, events: list[ev.Event]) -> None:
        media = False  # audio or video went to the source: the publisher is alive (one clock read)
        for e in events:
            if type(e) is ev.MediaMessage:
                m = e.message
                src = self.source
                if src is not None:  # the hot path: a publisher's audio and video
                    src.on_message(m.type_id, m.timestamp, m.payload)
                    media = True
                else:
                    self.on_media(m)
            elif type(e) is ev.MetadataMessage:
                self.on_media(e.message, e.metadata)  # decoded once, here: the hub reuses it
            else:
                self.on_event(e)
            if self.closed:
                return
        if media:
            self.last_media = time.monotonic()
            self.media_seen = True

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.merged_read is not None:
            self.merged_read.cancel()
        self._cancel_deadline()
        if self.wait is not None:
            self.wait.fed()
        if self.consumer is not None:
            self.ctx.hub.stop_play(self.consumer)
            self.send_bytes += self.consumer.sent_bytes
            self.consumer = None
            self.notify("on_stop")
        if self.role is Role.PUBLISH and self.source is not None:
            self.ctx.hub.unpublish(self.key, self)
            self.notify("on_unpublish")
        if not self.internal:
            self.ctx.unregister(self)
        self.ip_slot.release()
        if self.vhost is not None:
            self.notify("on_close", send_bytes=self.sent(), recv_bytes=self.recv_bytes)
        if not was_closed or self.role is not Role.NONE:
            why = self.close_reason or srvlog.peer_left(exc)
            self.log.log(srvlog.TRACE, "closed (%s), %s, recv %d bytes, sent %d bytes, %.1fs",
                         self._what_it_did(), why, self.recv_bytes, self.sent(), time.time() - self.started,
                         extra=srvlog.event("close"))

    def _what_it_did(self) -> str:
        if self.role is Role.PUBLISH:
            return "publisher"
        if self.role is Role.PLAY:
            return "player"
        if self.unpublished:
            return "publisher, after unpublishing"
        return "before publish or play"

    def pause_writing(self) -> None:
        if self.consumer is not None:
            self.consumer.pause()

    def resume_writing(self) -> None:
        pulse.beat()
        if self.consumer is not None:
            self.consumer.resume()

    # ---- helpers -----------------------------------------------------------------------------

    def flush(self) -> None:
        out = self.session.data_to_send()
        if out and self.transport is not None and not self.closed:
            self.send_bytes += len(out)
            self.transport.write(out)

    def fail(self, reason: str) -> None:
        """Close this connection because of what the peer did; log who and why."""
        if self.closed:
            return
        self.close_reason = reason
        self.ctx.counters["clients_errs_total"] += 1
        self.log.warning("%s; closing", reason, extra=srvlog.event("error"))
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def refuse(self, request: ev.ConnectRequest | ev.PublishRequest | ev.PlayRequest, refusal: Refusal) -> None:
        """Refuse `request` with a real RTMP answer, then close: the one refusal path (security,
        signed URLs, http_hooks). The client reads why before the close, so ffmpeg prints
        "Server error: <reason>" and OBS shows it and stops retrying:

        - connect: ``_error`` NetConnection.Connect.Rejected (SRS and FMS's answer);
        - publish: ``onStatus`` error NetStream.Publish.Unauthorized (or `refusal.code`, e.g.
          NetStream.Publish.BadName);
        - play: ``onStatus`` error NetStream.Play.Failed (or `refusal.code`, e.g.
          NetStream.Play.StreamNotFound).

        Counted, logged and weighed toward a per-IP ban by `record_refusal` before the answer is
        flushed; then the transport closes; a client that does not read it within
        REFUSE_LINGER seconds is aborted.
        """
        if self.closed:
            return
        if isinstance(request, ev.ConnectRequest):
            stage = "connect"
            self.session.reject_connect(request, refusal.reason)
        elif isinstance(request, ev.PublishRequest):
            stage = "publish"
            self.session.reject_publish(request.stream_id, refusal.code or "NetStream.Publish.Unauthorized",
                                        refusal.reason)
        else:
            stage = "play"
            self.session.reject_play(request.stream_id, refusal.code or "NetStream.Play.Failed", refusal.reason)
        # logged before the answer leaves: whoever reads the answer (a test, an operator's
        # script) finds the log line already written
        record_refusal(self.ctx, self.ip, self.log, stage, refusal)
        self.flush()
        self.close_reason = f"{stage} refused"
        self.role = Role.NONE
        self.closed = True
        if self.transport is not None:
            transport = self.transport
            transport.close()
            self.ctx.loop.call_later(REFUSE_LINGER, transport.abort)

    def sent(self) -> int:
        return self.send_bytes + (self.consumer.sent_bytes if self.consumer else 0)

    def _arm_deadline(self, name: str, ms: int) -> None:
        """Close this client unless it reaches its next stage in `ms` (`name`: the directive).

        handshake_timeout: the handshake is done; identify_timeout: it publishes or plays (SRS
        gives each stage 30 s). Without them, sockets that never publish nor play would hold a
        `max_connections` slot forever.
        """
        self._cancel_deadline()
        self.deadline = self.ctx.loop.call_later(ms / 1000, self._missed_deadline, name, ms)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _missed_deadline(self, name: str, ms: int) -> None:
        self.deadline = None
        if self.closed:
            return
        what = "handshake not completed" if name == "handshake_timeout" else "no publish or play"
        self.ctx.reject(name)
        self.fail(f"{what} within {ms / 1000:g}s ({name})")

    # ---- session events ----------------------------------------------------------------------

    def on_event(self, e: ev.Event) -> None:
        if isinstance(e, ev.ConnectRequest):
            self.handle_connect(e)
        elif isinstance(e, ev.PublishRequest):
            self.handle_publish(e)
        elif isinstance(e, ev.PlayRequest):
            self.handle_play(e)
        elif isinstance(e, (ev.DeleteStream, ev.CloseStream, ev.FCUnpublish)):
            self.handle_stop(e)
        elif isinstance(e, ev.UnknownCommand):
            self.log.log(srvlog.VERBOSE, "ignored command %s", e.name)

    def handle_connect(self, e: ev.ConnectRequest) -> None:
        vhost = self.ctx.config.vhost(e.vhost)
        self.tc_url = e.tc_url
        self.app = e.app
        self.connect_params = dict(e.params)
        page_url = e.command_object.get("pageUrl")
        self.page_url = page_url if isinstance(page_url, str) else ""
        if vhost is None or not vhost.enabled:
            why = f"vhost {e.vhost} not found" if vhost is None else f"vhost {e.vhost} disabled"
            self.session.reject_connect(e, why)
            self.flush()
            self.ctx.reject("vhost")
            self.fail(f"connect rejected: {why}")
            return
        self.vhost = vhost
        if vhost.chunk_size:
            self.session.set_wanted_chunk_size(vhost.chunk_size)
        self.log.log(srvlog.INFO, "connect vhost=%s app=%s tcUrl=%s", vhost.name, e.app,
                     srvlog.redact_url(e.tc_url), extra=srvlog.event("connect"))
        if not self.internal and vhost.cluster.edge and vhost.cluster.token_traverse:
            self._cancel_deadline()  # the origin has its own timeout; identify_timeout restarts after
            self.ctx.loop.create_task(self._guarded(lambda: self._traverse(e), "token traverse"))
            return
        self._connect_hook(e)

    async def _traverse(self, e: ev.ConnectRequest) -> None:
        """`token_traverse on` (an edge): the origin decides first, with this client's tcUrl."""
        assert self.vhost is not None
        tc_url = e.tc_url.partition("?")[0] + (f"?{urlencode(e.params)}" if e.params else "")  # the app's query too
        refusal = await edge.traverse(self.ctx, self.vhost.cluster, self.vhost.name, e.app, tc_url,
                                      f"{self.ip} ({self.cid})")
        if self.closed:
            return
        if refusal is not None:
            self.refuse(e, refusal)
            return
        self._arm_deadline("identify_timeout", self.ctx.config.identify_timeout)
        self._connect_hook(e)
        self.flush()

    def _connect_hook(self, e: ev.ConnectRequest) -> None:
        if self._has_hook("on_connect"):
            self._cancel_deadline()  # the hook has its own timeout; identify_timeout restarts after
            self._ask_then("on_connect", e, lambda: self._accept_connect(e))
            return
        self.dispatch(self.session.accept_connect(e))

    def _accept_connect(self, e: ev.ConnectRequest) -> None:
        self._arm_deadline("identify_timeout", self.ctx.config.identify_timeout)
        self.dispatch(self.session.accept_connect(e))

    def _ask_then(self, hook: str, e: ev.ConnectRequest | ev.PlayRequest, then: Callable[[], None]) -> None:
        """Ask the deciding `hook` in a task; `then` if it accepts, else refuse `e`."""
        async def ask() -> None:
            refusal = await self.decide(hook)
            if self.closed:
                return
            if refusal is not None:
                self.refuse(e, refusal)
                return
            then()
            self.flush()

        self.ctx.loop.create_task(self._guarded(ask, hook))

    async def _guarded(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        """Run `work()` (a coroutine acting on this connection) as data_received would: bad input
        from the client closes it with its reason; a bug costs this connection only. The coroutine
        is made here, so a task cancelled before it starts (a stopping worker) leaves none unawaited."""
        try:
            await work()
        except ProtocolError as e:
            self.fail(f"protocol error: {e}")
        except Exception:
            self.log.exception("internal error in %s", what)
            self.fail("internal error")

    # ---- SRS http_hooks ------------------------------------------------------------------------

    def _has_hook(self, hook: str) -> bool:
        """Whether this client's vhost, as last reloaded, has `hook` (never for a worker pull)."""
        return not self.internal and self.vhost is not None and hooks.wants(self.ctx, self.vhost.name, hook)

    def _hook_request(self) -> HookRequest:
        assert self.vhost is not None
        params = {**self.connect_params, **self.params}
        return HookRequest(self.cid, self.ip, self.vhost.name, self.app, self.tc_url, self.stream,
                           tuple(params.items()), self.page_url)

    async def decide(self, hook: str) -> Refusal | None:
        """Ask a deciding hook (on_connect, on_publish, on_play): why it refuses, or None."""
        if not self._has_hook(hook):
            return None
        return await hooks.decide(self.ctx, hook, self._hook_request(), self.log)

    def notify(self, hook: str, **extra: Any) -> None:
        """Send a notification hook (on_close, on_unpublish, on_stop) after the ones before it."""
        if self._has_hook(hook):
            self.notified = hooks.notify(self.ctx, hook, self._hook_request(), self.log, self.notified, **extra)

    def _stream(self, name: str) -> None:
        if self.vhost is None:
            raise ProtocolError("stream command before connect")
        if not name:
            raise ProtocolError("empty stream name")
        self.key = stream_key(self.vhost.name, self.app, name)
        self.stream = name
        self.url = f"/{self.app}/{name}"
        self.log.stream = self.key

    def _access(self, action: str, e: ev.PublishRequest | ev.PlayRequest) -> Refusal | None:
        """The local access decision (security, signed URL) for this publish or play."""
        if self.internal:
            return None  # another worker of this server pulling: it decided for its player
        assert self.vhost is not None
        params = {**self.connect_params, **e.params}
        return check_access(self.vhost, action, self.ip, self.app, e.stream_name, params, time.time())

    def handle_publish(self, e: ev.PublishRequest) -> None:
        if self.role is not Role.NONE:
            raise ProtocolError(f"publish while already {self.role.value}")
        self._stream(e.stream_name)
        refusal = self._access("publish", e)
        if refusal is not None:
            self.refuse(e, refusal)
            return
        self.role = Role.PUBLISH
        self._cancel_deadline()
        self.stream_id = e.stream_id
        self.params = dict(e.params)
        self.pending_media = []
        self.pending_bytes = 0
        self.ctx.loop.create_task(self._guarded(lambda: self._start_publish(e), "publish"))

    async def _start_publish(self, e: ev.PublishRequest) -> None:
        assert self.vhost is not None
        refused = await self.decide("on_publish")
        if refused is not None:
            if not self.closed:
                self.refuse(e, refused)
            return
        if self.closed:
            return
        why, backend_urls = await self._forward_checks(e)
        if why is None and not self.closed:
            why = await self.ctx.hub.publish(self.key, self.vhost, self, backend_urls)
            if why is not None and "already being published" in why and \
                    self.vhost.publish.second_publisher == "takeover" and await self._take_over(backend_urls):
                why = None
        if self.closed:
            if why is None:
                self.ctx.hub.unpublish(self.key, self)
            return
        if why is not None:
            self.role = Role.NONE
            self.unpublished = False
            self.session.reject_publish(e.stream_id, "NetStream.Publish.BadName", why)
            self.flush()
            self.ctx.reject("forward_loop" if why.startswith("forward loop") else "publish_busy")
            self.fail(f"publish refused: {why}")
            return
        self.source = self.ctx.hub.sources[self.key]
        self.session.accept_publish(e.stream_id, e.stream_name)
        self.flush()
        self.log.log(srvlog.TRACE, "publish start", extra=srvlog.event("publish"))
        pending, self.pending_media = self.pending_media, None
        for m in pending or ():
            self.source.on_message(*m)
        self.last_media = time.monotonic()
        self._arm_timeout()

    async def _take_over(self, backend_urls: dict[str, tuple[str, ...]]) -> bool:
        """``second_publisher takeover``: kick the stream's publisher, on whichever worker it is,
        then claim the stream again (for up to TAKEOVER_WAIT seconds); True once this
        connection publishes it."""
        assert self.vhost is not None
        src = self.ctx.hub.sources.get(self.key)
        cid = str(getattr(src.publisher, "cid", "")) if src is not None and src.origin else ""
        if not cid:  # on another worker: the master's snapshot names it
            snap = await self.ctx.master.snapshot()
            for w in (snap.get("workers") or {}).values():
                pub = w.get("stream_clients", {}).get(self.key, {}).get("publisher") or {}
                if pub.get("id") and pub["id"] != self.cid:  # this connection is listed too, on its worker
                    cid = str(pub["id"])
        if not cid:
            return False
        self.log.log(srvlog.TRACE, "taking the stream over from publisher %s (second_publisher takeover)", cid,
                     extra=srvlog.event("takeover"))
        self.ctx.master.kick(cid)
        deadline = time.monotonic() + TAKEOVER_WAIT
        while not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if await self.ctx.hub.publish(self.key, self.vhost, self, backend_urls) is None:
                return True
        return False

    async def _forward_checks(self, e: ev.PublishRequest) -> tuple[str | None, dict[str, tuple[str, ...]]]:
        """Refuse a forward loop (srv_via holds this server); ask the forward backends (SRS on_forward)."""
        why = loop_refusal(self.ctx.server_id, self.params)
        if why is not None:
            return why, {}
        assert self.vhost is not None
        if not any(fw.backend for fw in self.vhost.forwards_for(self.app, e.stream_name)):
            return None, {}
        urls, why = await ask_backends(self.ctx, self.vhost, self.app, e.stream_name, self, self.params)
        return why, urls

    def _arm_timeout(self) -> None:
        assert self.vhost is not None
        self.timer = self.ctx.loop.call_later(1.0, self._check_timeout)

    def _check_timeout(self) -> None:
        if self.closed or self.vhost is None:
            return
        if self.timer is not None and self.ctx.loop.time() - self.timer.when() > HELD_LOOP:
            # the loop was held (the worker's CPU starved): what the publisher sent meanwhile is
            # still unread in the socket and timers run before reads, so judge at the next check
            self._arm_timeout()
            return
        pub = self.vhost.publish
        limit = (pub.normal_timeout if self.media_seen else pub.firstpkt_timeout) / 1000
        idle = time.monotonic() - self.last_media
        if idle > limit:
            kind = "normal_timeout" if self.media_seen else "firstpkt_timeout"
            self.fail(f"publisher sent nothing for {idle:.1f}s ({kind} {limit:g}s)")
            return
        self._arm_timeout()

    def on_media(self, m: Any, metadata: dict[str, Any] | None = None) -> None:
        """Audio/video/metadata from a publisher (hot path); `metadata`: onMetaData's values."""
        src = self.source
        if src is not None:
            self.last_media = time.monotonic()
            self.media_seen = True
            src.on_message(m.type_id, m.timestamp, m.payload, metadata)
        elif self.pending_media is not None:
            self.pending_bytes += len(m.payload)
            if len(self.pending_media) >= MAX_PENDING_MEDIA or self.pending_bytes > MAX_PENDING_MEDIA_BYTES:
                raise ProtocolError(f"more than {MAX_PENDING_MEDIA} messages or "
                                    f"{MAX_PENDING_MEDIA_BYTES} bytes of media before publish was granted")
            self.pending_media.append((m.type_id, m.timestamp, m.payload, metadata))
        else:
            raise ProtocolError(f"media message (type {m.type_id}) while not publishing")

    def handle_play(self, e: ev.PlayRequest) -> None:
        if self.role is not Role.NONE:
            raise ProtocolError(f"play while already {self.role.value}")
        self._stream(e.stream_name)
        assert self.vhost is not None
        refusal = self._access("play", e)
        if refusal is not None:
            self.refuse(e, refusal)
            return
        self.role = Role.PLAY
        self._cancel_deadline()
        self.stream_id = e.stream_id
        self.params = dict(e.params)
        if not self.internal and self.vhost.cluster.edge and self.vhost.cluster.token_traverse:
            self._cancel_deadline()
            self.ctx.loop.create_task(self._guarded(lambda: self._traverse_play(e), "token traverse"))
            return
        self._play_hook(e)

    async def _traverse_play(self, e: ev.PlayRequest) -> None:
        """`token_traverse on` (an edge): the origin must accept this play, with this client's
        tcUrl and params (a signed URL, an on_play hook), before it starts here."""
        assert self.vhost is not None
        tc_url = self.tc_url.partition("?")[0] + (f"?{urlencode(self.connect_params)}" if self.connect_params else "")
        play = edge.with_query(e.stream_name, edge.upstream_query({**self.connect_params, **e.params}))
        refusal = await edge.traverse(self.ctx, self.vhost.cluster, self.vhost.name, self.app, tc_url,
                                      f"{self.ip} ({self.cid})", play=play)
        if self.closed:
            return
        if refusal is not None:
            self.refuse(e, refusal)
            return
        self._play_hook(e)
        self.flush()

    def _play_hook(self, e: ev.PlayRequest) -> None:
        if self._has_hook("on_play"):
            self._ask_then("on_play", e, lambda: self._start_play(e))
            return
        self._start_play(e)

    def _start_play(self, e: ev.PlayRequest) -> None:
        assert self.vhost is not None
        self.session.start_play(e.stream_id, e.stream_name)
        self.flush()
        tune_player_transport(self.transport, self.vhost.tcp_nodelay)
        self.consumer = self.ctx.hub.play(self.key, self.vhost, self, rtmp_encoding(self.session.out_chunk_size),
                                          internal=self.internal, params={**self.connect_params, **e.params})
        if not self.internal:
            self.wait = PublisherWait(self.ctx.loop, self.vhost.play.wait_timeout, self.stop_waiting)
            if self.consumer.source.publisher is None:
                self.wait.waiting()
        self.log.log(srvlog.TRACE, "play start%s", " (worker pull)" if self.internal else "",
                     extra=srvlog.event("play"))

    def handle_stop(self, e: ev.Event) -> None:
        if self.role is Role.PUBLISH and self.source is not None:
            self.log.log(srvlog.TRACE, "unpublish", extra=srvlog.event("unpublish"))
            self.ctx.hub.unpublish(self.key, self)
            self.notify("on_unpublish")
            self.source = None
            self.role = Role.NONE
            self.unpublished = True
            if self.timer is not None:
                self.timer.cancel()
            if self.merged_read is not None:
                self.merged_read.cancel()
            if isinstance(e, ev.FCUnpublish):
                self.session.send_unpublish_success(self.stream_id)
            self._idle_again()
        elif self.role is Role.PLAY and self.consumer is not None and \
                isinstance(e, (ev.DeleteStream, ev.CloseStream)):
            self.ctx.hub.stop_play(self.consumer)
            self.send_bytes += self.consumer.sent_bytes
            self.consumer = None
            self.notify("on_stop")
            self.role = Role.NONE
            if self.wait is not None:
                self.wait.fed()
            self._idle_again()

    def _idle_again(self) -> None:
        """It stopped publishing or playing but stays connected: it must start again in time."""
        if not self.internal:
            self._arm_deadline("identify_timeout", self.ctx.config.identify_timeout)

    # ---- Sink (the source writes to players through these) -------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def writelines(self, data: list[bytes]) -> None:
        if not self.closed:
            self.transport.writelines(data)  # type: ignore[union-attr]

    def on_unpublish(self) -> None:
        """The publisher left; this player waits for the next one (SRS, nginx-rtmp).

        NetStream.Play.UnpublishNotify only with `publish_notify on` (nginx-rtmp): ffmpeg,
        ffplay, VLC, rtmpdump and GStreamer stop playing on it. A worker pulling this stream
        always gets it: that is how its local players learn the publisher left.
        """
        if self.closed:
            return
        if self.internal or self._notify():
            self.session.send_unpublish_notify(self.stream_id)
            self.flush()
        if self.wait is not None:
            self.wait.waiting()

    def on_publish(self) -> None:
        if self.closed:
            return
        if self.wait is not None:
            self.wait.fed()
        if self.internal or self._notify():  # a worker pulling this stream resumes on it
            self.session.send_publish_notify(self.stream_id)
            self.flush()

    def _notify(self) -> bool:
        """`play { publish_notify }` of the stream's vhost, as last reloaded."""
        return self.consumer is not None and self.consumer.source.vhost.play.publish_notify

    def stop_waiting(self, reason: str) -> None:
        """No publisher came within `wait_timeout`: close, one log line (the close line)."""
        if not self.closed:
            self._abort(reason)

    def _abort(self, reason: str) -> None:
        self.close_reason = reason
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close_slow(self, reason: str) -> None:
        self.fail(reason)

    # ---- Client (API, kick) --------------------------------------------------------------------

    def byte_counts(self) -> tuple[int, int]:
        """(sent, received), cheaply: read every second for the server-wide counters."""
        return self.sent(), self.recv_bytes

    def info(self) -> dict[str, Any]:
        return {
            "id": self.cid,
            "ip": self.ip,
            "vhost": self.vhost.name if self.vhost else "",
            "stream": self.key,
            "url": self.url,
            "tcUrl": srvlog.redact_url(self.tc_url),
            "type": self.role.value,
            "alive": time.time() - self.started,
            "recv_bytes": self.recv_bytes,
            "send_bytes": self.sent(),
        }

    def kick(self, reason: str) -> None:
        self.log.log(srvlog.TRACE, "kicked: %s", reason, extra=srvlog.event("kick"))
        self._abort(reason)
