"""Edge (SRS's `cluster { mode remote; origin ...; }`): streams come from origins, publishes go to them.

- `EdgePull`: the ONE play of a stream from an origin for the whole edge host. The hub makes it
  in the worker that won the stream in the master's registry; the other workers pull from that
  worker over the internal unix socket, so an origin sees one connection per edge host. It feeds
  the local source like a publisher (`origin=False`). Messages, on every (re)connection::

      C0C1 ... connect(app, tcUrl rtmp://origin:port/app?vhost=V) -> createStream -> play(stream?params)
      <- onStatus NetStream.Play.Start, then onMetaData, sequence headers, the origin's GOP cache
         from its keyframe, live packets

  The source is published on the first media message and unpublished when the connection ends;
  players keep their sockets in between (they wait, as for a republish), and the next
  connection's metadata, sequence headers and keyframe reach them as ordinary messages, with
  timestamps going on from the old ones (srv.app.source).
- `params` (SRS: the client's param string goes upstream): the query of the player that made
  this worker pull (its tcUrl's and stream's query, the stream's winning, `vhost` left out) rides
  on the play's stream name, so an origin with `signed_url { play on; }` or an on_play hook that
  checks a token admits the edge. Every (re)connection and failover reuses them; once an
  origin refuses them (a token expired), the same origin is asked again at once with the
  newest player's (`offer_params`), if it brought different ones.
- Timings (SRS's edge ingester): CONNECT_TIMEOUT (5 s) from dialing to Play.Start, RECV_TIMEOUT
  (5 s) without media once playing, RETRY (3 s) before the next attempt; each attempt goes to
  the next origin, round-robin. srv beyond SRS: a connection that was playing fails over to the
  next origin at once (a jitter under FAILOVER_JITTER only), and a whole round of failed origins
  doubles the retry delay up to RETRY_MAX, with jitter, so a dead cluster is not hammered.
- `EdgePush`: a publish on the edge is pushed to an origin: a Forwarder whose destination is the
  next origin on every reconnect (SRS: the edge forwards the publish to the origin).
- `traverse()` (`token_traverse on`): before a client is admitted, connect to an origin with
  the client's tcUrl; the origin's `_error` refuses the client. Before a play is admitted, the
  same with the play too (`stream?params`): the origin's play refusal (a signed URL, on_play)
  refuses the player.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from typing import Any
from urllib.parse import urlencode

from srv import log as srvlog
from srv.app.access import Refusal
from srv.app.source import LiveSource
from srv.conf.model import ClusterConfig, ForwardConfig, origin_address
from srv.net.context import ConnectionContext
from srv.net.forward import Forwarder
from srv.net.pull import advance_play, feed_source
from srv.net.rtmp_client import RtmpClientProtocol
from srv.rtmp import events as ev
from srv.rtmp.client import ClientSession

log = logging.getLogger("srv.edge")

CONNECT_TIMEOUT = 5.0  # SRS_EDGE_INGESTER_TIMEOUT: dial -> Play.Start
RECV_TIMEOUT = 5.0  # no media for this long while playing: the origin is gone
RETRY = 3.0  # SRS_EDGE_INGESTER_CIMS: the wait before the next attempt
RETRY_MAX = 30.0  # srv: the wait doubles with each round of failed origins, up to this
FAILOVER_JITTER = 0.3  # srv: a pull that was playing tries the next origin within this
TICK = 1.0


class EdgeState(enum.Enum):
    CONNECTING = "connecting"
    PLAYING = "pulling"
    BACKOFF = "backoff"
    STOPPED = "stopped"


CONNECTING, PLAYING, BACKOFF, STOPPED = EdgeState


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def upstream_query(params: dict[str, str]) -> str:
    """A client's params as the edge passes them to an origin: the query, `vhost` left out
    (the edge's `cluster { vhost }` decides that one)."""
    return urlencode({k: v for k, v in params.items() if k != "vhost"})


def with_query(name: str, query: str) -> str:
    return f"{name}?{query}" if query else name


def origin_vhost(cluster: ClusterConfig, vhost: str) -> str:
    """The vhost asked of the origin: `cluster { vhost }`, else the edge's own."""
    return cluster.vhost or vhost


class EdgePull:
    """The edge host's one play of `source` from an origin (see the module docstring)."""

    def __init__(self, ctx: ConnectionContext, source: LiveSource, params: dict[str, str] | None = None) -> None:
        self.ctx = ctx
        self.source = source
        self.loop = ctx.loop
        self.closed = False  # Publisher: never "went away" while the hub waits
        self.query = upstream_query(params or {})  # the first player's, passed to the origin
        self.newest = self.query  # the newest player's: used once the origin refuses `query`
        self.refused = False  # the last attempt was refused by the origin (not a network failure)
        self.vhost, self.app, self.stream = source.key.split("/", 2)
        self.state = CONNECTING
        self.state_since = time.monotonic()
        self.next_origin = 0  # round-robin position in the origin list
        self.origin = ""  # the origin of the current (or last) attempt
        self.failures = 0  # attempts in a row that never played
        self.gen = 0
        self.fed = False  # this connection delivered media
        self.last_media = 0.0
        self.switches = 0  # failovers of a pull that was playing
        self.reconnects = 0  # attempts after the first
        self.since = time.time()  # when the state began (the API's `since`)
        self.session: ClientSession | None = None
        self.proto: RtmpClientProtocol | None = None
        self.retry: asyncio.TimerHandle | None = None
        self.ticker = self.loop.call_later(TICK, self._tick)
        self._connect()

    @property
    def cluster(self) -> ClusterConfig:
        return self.source.vhost.cluster  # as last reloaded

    # ---- hub interface -------------------------------------------------------------------------

    def stop(self) -> None:
        if self.state is STOPPED:
            return
        self.gen += 1
        self._set_state(STOPPED)
        for h in (self.retry, self.ticker):
            if h is not None:
                h.cancel()
        proto, self.proto = self.proto, None
        if proto is not None:
            proto.close("stopped")
        log.log(srvlog.TRACE, "edge %s: stopped pulling from %s (no player left)", self.source.key, self.origin)

    def reconfigure(self) -> None:
        """Reload: a pull whose origin is no longer listed moves to a listed one now."""
        origins = self.cluster.origins
        if self.state is STOPPED or not origins or self.origin in origins:
            return
        log.log(srvlog.TRACE, "edge %s: origin %s is no longer listed; switching to %s",
                self.source.key, self.origin, origins[0])
        self.next_origin = 0
        self.failures = 0
        self._fail(self.gen, "origin list reloaded", delay=0.0)

    def offer_params(self, params: dict[str, str]) -> None:
        """A new player of the stream on this worker: its params replace the pull's once an
        origin refuses those it has."""
        self.newest = upstream_query(params)

    def stats(self) -> dict[str, Any]:
        return {"origin": self.origin, "state": self.state.value, "since": round(self.since, 3),
                "switches": self.switches, "reconnects": self.reconnects,
                "origins": list(self.cluster.origins)}

    # ---- connection ----------------------------------------------------------------------------

    def _set_state(self, state: EdgeState) -> None:
        self.state = state
        self.state_since = time.monotonic()
        self.since = time.time()

    def _connect(self) -> None:
        self.retry = None
        origins = self.cluster.origins
        if self.state is STOPPED or not origins:
            return
        if self.gen:
            self.reconnects += 1
        if self.refused and self.newest != self.query:
            log.log(srvlog.TRACE, "edge %s: the origin refused the first player's params; "
                    "using a newer player's", self.source.key)
            self.query = self.newest
        self.refused = False
        self.gen += 1
        gen = self.gen
        self.origin = origins[self.next_origin % len(origins)]
        self.next_origin = (self.next_origin + 1) % len(origins)
        self.fed = False
        self._set_state(CONNECTING)
        host, port = origin_address(self.origin)
        vhost = origin_vhost(self.cluster, self.vhost)
        tc_url = f"rtmp://{_bracket(host)}:{port}/{self.app}?vhost={vhost}"
        session = self.session = ClientSession(app=self.app, tc_url=tc_url,
                                               out_chunk_size=self.ctx.config.chunk_size)
        log.log(srvlog.TRACE, "edge %s: pulling from origin %s", self.source.key, self.origin)

        def make() -> RtmpClientProtocol:
            proto = RtmpClientProtocol(session, lambda e: self._on_event(gen, e),
                                       lambda why: self._fail(gen, why))
            if gen == self.gen:
                self.proto = proto
            return proto

        async def dial() -> None:
            try:
                _, proto = await self.loop.create_connection(make, host, port)
            except OSError as e:
                self._fail(gen, f"cannot connect to {self.origin}: {e.strerror or e}")
                return
            if gen != self.gen:
                proto.close("stopped")

        self.loop.create_task(dial())

    def _on_event(self, gen: int, e: ev.Event) -> None:
        if gen != self.gen or self.session is None:
            return
        src = self.source
        if type(e) is ev.MediaMessage or type(e) is ev.MetadataMessage:
            self.last_media = time.monotonic()
            if src.publisher is None:
                self._on_first_media()
        if feed_source(src, self, e) or advance_play(self.session, with_query(self.stream, self.query), e):
            return
        if isinstance(e, ev.StatusEvent):
            if e.code == "NetStream.Play.Start":
                self._set_state(PLAYING)
                self.last_media = time.monotonic()
            elif e.code == "NetStream.Play.UnpublishNotify":
                if src.publisher is self:
                    src.on_unpublish()  # the origin's publisher left; wait on this connection
            elif e.level == "error":
                self.refused = True
                self._fail(gen, f"play refused: {e.code} {e.description}")
        elif isinstance(e, ev.ConnectFailed):
            self.refused = True
            self._fail(gen, f"connect refused: {e.code} {e.description}")
        elif isinstance(e, ev.CommandFailed):
            self._fail(gen, f"{e.command} failed: {e.info}")

    def _on_first_media(self) -> None:
        """Media from this connection: it feeds the source (players waiting resume here, on
        the metadata, sequence headers and keyframe the origin sends first)."""
        self.fed = True
        self.failures = 0
        self.source.on_publish(self, origin=False)
        log.log(srvlog.TRACE, "edge %s: playing from origin %s", self.source.key, self.origin)

    def _fail(self, gen: int, why: str, delay: float | None = None) -> None:
        """End this connection; try the next origin after `delay` (default: see _retry_delay)."""
        if gen != self.gen or self.state in (STOPPED, BACKOFF):
            return
        self.gen += 1
        proto, self.proto = self.proto, None
        if proto is not None:
            proto.close(why)
        src = self.source
        if src.publisher is self:
            src.on_unpublish()
        was_fed, self.fed = self.fed, False
        if delay is None and self.refused and self.newest != self.query:
            # the origin refused these params (an expired token): the same origin, at once,
            # with the newest player's
            self.next_origin = (self.next_origin - 1) % max(1, len(self.cluster.origins))
            delay = random.uniform(0, FAILOVER_JITTER)
        if delay is None:
            delay = self._retry_delay(was_fed)
        if was_fed:
            self.switches += 1
        self._set_state(BACKOFF)
        log.warning("edge %s: origin %s: %s; next attempt (%s) in %.1fs", src.key, self.origin, why,
                    self.cluster.origins[self.next_origin % len(self.cluster.origins)]
                    if self.cluster.origins else "no origin", delay)
        self.retry = self.loop.call_later(delay, self._connect)

    def _retry_delay(self, was_fed: bool) -> float:
        """At once (jittered) after a connection that played; else RETRY, doubling with each
        full round of origins that all failed, up to RETRY_MAX, with jitter."""
        if was_fed:
            return random.uniform(0, FAILOVER_JITTER)
        self.failures += 1
        rounds = (self.failures - 1) // max(1, len(self.cluster.origins))
        top = min(RETRY_MAX, RETRY * 2 ** min(rounds, 10))
        return random.uniform(max(RETRY, top / 2), top)

    def _tick(self) -> None:
        if self.state is STOPPED:
            return
        self.ticker = self.loop.call_later(TICK, self._tick)
        now = time.monotonic()
        if self.state is CONNECTING and now - self.state_since > CONNECT_TIMEOUT:
            self._fail(self.gen, f"timeout: not playing after {CONNECT_TIMEOUT:g}s")
        elif self.state is PLAYING and now - self.last_media > RECV_TIMEOUT:
            self._fail(self.gen, f"no media for {RECV_TIMEOUT:g}s")


class EdgePush(Forwarder):
    """A publish on the edge, pushed to an origin: the next origin on every reconnect."""

    edge = True  # the hub's forward reconciliation leaves it alone
    connect_timeout = CONNECT_TIMEOUT

    def __init__(self, ctx: ConnectionContext, source: LiveSource) -> None:
        cluster = source.vhost.cluster
        self.next_origin = 0
        config = ForwardConfig(enabled=True, destinations=cluster.origins,
                               backoff_initial=int(RETRY * 1000), backoff_max=int(RETRY * 1000))
        super().__init__(ctx, source, cluster.origins[0], config)

    def _connect(self) -> None:
        cluster = self.source.vhost.cluster
        if cluster.origins:
            origin = cluster.origins[self.next_origin % len(cluster.origins)]
            self.next_origin = (self.next_origin + 1) % len(cluster.origins)
            self.retarget(origin, origin_vhost(cluster, self.source.key.split("/", 1)[0]))
        super()._connect()

    def reconfigure_origins(self) -> None:
        """Reload: a push whose origin is no longer listed moves to a listed one now."""
        cluster = self.source.vhost.cluster
        if cluster.origins and self.destination not in cluster.origins:
            self.next_origin = 0
            self._fail(self.gen, "origin list reloaded")


async def traverse(ctx: ConnectionContext, cluster: ClusterConfig, vhost: str, app: str,
                   tc_url: str, client: str, play: str | None = None) -> Refusal | None:
    """`token_traverse on`: connect to the origins in turn with the client's tcUrl (and its
    query: the token); None once one accepts. An origin that answers `_error` refuses the
    client; when none answers, the client is refused too (SRS: the edge cannot check it).
    `play` (a player's `stream?params`, srv): the origin must also accept that play
    (`NetStream.Play.Start`); its play refusal refuses the player."""
    if cluster.vhost and "vhost=" not in tc_url:
        tc_url += ("&" if "?" in tc_url else "?") + f"vhost={origin_vhost(cluster, vhost)}"
    errors = []
    for origin in cluster.origins:
        answer = await _ask_origin(ctx, origin, app, tc_url, play)
        if answer is None:
            log.log(srvlog.INFO, "token traverse for %s: origin %s accepted", client, origin)
            return None
        refused, why = answer
        if refused:
            return Refusal(f"token traverse: origin {origin} refused: {why}", "token_traverse")
        errors.append(f"{origin}: {why}")
    return Refusal("token traverse: no origin answered (" + "; ".join(errors) + ")", "token_traverse",
                   failed_auth=False)


async def _ask_origin(ctx: ConnectionContext, origin: str, app: str, tc_url: str,
                      play: str | None = None) -> tuple[bool, str] | None:
    """None when `origin` accepts connect(app, tc_url) (and then `play`, if given); else
    (refused by it?, why)."""
    loop = ctx.loop
    answer: asyncio.Future[tuple[bool, str] | None] = loop.create_future()

    def on_event(e: ev.Event) -> None:
        if answer.done():
            return
        if isinstance(e, ev.Connected) and play is None:
            answer.set_result(None)
        elif play is not None and advance_play(session, play, e):
            return
        elif isinstance(e, ev.ConnectFailed):
            answer.set_result((True, f"{e.code} {e.description}".strip()))
        elif isinstance(e, ev.StatusEvent) and e.code == "NetStream.Play.Start":
            answer.set_result(None)
        elif isinstance(e, ev.StatusEvent) and e.level == "error":
            answer.set_result((True, f"{e.code} {e.description}".strip()))
        elif isinstance(e, ev.CommandFailed):
            answer.set_result((True, f"{e.command} failed: {e.info}"))

    def on_lost(why: str) -> None:
        if not answer.done():
            answer.set_result((False, why or "connection closed"))

    session = ClientSession(app=app, tc_url=tc_url, out_chunk_size=ctx.config.chunk_size)
    host, port = origin_address(origin)
    proto: RtmpClientProtocol | None = None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, proto = await loop.create_connection(lambda: RtmpClientProtocol(session, on_event, on_lost),
                                                    host, port)
            return await answer
    except TimeoutError:
        return False, f"no answer within {CONNECT_TIMEOUT:g}s"
    except OSError as e:
        return False, f"cannot connect: {e.strerror or e}"
    finally:
        if proto is not None:
            proto.close("token checked")
