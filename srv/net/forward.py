"""Forwarder: push one published stream to one destination server (SRS's vhost `forward`).

One Forwarder per (stream, destination), created by the hub in the worker that owns the
publisher. What it sends on every (re)connection, in order::

    C0C1 ... connect(app, tcUrl) -> releaseStream(name), FCPublish(name), createStream
    -> publish(name?query&srv_via=...) -> onStatus NetStream.Publish.Start
    -> onMetaData, video sequence header, audio sequence header, the GOP cache (from its
       keyframe), then live packets as the publisher sends them
    ... on stop (unpublish): FCUnpublish(name), deleteStream(id), close

Invariants:
- The forwarder is a Sink of an ordinary consumer of the source (encoding: its chunk size), added
  on Publish.Start and removed when the connection ends: the source gives it metadata, sequence
  headers and the GOP cache, then the same merged bytes the players get, and applies the one
  drop policy every output shares. Nothing is queued here and nothing runs per packet.
- Bounded in seconds: while the destination pushes back (transport paused) its consumer stops
  advancing; past the block's `queue_length` it skips whole GOPs (headers resent, never dropped),
  and a destination paused for STALL_TIMEOUT is reconnected.
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
import enum
import logging
import random
import socket
import ssl
import time
from typing import Any

from srv import log as srvlog
from srv.app.forward_target import (
    LOOP_REASON,
    is_url,
    on_forward_body,
    on_forward_urls,
    resolve,
    sends_via,
    upstream_via,
)
from srv.app.packet import rtmp_encoding
from srv.app.source import Consumer, LiveSource
from srv.app.ssrf import allowed_networks
from srv.app.ssrf import refusal as ssrf_refusal
from srv.conf.model import ForwardConfig, VhostConfig
from srv.net.context import ConnectionContext
from srv.net.hooks import HookError
from srv.net.rtmp_client import RtmpClientProtocol
from srv.net.tls import TlsError, client_context
from srv.rtmp import events as ev
from srv.rtmp.client import ClientSession

log = logging.getLogger("srv.forward")

CONNECT_TIMEOUT = 10.0  # seconds from TCP connect to Publish.Start
STALL_TIMEOUT = 30.0  # seconds a destination may refuse to read before we reconnect (SRS: 30 s)
TICK = 1.0

class ForwardState(enum.Enum):
    """Where a forwarder is; the value is what the API and the log show."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    ERROR = "error"
    STOPPED = "stopped"


