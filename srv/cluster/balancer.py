"""The proxy's load balancer: which origins are alive and which origin owns each stream.

Two implementations behind one interface (``Balancer``): ``MemoryBalancer`` for one proxy with
one worker, ``RedisBalancer`` for several proxies (and workers) sharing one Redis. Invariants:

- an origin is listed while its heartbeats keep coming: each register sets its entry with a
  time to live of ``server_ttl``; an origin that stops heart-beating drops out on its own;
- a stream has at most one owner: ``claim`` is ``SET key owner NX PX stream_ttl``, so of two
  proxies claiming one stream at once exactly one wins; the winner ``refresh``es the key while
  the stream lives and ``release``s it (only if still its own) when the stream ends, so a dead
  proxy's or origin's streams expire within ``stream_ttl``;
- nothing is read, changed and written back: the origin index is a sorted set whose members
  are set one by one (ZADD, score = expiry), stream keys are changed by SET NX and by Lua
  scripts that compare the owner before they touch the key.

Redis keys (prefix ``srv:cluster:``) are listed in docs/cluster.md. Every Redis failure is a
``BalancerError`` (the caller decides: refuse a new publish, keep a running stream).
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from srv.conf.model import ProxyConfig

PREFIX = "srv:cluster:"
ORIGINS = PREFIX + "origins"  # ZSET server id -> expiry (unix ms)
MAX_ENDPOINTS = 16
MAX_FIELD = 256

# refresh: still mine -> extend (1); gone (Redis restarted, expired) -> take it again (2);
# someone else's -> leave it (0)
_REFRESH = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BalancerError(Exception):
    """The shared state cannot be reached (Redis down, timeout)."""


class RegisterError(ValueError):
    """A register body that does not describe an origin."""


@dataclass(frozen=True)
class Origin:
    """One origin as registered: where to dial it for RTMP and HTTP."""

    server: str
    service: str
    pid: str
    ip: str
    device_id: str
    rtmp: tuple[tuple[str, int], ...]
    http: tuple[tuple[str, int], ...] = ()
    api: tuple[tuple[str, int], ...] = ()

    def label(self) -> str:
        where = f"{self.rtmp[0][0]}:{self.rtmp[0][1]}"
        return f"{self.device_id or self.server} ({where})"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Origin:
        d = json.loads(text)
        return cls(d["server"], d["service"], d["pid"], d["ip"], d["device_id"],
                   *(tuple((str(h), int(p)) for h, p in d[k]) for k in ("rtmp", "http", "api")))


def _text(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise RegisterError(f'"{key}" must be a non-empty string')
    if len(value) > MAX_FIELD:
        raise RegisterError(f'"{key}" is longer than {MAX_FIELD} characters')
    return value


def parse_endpoint(item: Any, ip: str) -> tuple[str, int]:
    """SRS's listen endpoint forms: ``1935``, ``"1935"``, ``":1935"``, ``"ip:port"``,
    ``"[v6]:port"``, ``"tcp://ip:port"``, ``"tcp://:port"``; no or any address means ``ip``."""
    if isinstance(item, int) and not isinstance(item, bool):
        item = str(item)
    if not isinstance(item, str) or not item or len(item) > MAX_FIELD:
        raise RegisterError(f"bad endpoint {item!r}")
    text = item.split("://", 1)[1] if "://" in item else item
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RegisterError(f"bad endpoint {item!r} (no port)")
    if host in ("", "0.0.0.0", "::"):
        host = ip
    return host, int(port)


def parse_register(raw: bytes) -> Origin:
    """An SRS register body (``POST /api/v1/srs/register``) -> the ``Origin`` it describes."""
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise RegisterError(f"not JSON: {e}") from None
    if not isinstance(body, dict):
        raise RegisterError("not a JSON object")
    ip = _text(body, "ip")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        if not all(c.isalnum() or c in "-._" for c in ip):
            raise RegisterError(f'"ip" is not an address or a host name: {ip!r}') from None
    lists = {}
    for key in ("rtmp", "http", "api"):
        value = body.get(key, [])
        if not isinstance(value, list) or len(value) > MAX_ENDPOINTS:
            raise RegisterError(f'"{key}" must be a list of at most {MAX_ENDPOINTS} endpoints')
        lists[key] = tuple(parse_endpoint(item, ip) for item in value)
    if not lists["rtmp"]:
        raise RegisterError('"rtmp" lists no endpoint (an SRS origin sends it with heartbeat ports on)')
    return Origin(_text(body, "server"), _text(body, "service"), _text(body, "pid"), ip,
                  _text(body, "device_id", required=False), lists["rtmp"], lists["http"], lists["api"])


class Balancer(Protocol):
    async def register(self, origin: Origin) -> None: ...
    async def origins(self) -> list[Origin]: ...
    async def origin(self, server: str) -> Origin | None: ...
    async def claim(self, stream: str, owner: str) -> str | None: ...
    async def refresh(self, stream: str, owner: str) -> int: ...
    async def release(self, stream: str, owner: str) -> None: ...
    async def owner(self, stream: str) -> str | None: ...
    async def aclose(self) -> None: ...


def owner_value(server: str, token: str) -> str:
    """What a stream key holds: the origin's server id and the claiming session's token."""
    return f"{server}|{token}"


def owner_server(value: str) -> str:
    return value.split("|", 1)[0]


class MemoryBalancer:
    """State in this process: for one proxy with one worker (the config insists)."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self._origins: dict[str, tuple[Origin, float]] = {}
        self._streams: dict[str, tuple[str, float]] = {}

    async def register(self, origin: Origin) -> None:
        self._origins[origin.server] = (origin, time.monotonic() + self.config.server_ttl)

    async def origins(self) -> list[Origin]:
        now = time.monotonic()
        return [o for o, until in self._origins.values() if until > now]

    async def origin(self, server: str) -> Origin | None:
        found = self._origins.get(server)
        return found[0] if found and found[1] > time.monotonic() else None

    def _live(self, stream: str) -> str | None:
        found = self._streams.get(stream)
        return found[0] if found and found[1] > time.monotonic() else None

    async def claim(self, stream: str, owner: str) -> str | None:
        held = self._live(stream)
        if held is not None:
            return held
        self._streams[stream] = (owner, time.monotonic() + self.config.stream_ttl)
        return None

    async def refresh(self, stream: str, owner: str) -> int:
        held = self._live(stream)
        if held not in (None, owner):
            return 0
        self._streams[stream] = (owner, time.monotonic() + self.config.stream_ttl)
        return 1 if held else 2

    async def release(self, stream: str, owner: str) -> None:
        if self._live(stream) == owner:
            del self._streams[stream]

    async def owner(self, stream: str) -> str | None:
        return self._live(stream)

    async def aclose(self) -> None:
        pass


