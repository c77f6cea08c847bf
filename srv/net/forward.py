"""Forwarder: push one published stream to one destination server (SRS's vhost `forward`).

One Forwarder per (stream, destination), created by the hub in the worker that owns the
publisher. What it sends on every (re)connection, in order::

    C0C1 ... connect(app, tcUrl) -> releaseStream(name), FCPublish(name), createStream
    -> publish(name?query&srv_via=...) -> onStatus NetStream.Publish.Start
    -> onMetaData, video sequence header, audio sequence header, the GOP cache (from its
       keyframe), then live packets as the publisher sends them
    ... on stop (unpublish): FCUnpublish(name), deleteStream(id), close

Invariants:
- `feed()` runs in the publisher's hot path: it appends to a deque and schedules one write per
  loop tick; it never blocks and never does I/O. The same cached `Packet.rtmp()` bytes the
  players get are written (message stream id 1 is what SRS, nginx-rtmp and srv hand out).
- The queue is bounded in seconds (`queue_length`): while the peer pushes back (transport
  paused) packets pile up, and past the limit whole GOPs are dropped from the head, keeping the
  latest metadata and sequence headers, so the destination resumes cleanly at a keyframe.
- Any failure (refused, reset, timeout, stalled peer) closes the connection and retries after an
  exponential backoff with jitter in [backoff_initial, backoff_max]; each reconnect starts again
  with metadata, sequence headers and the GOP cache.
- Loop protection: the publish query carries `srv_via` (see srv.app.forward_target, which
  also resolves where to publish); a destination that answers NetStream.Publish.BadName
  "forward loop" is not retried (state `error`).

Here: the connection, its backoff and stall handling, and the on_forward backend call through
the worker's hook client (srv.net.hooks).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import Any

from srv import log as srvlog
from srv.app.forward_target import (
    LOOP_REASON,
    on_forward_body,
    on_forward_urls,
    resolve,
    sends_via,
    upstream_via,
)
from srv.app.packet import AUDIO, DATA, PLAY_STREAM_ID, VIDEO, Packet
from srv.app.source import LiveSource
from srv.conf.model import ForwardConfig, VhostConfig
from srv.net.context import ConnectionContext
from srv.net.hooks import HookError
from srv.net.rtmp_client import RtmpClientProtocol
from srv.rtmp import events as ev
from srv.rtmp.chunk import CSID_AUDIO, CSID_DATA, CSID_VIDEO, encode_message
from srv.rtmp.client import ClientSession

log = logging.getLogger("srv.forward")

CONNECT_TIMEOUT = 10.0  # seconds from TCP connect to Publish.Start
STALL_TIMEOUT = 30.0  # seconds a destination may refuse to read before we reconnect (SRS: 30 s)
TICK = 1.0

CONNECTING, CONNECTED, BACKOFF, ERROR, STOPPED = "connecting", "connected", "backoff", "error", "stopped"
_CSID = {AUDIO: CSID_AUDIO, VIDEO: CSID_VIDEO, DATA: CSID_DATA}


# ---- the backend hook (SRS on_forward) ---------------------------------------------------------


async def ask_backends(ctx: ConnectionContext, vhost: VhostConfig, app: str, stream: str,
                       client: Any, params: dict[str, str]) -> tuple[dict[str, tuple[str, ...]], str | None]:
    """POST SRS's on_forward to every matching `backend`; return {backend: urls} or why not.

    Any failure (no answer, an answer SRS would not accept) refuses the publish, as in SRS.
    """
    found: dict[str, tuple[str, ...]] = {}
    for fw in vhost.forwards_for(app, stream):
        if not fw.backend or fw.backend in found:
            continue
        body = on_forward_body(ctx.server_id, getattr(client, "cid", ""), getattr(client, "ip", ""),
                               vhost.name, app, getattr(client, "tc_url", ""), stream, params)
        try:
            answer = await ctx.hooks.post_json(fw.backend, body)
            urls = on_forward_urls(answer.status, answer.text)
        except (HookError, ValueError) as e:
            return {}, f"forward backend {srvlog.redact_url(fw.backend)} failed: {e}"
        log.log(srvlog.TRACE, "forward backend %s: %s/%s -> %s", srvlog.redact_url(fw.backend), app, stream,
                " ".join(map(srvlog.redact_url, urls)) or "(no destination)")
        found[fw.backend] = tuple(urls)
    return found, None


# ---- the forwarder ---------------------------------------------------------------------------


class Forwarder:
    def __init__(self, ctx: ConnectionContext, source: LiveSource, destination: str,
                 config: ForwardConfig) -> None:
        self.ctx = ctx
        self.source = source
        self.destination = destination
        self.config = config
        self.loop = ctx.loop
        vhost, app, stream = source.key.split("/", 2)
        params = dict(getattr(source.publisher, "params", None) or {})
        via = upstream_via(params) + [ctx.server_id] if sends_via(destination, config.srv_via) else None
        self.target = resolve(destination, vhost, app, stream, params, via)
        # what logs, the API and the exporter show: query values (keys, tokens) hidden
        self.shown_destination = srvlog.redact_url(destination)
        self.shown_url = srvlog.redact_url(self.target.url)
        self.name = f"{app}/{stream} -> {self.shown_destination}"
        vh = source.vhost
        self.chunk_size = vh.chunk_size or ctx.config.chunk_size
        self.queue: deque[Packet] = deque()
        self.state = CONNECTING
        self.publishing = False
        self.need_keyframe = False
        self.gen = 0
        self.session: ClientSession | None = None
        self.proto: RtmpClientProtocol | None = None
        self.task: asyncio.Task[None] | None = None
        self.retry: asyncio.TimerHandle | None = None
        self.flush_handle: asyncio.Handle | None = None
        self.attempt = 0
        self.state_since = time.monotonic()
        self.paused_since = 0.0
        # figures
        self.messages_sent = 0
        self.messages_dropped = 0
        self.bytes_sent = 0
        self.reconnects = 0
        self.connected_since = 0.0
        self.last_error = ""
        self.last_print = time.monotonic()
        self.printed_bytes = 0
        self.ticker = self.loop.call_later(TICK, self._tick)
        self._connect()

    # ---- hub interface -------------------------------------------------------------------------

    def feed(self, pkt: Packet) -> None:
        """One packet from the publisher (hot path): queue it, write on the next tick."""
        if not self.publishing:
            return
        if self.need_keyframe and not pkt.is_header:
            if not pkt.is_keyframe:
                self.messages_dropped += 1
                return
            self.need_keyframe = False
        q = self.queue
        q.append(pkt)
        proto = self.proto
        if proto is not None and proto.paused:
            if len(q) > 1 and self._span(q, pkt) > self.config.queue_length * 1000:
                self._drop_gop()
        elif self.flush_handle is None:
            self.flush_handle = self.loop.call_soon(self._send)

    def reconfigure(self, config: ForwardConfig) -> None:
        """Reload: new backoff/queue settings apply in place; the connection stays."""
        self.config = config

    def stop(self) -> None:
        """Unpublish: send what is queued, FCUnpublish + deleteStream, then close."""
        if self.state == STOPPED:
            return
        if self.publishing:
            self._send()
        self._set_state(STOPPED)
        self.publishing = False
        self.queue.clear()
        for h in (self.retry, self.flush_handle, self.ticker):
            if h is not None:
                h.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        proto, session = self.proto, self.session
        self.proto = None
        if proto is not None and not proto.closed and session is not None:
            try:
                session.fc_unpublish(self.target.name)
                if session.stream_id is not None:
                    session.delete_stream(session.stream_id)
            except RuntimeError:
                pass  # not connected yet: nothing to undo
            proto.flush()
            if proto.transport is not None:
                proto.transport.close()  # after the buffered bytes are out
            self.loop.call_later(2.0, proto.close, "stopped")  # unless the peer never reads
        log.log(srvlog.TRACE, "forward %s: stopped, sent %d messages %d bytes, dropped %d, "
                "reconnects %d", self.name, self.messages_sent, self.bytes_sent,
                self.messages_dropped, self.reconnects)

    def stats(self) -> dict[str, Any]:
        return {
            "destination": self.shown_destination,
            "url": self.shown_url,
            "state": self.state,
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "bytes_sent": self.bytes_sent,
            "reconnects": self.reconnects,
            "connected_since": self.connected_since if self.state == CONNECTED else 0.0,
            "last_error": self.last_error,
            "queue": len(self.queue),
        }

    # ---- connection ----------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_since = time.monotonic()

    def _connect(self) -> None:
        self.gen += 1
        gen = self.gen
        self._set_state(CONNECTING)
        t = self.target
        self.session = ClientSession(app=t.app, tc_url=t.tc_url, out_chunk_size=self.chunk_size)
        log.log(srvlog.TRACE, "forward %s: connecting to %s (tcUrl %s)", self.name, self.shown_url,
                srvlog.redact_url(t.tc_url))

        def make() -> RtmpClientProtocol:
            assert self.session is not None
            return RtmpClientProtocol(self.session, lambda e: self._on_event(gen, e),
                                      lambda why: self._on_lost(gen, why),
                                      lambda: self._on_drain(gen))

        async def open_connection() -> None:
            try:
                _, proto = await self.loop.create_connection(make, t.host, t.port)
            except OSError as e:
                self._fail(gen, f"cannot connect to {t.host}:{t.port}: {e.strerror or e}")
                return
            if gen == self.gen and self.state != STOPPED:
                self.proto = proto
            else:
                proto.close("stopped")

        self.task = self.loop.create_task(open_connection())

    def _on_event(self, gen: int, e: ev.Event) -> None:
        session = self.session
        if gen != self.gen or session is None:
            return
        name = self.target.name
        if isinstance(e, ev.Connected):
            session.release_stream(name)
            session.fc_publish(name)
            session.create_stream()
        elif isinstance(e, ev.StreamCreated):
            session.publish(self.target.stream)
        elif isinstance(e, ev.StatusEvent):
            if e.code == "NetStream.Publish.Start":
                self._on_publishing()
            elif e.level == "error" or e.code.endswith(("BadName", "Failed", "Rejected")):
                why = f"publish refused: {e.code} {e.description}"
                self._fail(gen, why, retry=LOOP_REASON not in e.description)
        elif isinstance(e, ev.ConnectFailed):
            self._fail(gen, f"connect refused: {e.code} {e.description}")
        elif isinstance(e, ev.CommandFailed) and e.command in ("createStream", "publish"):
            self._fail(gen, f"{e.command} failed: {e.info}")

    def _on_publishing(self) -> None:
        """Publish.Start: metadata, sequence headers, the GOP cache from its keyframe, live."""
        src = self.source
        self._set_state(CONNECTED)
        self.connected_since = time.time()
        self.attempt = 0
        self.paused_since = 0.0
        q = self.queue
        q.clear()
        start = src.gop_start
        gop = src.ring[start - src.base:] if start is not None and start >= src.base else []
        first = gop[0] if gop else None
        for h in (src.meta, src.video_sh, src.audio_sh):
            if h is not None and h is not first:
                q.append(h)
        q.extend(gop)
        self.need_keyframe = not gop and (src.video_sh is not None or src.video_seen)
        self.publishing = True
        log.log(srvlog.TRACE, "forward %s: publish started on %s (%d messages from the GOP cache)",
                self.name, self.shown_url, len(gop))
        self._send()

    def _on_lost(self, gen: int, why: str) -> None:
        if gen == self.gen and self.state != STOPPED:
            self._fail(gen, why)

    def _on_drain(self, gen: int) -> None:
        if gen == self.gen:
            self.paused_since = 0.0
            self._send()

    def _fail(self, gen: int, why: str, retry: bool = True) -> None:
        """Close this connection; retry after a backoff unless `retry` is False."""
        if gen != self.gen or self.state in (STOPPED, ERROR, BACKOFF):
            return
        self.gen += 1  # late callbacks of this connection are ignored from now on
        self.last_error = why
        self.publishing = False
        self.queue.clear()
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        proto, self.proto = self.proto, None
        if proto is not None:
            proto.close(why)
        if not retry:
            self._set_state(ERROR)
            log.error("forward %s: %s; giving up (the destination would send the stream back "
                      "here)", self.name, why)
            return
        delay = self._backoff()
        self._set_state(BACKOFF)
        log.warning("forward %s: error: %s; retry in %.1fs", self.name, why, delay)
        self.retry = self.loop.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        self.retry = None
        if self.state == BACKOFF:
            self.reconnects += 1
            self._connect()

    def _backoff(self) -> float:
        """Exponential, with jitter, within [backoff_initial, backoff_max] ms."""
        cfg = self.config
        lo = cfg.backoff_initial
        hi = max(lo, cfg.backoff_max)
        top = min(hi, lo * 2 ** min(self.attempt, 20))
        self.attempt += 1
        return random.uniform(max(lo, top / 2), top) / 1000

    # ---- sending -------------------------------------------------------------------------------

    def _send(self) -> None:
        """Write everything queued in one writelines, unless the peer is pushing back."""
        self.flush_handle = None
        proto, session = self.proto, self.session
        q = self.queue
        if not self.publishing or proto is None or proto.closed or session is None:
            return
        proto.flush()  # the session's own bytes (acks) go first
        if proto.paused or not q or proto.transport is None:
            return
        sid = session.stream_id
        size = session.out_chunk_size
        if sid == PLAY_STREAM_ID:
            out = [p.rtmp(size) for p in q]  # the very bytes players get
        else:
            out = [encode_message(p.type_id, sid or 0, p.timestamp, p.payload, size,
                                  _CSID.get(p.type_id, CSID_DATA)) for p in q]
        n = sum(map(len, out))
        self.messages_sent += len(out)
        self.bytes_sent += n
        proto.bytes_sent += n
        q.clear()
        proto.transport.writelines(out)
        if proto.paused:
            self.paused_since = time.monotonic()

    @staticmethod
    def _span(q: deque[Packet], last: Packet) -> int:
        """Milliseconds of media queued (headers at the head do not count)."""
        for p in q:
            if not p.is_header:
                return last.timestamp - p.timestamp
        return 0

    def _drop_gop(self) -> None:
        """Drop from the head up to the next keyframe; keep the latest headers at the head."""
        q = self.queue
        headers: dict[int, Packet] = {}
        dropped = 0
        while q:
            p = q[0]
            if p.is_keyframe and dropped:
                break
            q.popleft()
            if p.is_header:
                headers[p.type_id] = p
            else:
                dropped += 1
        if not q:
            self.need_keyframe = self.source.video_sh is not None or self.source.video_seen
        for t in (AUDIO, VIDEO, DATA):  # appendleft: DATA ends up first
            h = headers.get(t)
            if h is not None:
                q.appendleft(h)
        self.messages_dropped += dropped
        log.log(srvlog.INFO, "forward %s: destination too slow, dropped %d messages (a GOP)",
                self.name, dropped)

    # ---- housekeeping --------------------------------------------------------------------------

    def _tick(self) -> None:
        """Every second: connect timeout, stalled peer, and the pithy status line."""
        if self.state == STOPPED:
            return
        self.ticker = self.loop.call_later(TICK, self._tick)
        now = time.monotonic()
        if self.state == CONNECTING and now - self.state_since > CONNECT_TIMEOUT:
            self._fail(self.gen, f"timeout: not publishing after {CONNECT_TIMEOUT:g}s "
                       f"(handshake/connect/publish unanswered)")
        proto = self.proto
        if self.state == CONNECTED and proto is not None and proto.paused:
            if not self.paused_since:
                self.paused_since = now
            elif now - self.paused_since > STALL_TIMEOUT:
                self._fail(self.gen, f"destination read nothing for {now - self.paused_since:.0f}s")
        pithy = self.ctx.config.pithy_print_ms / 1000
        if now - self.last_print >= pithy:
            kbps = (self.bytes_sent - self.printed_bytes) * 8 / 1000 / (now - self.last_print)
            self.last_print, self.printed_bytes = now, self.bytes_sent
            age = now - self.state_since
            log.log(srvlog.TRACE, "forward %s: %s %.0fs, sent %d msgs %d bytes (%.0f kbps), "
                    "dropped %d, queue %d, reconnects %d%s", self.name, self.state, age,
                    self.messages_sent, self.bytes_sent, kbps, self.messages_dropped,
                    len(self.queue), self.reconnects,
                    f", last error: {self.last_error}" if self.last_error else "")