CONNECTING, CONNECTED, BACKOFF, ERROR, STOPPED = ForwardState


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
    """One destination of one stream: an RTMP publish client, and a Sink of an ordinary consumer."""

    connect_timeout = CONNECT_TIMEOUT

    def __init__(self, ctx: ConnectionContext, source: LiveSource, destination: str,
                 config: ForwardConfig) -> None:
        self.ctx = ctx
        self.source = source
        self.destination = destination
        self.config = config
        self.loop = ctx.loop
        self.retarget(destination, source.key.split("/", 1)[0])
        self.chunk_size = source.vhost.chunk_size or ctx.config.chunk_size
        self.consumer: Consumer | None = None  # while publishing to the destination
        self.state = CONNECTING
        self.gen = 0
        self.session: ClientSession | None = None
        self.proto: RtmpClientProtocol | None = None
        self.task: asyncio.Task[None] | None = None
        self.retry: asyncio.TimerHandle | None = None
        self.attempt = 0
        self.state_since = time.monotonic()
        # figures of the connections before the current one
        self.past_sent = 0
        self.past_dropped = 0
        self.past_bytes = 0
        self.reconnects = 0
        self.connected_since = 0.0
        self.last_error = ""
        self.last_print = time.monotonic()
        self.printed_bytes = 0
        self.ticker = self.loop.call_later(TICK, self._tick)
        self._connect()

    def retarget(self, destination: str, vhost: str) -> None:
        """Publish to `destination` (of `vhost`) from the next connection on."""
        _, app, stream = self.source.key.split("/", 2)
        params = dict(getattr(self.source.publisher, "params", None) or {})
        via = upstream_via(params) + [self.ctx.server_id] if sends_via(destination, self.config.srv_via) else None
        self.destination = destination
        self.target = resolve(destination, vhost, app, stream, params, via, self.config.rtmps)
        # what logs, the API and the exporter show: query values (keys, tokens) hidden
        self.shown_destination = srvlog.redact_url(destination)
        self.shown_url = srvlog.redact_url(self.target.url)
        self.name = f"{app}/{stream} -> {self.shown_destination}"

    # ---- hub interface -------------------------------------------------------------------------

    def reconfigure(self, config: ForwardConfig) -> None:
        """Reload: new backoff/queue settings apply in place; the connection stays."""
        self.config = config
        if self.consumer is not None:
            self.consumer.queue_length = config.queue_length

    def stop(self) -> None:
        """Unpublish: what the consumer had is out; FCUnpublish + deleteStream, then close."""
        if self.state is STOPPED:
            return
        self._detach()
        self._set_state(STOPPED)
        for h in (self.retry, self.ticker):
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

    @property
    def messages_sent(self) -> int:
        c = self.consumer
        return self.past_sent + (c.pos - c.first - c.dropped if c is not None else 0)

    @property
    def messages_dropped(self) -> int:
        c = self.consumer
        return self.past_dropped + (c.dropped if c is not None else 0)

    @property
    def bytes_sent(self) -> int:
        c = self.consumer
        return self.past_bytes + (c.sent_bytes if c is not None else 0)

    def queued(self) -> int:
        """Messages the destination has not had yet (it is paused, or they wait for a merge)."""
        c = self.consumer
        return self.source.end - c.pos if c is not None else 0

    def stats(self) -> dict[str, Any]:
        return {
            "destination": self.shown_destination,
            "url": self.shown_url,
            "state": self.state.value,
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "bytes_sent": self.bytes_sent,
            "reconnects": self.reconnects,
            "connected_since": self.connected_since if self.state is CONNECTED else 0.0,
            "last_error": self.last_error,
            "queue": self.queued(),
        }

    # ---- Sink: the consumer writes the very bytes the players get ------------------------------

    def write(self, data: bytes) -> None:
        proto = self.proto
        if proto is not None:
            proto.flush()  # the session's own bytes (acks) first
            proto.write(data)

    def writelines(self, data: list[bytes]) -> None:
        proto = self.proto
        if proto is not None:
            proto.flush()
            proto.writelines(data)

    def on_publish(self) -> None:
        pass  # forwarders are made after the publish

    def on_unpublish(self) -> None:
        pass  # the source stops its forwarders right after its consumers hear of it

    def close_slow(self, reason: str) -> None:
        self._fail(self.gen, reason)

    # ---- connection ----------------------------------------------------------------------------

    def _set_state(self, state: ForwardState) -> None:
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
            proto = RtmpClientProtocol(self.session, lambda e: self._on_event(gen, e),
                                       lambda why: self._on_lost(gen, why),
                                       lambda: self._on_drain(gen), lambda: self._on_pause(gen))
            if gen == self.gen and self.state is not STOPPED:
                self.proto = proto
            return proto

        async def open_connection() -> None:
            try:
                host = await self._guarded_host() if self.guarded else t.host
                if host is None:
                    return
                tls = client_context(self.config.tls_verify, self.config.tls_ca) if t.tls else None
                _, proto = await self.loop.create_connection(  # the checked address, the name's certificate
                    make, host, t.port, ssl=tls, server_hostname=t.host if tls else None,
                    ssl_handshake_timeout=self.connect_timeout if tls else None)
            except TlsError as e:
                self._fail(gen, str(e))
                return
            except ssl.SSLError as e:
                self._fail(gen, f"TLS handshake with {t.host}:{t.port} failed: "
                                f"{getattr(e, 'verify_message', '') or e.reason or e}")
                return
            except OSError as e:
                self._fail(gen, f"cannot connect to {t.host}:{t.port}: {e.strerror or e}")
                return
            if gen != self.gen or self.state is STOPPED:
                proto.close("stopped")

        self.task = self.loop.create_task(open_connection())

    @property
    def guarded(self) -> bool:
        """A destination the forward block's backend returned, not one the config lists."""
        return is_url(self.destination) and self.destination not in self.config.destinations

    async def _guarded_host(self) -> str | None:
        """The address to connect to, after the SSRF guard (srv.app.ssrf) passed every address
        the host resolves to (off the loop); None once refused for good (logged, state error)."""
        gen, t = self.gen, self.target
        infos = await self.loop.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = allowed_networks(self.config.allow_private)
        why = ssrf_refusal(addresses, allowed) if addresses else f"{t.host} resolves to no address"
        if why is None:
            return addresses[0]  # the checked address, not the name: no second answer to trust
        self._fail(gen, f"refused: {t.host} resolves to {why} (a backend destination; allow it with "
                        f"forward {{ allow_private ...; }})", retry=False)
        return None

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
                loop = LOOP_REASON in e.description
                if loop:
                    why += " (the destination would send the stream back here)"
                self._fail(gen, why, retry=not loop)
        elif isinstance(e, ev.ConnectFailed):
            self._fail(gen, f"connect refused: {e.code} {e.description}")
        elif isinstance(e, ev.CommandFailed) and e.command in ("createStream", "publish"):
            self._fail(gen, f"{e.command} failed: {e.info}")

    def _on_publishing(self) -> None:
        """Publish.Start: become a consumer of the source, which sends metadata, sequence
        headers, the GOP cache from its keyframe, then live packets."""
        session, proto = self.session, self.proto
        if self.consumer is not None or session is None or proto is None:
            return
        self._set_state(CONNECTED)
        self.connected_since = time.time()
        self.attempt = 0
        proto.flush()
        encoding = rtmp_encoding(session.out_chunk_size, session.stream_id or 0)
        c = self.consumer = self.source.add_consumer(
            self, encoding, internal=True, queue_length=self.config.queue_length,
            stall_timeout=STALL_TIMEOUT, label=f"forward destination {self.shown_destination}")
        if proto.paused:
            c.pause()
        log.log(srvlog.TRACE, "forward %s: publish started on %s (%d messages from the GOP cache)",
                self.name, self.shown_url, c.pos - c.first)

    def _detach(self) -> None:
        """Leave the source (a consumer only lives as long as one publish to the destination)."""
        c, self.consumer = self.consumer, None
        if c is not None:
            self.past_sent += c.pos - c.first - c.dropped
            self.past_dropped += c.dropped
            self.past_bytes += c.sent_bytes
            self.source.remove_consumer(c)

    def _on_lost(self, gen: int, why: str) -> None:
        if gen == self.gen and self.state is not STOPPED:
            self._fail(gen, why)

    def _on_pause(self, gen: int) -> None:
        if gen == self.gen and self.consumer is not None:
            self.consumer.pause()

    def _on_drain(self, gen: int) -> None:
        if gen == self.gen and self.consumer is not None:
            self.consumer.resume()

    def _fail(self, gen: int, why: str, retry: bool = True) -> None:
        """Close this connection; retry after a backoff unless `retry` is False."""
        if gen != self.gen or self.state in (STOPPED, ERROR, BACKOFF):
            return
        self.gen += 1  # late callbacks of this connection are ignored from now on
        self.last_error = why
        self._detach()
        proto, self.proto = self.proto, None
        if proto is not None:
            proto.close(why)
        if not retry:
            self._set_state(ERROR)
            log.error("forward %s: %s; giving up", self.name, why)
            return
        delay = self._backoff()
        self._set_state(BACKOFF)
        log.warning("forward %s: error: %s; retry in %.1fs", self.name, why, delay)
        self.retry = self.loop.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        self.retry = None
        if self.state is BACKOFF:
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

    # ---- housekeeping --------------------------------------------------------------------------

    def _tick(self) -> None:
        """Every second: connect timeout and the pithy status line."""
        if self.state is STOPPED:
            return
        self.ticker = self.loop.call_later(TICK, self._tick)
        now = time.monotonic()
        if self.state is CONNECTING and now - self.state_since > self.connect_timeout:
            self._fail(self.gen, f"timeout: not publishing after {self.connect_timeout:g}s "
                       f"(handshake/connect/publish unanswered)")
        pithy = self.ctx.config.pithy_print_ms / 1000
        if now - self.last_print >= pithy:
            sent = self.bytes_sent
            kbps = (sent - self.printed_bytes) * 8 / 1000 / (now - self.last_print)
            self.last_print, self.printed_bytes = now, sent
            age = now - self.state_since
            log.log(srvlog.TRACE, "forward %s: %s %.0fs, sent %d msgs %d bytes (%.0f kbps), "
                    "dropped %d, queue %d, reconnects %d%s", self.name, self.state.value, age,
                    self.messages_sent, sent, kbps, self.messages_dropped,
                    self.queued(), self.reconnects,
                    f", last error: {self.last_error}" if self.last_error else "")