class RedisBalancer:
    """State in Redis, shared by every proxy and worker that names the same server and db.

    A failing call fails at once: one retry on a fresh connection (a pooled one is dead after a
    Redis restart), no backoff. redis-py's default (three retries, backing off up to seconds)
    made each call of an outage take ~4 s: publishes were refused that late, and a register
    that began in the outage landed after Redis returned with the expiry it computed when it
    began, already past with a short ``server_ttl``, so its origin looked gone."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.client = aioredis.Redis(host=config.redis_host, port=config.redis_port, db=config.redis_db,
                                     password=config.redis_password or None, socket_timeout=1.0,
                                     socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 1),
                                     decode_responses=True)
        self._refresh = self.client.register_script(_REFRESH)
        self._release = self.client.register_script(_RELEASE)

    @staticmethod
    def stream_key(stream: str) -> str:
        return f"{PREFIX}stream:{stream}"

    @staticmethod
    def origin_key(server: str) -> str:
        return f"{PREFIX}origin:{server}"

    async def register(self, origin: Origin) -> None:
        ttl_ms = int(self.config.server_ttl * 1000)
        now_ms = int(time.time() * 1000)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(self.origin_key(origin.server), origin.to_json(), px=ttl_ms)
                pipe.zadd(ORIGINS, {origin.server: now_ms + ttl_ms})
                pipe.zremrangebyscore(ORIGINS, "-inf", now_ms)  # index members whose entry expired
                await pipe.execute()
        except RedisError as e:
            raise BalancerError(f"redis: {e}") from None

    async def origins(self) -> list[Origin]:
        try:
            servers = await self.client.zrangebyscore(ORIGINS, int(time.time() * 1000), "+inf")
            if not servers:
                return []
            found = await self.client.mget([self.origin_key(str(s)) for s in servers])
        except RedisError as e:
            raise BalancerError(f"redis: {e}") from None
        return [Origin.from_json(text) for text in found if text]

    async def origin(self, server: str) -> Origin | None:
        try:
            text = await self.client.get(self.origin_key(server))
        except RedisError as e:
            raise BalancerError(f"redis: {e}") from None
        return Origin.from_json(text) if text else None

    async def claim(self, stream: str, owner: str) -> str | None:
        key = self.stream_key(stream)
        try:
            if await self.client.set(key, owner, nx=True, px=int(self.config.stream_ttl * 1000)):
                return None
            held = await self.client.get(key)
        except RedisError as e:
            raise BalancerError(f"redis: {e}") from None
        return str(held) if held is not None else await self.claim(stream, owner)  # expired meanwhile

    async def refresh(self, stream: str, owner: str) -> int:
        try:
            return int(await self._refresh(keys=[self.stream_key(stream)],
                                           args=[owner, int(self.config.stream_ttl * 1000)]))
        except RedisError as e:
            raise BalancerError(f"redis: {e}") from None

    async def release(self, stream: str, owner: str) -> None:
        try:
            await self._release(keys=[self.stream_key(stream)], args=[owner])
        except RedisError as e:
            raise BalancerError(f"redis: {e}") from None

    async def owner(self, stream: str) -> str | None:
        try:
            value = await self.client.get(self.stream_key(stream))
            return None if value is None else str(value)
        except RedisError as e:
            raise BalancerError(f"redis: {e}") from None

    async def aclose(self) -> None:
        await self.client.aclose()


def make_balancer(config: ProxyConfig) -> Balancer:
    if config.load_balancer == "memory":
        return MemoryBalancer(config)
    return RedisBalancer(config)
