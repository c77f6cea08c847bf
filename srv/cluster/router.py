"""Where a proxy sends a client: the origin that owns its stream, or a new owner for a publish.

``Router`` wraps the worker's ``Balancer`` with what the relays need:

- ``claim_publish`` picks a live origin at random (skipping ones a connect just failed on) and
  claims the stream for it; a stream someone else holds is refused (SRS's
  ``NetStream.Publish.BadName``), and so is every publish while the balancer is unreachable;
- ``find_play`` waits up to ``play_wait`` for a stream's owner; while the balancer is
  unreachable it answers from the mappings this worker already holds (``known``), so players of
  running streams still find them;
- ``keep`` refreshes a claimed stream every third of ``stream_ttl`` for as long as it runs; a
  Redis outage is logged once and the stream keeps flowing; when Redis returns the key is set
  again (a restarted Redis has lost it).

Stream names are ``vhost/app/stream``; a client that names no vhost (``?vhost=``) and connects
by address is in ``__defaultVhost__``, as on the origin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from dataclasses import dataclass

from srv import log as srvlog
from srv.cluster.balancer import Balancer, BalancerError, Origin, owner_server, owner_value
from srv.conf.model import DEFAULT_VHOST, ProxyConfig

log = logging.getLogger("srv.proxy")

FAILED_ORIGIN_PAUSE = 5.0  # seconds an origin that refused a connect is skipped by new publishes
POLL = 0.25


class Refused(Exception):
    """A client the proxy cannot route: ``code`` is the RTMP status (HTTP: ``status``)."""

    def __init__(self, code: str, reason: str, status: int = 404) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status


def stream_name(vhost: str, app: str, stream: str) -> str:
    return f"{vhost_of(vhost)}/{app}/{stream}"


def vhost_of(host: str) -> str:
    """An address, localhost or nothing is no vhost name: the default vhost (as SRS resolves it)."""
    if not host or host == "localhost":
        return DEFAULT_VHOST
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return DEFAULT_VHOST


@dataclass
class Claim:
    stream: str
    owner: str
    origin: Origin


class Router:
    def __init__(self, balancer: Balancer, config: ProxyConfig) -> None:
        self.balancer = balancer
        self.config = config
        self.known: dict[str, Origin] = {}  # stream -> its origin, as last seen (Redis down: used)
        self.failed: dict[str, float] = {}  # origin server -> when a connect to it failed
        self.redis_down = False

    def _balancer_error(self, e: BalancerError, what: str) -> None:
        if not self.redis_down:
            log.error("proxy: load balancer unreachable (%s) while %s; running streams keep flowing, "
                      "new publishes are refused until it is back", e, what)
        self.redis_down = True

    def _balancer_ok(self) -> None:
        if self.redis_down:
            log.log(srvlog.TRACE, "proxy: load balancer reachable again")
        self.redis_down = False

    async def claim_publish(self, stream: str, token: str, skip: set[str]) -> Claim:
        """Claim ``stream`` for a live origin not in ``skip``; raises ``Refused``."""
        try:
            origins = await self.balancer.origins()
            now = time.monotonic()
            fresh = [o for o in origins if o.server not in skip and now - self.failed.get(o.server, -1e9)
                     > FAILED_ORIGIN_PAUSE]
            candidates = fresh or [o for o in origins if o.server not in skip]
            if not candidates:
                raise Refused("NetStream.Publish.Failed", "no origin is registered" if not origins
                              else "no origin could be reached", 503)
            origin = random.choice(candidates)
            owner = owner_value(origin.server, token)
            held = await self.balancer.claim(stream, owner)
        except BalancerError as e:
            self._balancer_error(e, f"claiming {stream}")
            raise Refused("NetStream.Publish.Failed", f"load balancer unreachable ({e})", 503) from None
        self._balancer_ok()
        if held is not None:
            raise Refused("NetStream.Publish.BadName", f"stream already published (owner {held})", 409)
        self.known[stream] = origin
        return Claim(stream, owner, origin)

    def connect_failed(self, origin: Origin) -> None:
        self.failed[origin.server] = time.monotonic()

    async def release(self, claim: Claim) -> None:
        self.known.pop(claim.stream, None)
        try:
            await self.balancer.release(claim.stream, claim.owner)
        except BalancerError as e:
            # the key expires within stream_ttl without its refresh
            log.warning("proxy: cannot release %s (%s); it expires within %gs", claim.stream, e,
                        self.config.stream_ttl)

    async def find_play(self, stream: str, skip: set[str] | None = None) -> Origin:
        """The origin of ``stream``, waiting up to ``play_wait`` for it to be published."""
        deadline = time.monotonic() + self.config.play_wait
        while True:
            try:
                value = await self.balancer.owner(stream)
                origin = await self.balancer.origin(owner_server(value)) if value else None
                self._balancer_ok()
            except BalancerError as e:
                self._balancer_error(e, f"looking up {stream}")
                origin = self.known.get(stream)
                if origin is None:
                    raise Refused("NetStream.Play.Failed", f"load balancer unreachable ({e})", 503) from None
            if origin is not None and origin.server not in (skip or ()):
                self.known[stream] = origin
                return origin
            if time.monotonic() >= deadline:
                raise Refused("NetStream.Play.StreamNotFound", "no origin publishes it", 404)
            await asyncio.sleep(POLL)

    async def keep(self, claim: Claim) -> None:
        """Refresh ``claim`` until cancelled (the stream ended)."""
        while True:
            await asyncio.sleep(self.config.stream_ttl / 3)
            try:
                got = await self.balancer.refresh(claim.stream, claim.owner)
            except BalancerError as e:
                self._balancer_error(e, f"refreshing {claim.stream}")
                continue
            self._balancer_ok()
            if got == 2:
                log.log(srvlog.TRACE, "proxy: %s registered again on %s", claim.stream, claim.origin.label())
            elif got == 0:
                log.warning("proxy: %s is now held by another owner; this publisher keeps its origin %s",
                            claim.stream, claim.origin.label())
