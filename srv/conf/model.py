"""The typed configuration: frozen dataclasses the rest of srv is written against.

Built once by ``srv.conf.load`` and passed in; nothing reads config globally.  Every object
here is immutable, hashable and picklable (the master sends ``ServerConfig`` to workers).
Defaults are SRS's (see SRS's full.conf); where srv goes beyond SRS the docstring says so.
Times: ``*_timeout``, ``*_wait``, ``mw_latency``, ``backoff_*`` are milliseconds (int);
``queue_length`` is seconds (float).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

DEFAULT_VHOST = "__defaultVhost__"


@dataclass(frozen=True)
class Endpoint:
    """A listen address; ``1935`` means ``0.0.0.0:1935``.

    ``proxy_protocol`` (srv: ``listen 1935 proxy_protocol;``) marks a socket whose peers are load
    balancers sending a PROXY header first. It is not part of the address: two endpoints on the
    same address are the same endpoint (one socket), whatever their flags.
    """

    host: str
    port: int
    proxy_protocol: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RawApiConfig:
    enabled: bool = False
    allow_reload: bool = False
    allow_query: bool = False


@dataclass(frozen=True)
class ApiAuthConfig:
    """``http_api { auth { } }`` (SRS 5+): HTTP Basic on ``/api/...``.

    The password never appears in a repr, a log line or an error message.
    """

    enabled: bool = False
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class HttpsConfig:
    """``http_server { https { } }``: HTTP-FLV and files over TLS on their own port (SRS)."""

    enabled: bool = False
    listen: Endpoint = Endpoint("0.0.0.0", 8088)
    key: str = "./conf/server.key"
    cert: str = "./conf/server.crt"


@dataclass(frozen=True)
class ApiHttpsConfig(HttpsConfig):
    """``http_api { https { } }``: the API over TLS; SRS's default port is 1990."""

    listen: Endpoint = Endpoint("0.0.0.0", 1990)


@dataclass(frozen=True)
class RtmpsConfig:
    """SRS 7's top-level ``rtmps { }``: RTMP over TLS on its own ports, in every worker."""

    enabled: bool = False
    listen: tuple[Endpoint, ...] = (Endpoint("0.0.0.0", 1443),)
    key: str = "./conf/server.key"
    cert: str = "./conf/server.crt"


@dataclass(frozen=True)
class HttpApiConfig:
    enabled: bool = False
    listen: Endpoint = Endpoint("0.0.0.0", 1985)
    crossdomain: bool = True
    raw_api: RawApiConfig = RawApiConfig()
    auth: ApiAuthConfig = ApiAuthConfig()
    https: ApiHttpsConfig = ApiHttpsConfig()


@dataclass(frozen=True)
class HttpServerConfig:
    enabled: bool = False
    listen: Endpoint = Endpoint("0.0.0.0", 8080)
    dir: str = "./objs/nginx/html"
    crossdomain: bool = True
    https: HttpsConfig = HttpsConfig()


@dataclass(frozen=True)
class ExporterConfig:
    enabled: bool = False
    listen: Endpoint = Endpoint("0.0.0.0", 9972)
    label: str = ""
    tag: str = ""


@dataclass(frozen=True)
class HeartbeatConfig:
    """SRS's ``heartbeat { }``: the master POSTs who this server is to ``url`` every ``interval``
    seconds (SRS 7 origins register with an origin-cluster proxy this way: docs/cluster.md).
    ``ports`` adds the listen endpoints (rtmp, http, api), which a proxy needs to reach us."""

    enabled: bool = False
    interval: float = 9.9
    url: str = "http://127.0.0.1:8085/api/v1/servers"
    device_id: str = ""
    ports: bool = False


@dataclass(frozen=True)
class ProxyConfig:
    """srv's ``proxy { }`` (SRS 7's srs-proxy, configured here rather than by environment): the
    server runs as an origin-cluster proxy. Its RTMP and HTTP listeners relay clients to the
    origin that owns each stream; ``system_api`` serves the register API origins heartbeat to.
    ``load_balancer`` keeps origins and stream owners in this process (memory: one proxy, one
    worker) or in Redis (several proxies). TTLs are seconds (docs/cluster.md)."""

    enabled: bool = False
    system_api: Endpoint = Endpoint("0.0.0.0", 12025)
    load_balancer: str = "redis"  # "memory" or "redis" (SRS's PROXY_LOAD_BALANCER_TYPE)
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: str = field(default="", repr=False)
    redis_db: int = 0
    stream_ttl: float = 10.0
    server_ttl: float = 30.0
    play_wait: float = 10.0


@dataclass(frozen=True)
class PlayConfig:
    gop_cache: bool = True
    gop_cache_max_frames: int = 2500
    gop_cache_max_size: int = 64 * 2**20  # srv: bytes
    queue_length: float = 30.0
    mw_latency: int = 350
    mw_msgs: int = 8
    wait_timeout: int = 30000
    publish_notify: bool = False


@dataclass(frozen=True)
class PublishConfig:
    firstpkt_timeout: int = 20000
    normal_timeout: int = 5000
    # srv: what a second publisher of a stream gets: "reject" (SRS: NetStream.Publish.BadName)
    # or "takeover" (the first one is kicked and the new one publishes)
    second_publisher: str = "reject"
    # SRS's merged read: after a read of less than MR_SMALL_BYTES, pause the publisher's reads
    # for mr_latency ms (off: read as bytes arrive)
    mr: bool = False
    mr_latency: int = 350


@dataclass(frozen=True)
class SecurityConfig:
    """SRS's ``security { }``: allow/deny rules on the client's IP, per action (publish or play).

    Each rule is ``(action, target)``: ``target`` is ``all``, an IP or a CIDR (IPv4 or IPv6, srv
    adds IPv6), normalised. How they combine is SRS's, surprise included: see
    ``srv.app.access.security_check``.
    """

    enabled: bool = False
    allow: tuple[tuple[str, str], ...] = ()
    deny: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SignedUrlConfig:
    """srv's ``signed_url { }``: a ``?token=`` HMAC-SHA256 over action, vhost, app, stream and an
    expiry, required for the actions switched on. ``keys`` are ``(name, secret)``; every key
    listed is accepted (two at once while rotating). Secrets never appear in a repr."""

    enabled: bool = False
    publish: bool = True
    play: bool = False
    keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class PerIpConfig:
    """srv's ``per_ip { }`` limits, enforced by each worker for the connections it accepted
    (0 switches a limit off): concurrent connections, new connections per second with a burst,
    and a ban of ``ban_time`` seconds after ``ban_after`` refused auths within ``ban_window``."""

    max_connections: int = 0
    connect_rate: float = 0.0
    connect_burst: int = 10
    ban_after: int = 0
    ban_window: float = 60.0
    ban_time: float = 600.0


@dataclass(frozen=True)
class ForwardConfig:
    """One ``forward [pattern] { ... }`` block.

    SRS has one pattern-less ``forward`` per vhost; srv also allows several, each with an
    fnmatch pattern on ``app/stream``.  Every enabled block whose pattern matches applies.
    """

    pattern: str = "*"
    enabled: bool = False
    destinations: tuple[str, ...] = ()
    backend: str | None = None
    backoff_initial: int = 3000
    backoff_max: int = 3000
    queue_length: float = 10.0
    srv_via: str = "auto"  # "auto" (host[:port] slaves only), "on" (every destination), "off"
    allow_private: tuple[str, ...] = ()  # srv: "on", "off" or networks a backend destination may be in
    rtmps: bool = False  # SRS 7: host[:port] destinations are dialed over TLS (rtmps:// URLs always are)
    tls_verify: bool = True  # srv: check the destination's certificate and name
    tls_ca: str | None = None  # srv: CA file to check it against (default: the system's)

    def matches(self, app: str, stream: str) -> bool:
        return fnmatch.fnmatchcase(f"{app}/{stream}", self.pattern)


ORIGIN_PORT = 1935  # an origin written without a port


def origin_address(text: str) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` of an origin -> (host, port); RTMP's 1935 by default."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else ORIGIN_PORT
    host, sep, port = text.rpartition(":")
    return (host, int(port)) if sep else (text, ORIGIN_PORT)


@dataclass(frozen=True)
class ClusterConfig:
    """``vhost { cluster { } }`` (SRS): ``mode local`` serves its own streams (an origin);
    ``mode remote`` makes the vhost an edge of ``origins``: players pull from one of them,
    publishes are pushed to one of them (docs/cluster.md)."""

    mode: str = "local"  # "local" | "remote"
    origins: tuple[str, ...] = ()  # host[:port] each, tried round-robin
    token_traverse: bool = False  # ask the origin (connect with the client's tcUrl) first
    vhost: str | None = None  # the origin's vhost to fetch from (default: this vhost's name)

    @property
    def edge(self) -> bool:
        return self.mode == "remote" and bool(self.origins)


@dataclass(frozen=True)
class HttpRemuxConfig:
    enabled: bool = False
    mount: str = "[vhost]/[app]/[stream].flv"
    has_audio: bool = True
    has_video: bool = True
    guess_has_av: bool = True


@dataclass(frozen=True)
class HlsConfig:
    """SRS's ``hls { }``: HLS segments and playlists written by the worker owning the publisher.

    Field names drop SRS's ``hls_`` prefix (``hls_fragment`` fills ``fragment``).  Durations are
    seconds.  ``m3u8_file``, ``ts_file``, ``init_file`` and ``fmp4_file`` are relative to ``path``
    and take SRS's path variables (``srv.media.pathvars``).
    """

    enabled: bool = False
    fragment: float = 10.0
    td_ratio: float = 1.0
    aof_ratio: float = 2.1
    window: float = 60.0
    on_error: str = "continue"  # "ignore", "disconnect" or "continue" (SRS)
    path: str = "./objs/nginx/html"
    m3u8_file: str = "[app]/[stream].m3u8"
    ts_file: str = "[app]/[stream]-[seq].ts"
    entry_prefix: str = ""
    acodec: str = "aac"  # "aac", "mp3" or "an" (no audio)
    vcodec: str = "h264"  # "h264" or "vn" (no video); the stream's own codec wins when it has one
    cleanup: bool = True
    dispose: float = 120.0  # seconds after unpublish before every file is removed (0: never)
    wait_keyframe: bool = True
    ts_floor: bool = False
    nb_notify: int = 64  # bytes read from each on_hls_notify answer
    ctx: bool = True
    ts_ctx: bool = True
    use_fmp4: bool = False
    init_file: str = "[app]/[stream]-init.mp4"
    fmp4_file: str = "[app]/[stream]-[seq].m4s"
    ll: bool = False  # srv: Low-Latency HLS (parts, blocking reload); implies fMP4
    part: float = 0.2  # srv: part target duration (seconds) when ll


@dataclass(frozen=True)
class DvrConfig:
    """SRS's ``dvr { }``: every matching stream recorded to FLV or fragmented MP4 (docs/dvr.md).

    Field names drop SRS's ``dvr_`` prefix.  ``apply`` is ``("all",)`` or ``app/stream`` names;
    ``path`` takes SRS's path variables and its extension (.flv or .mp4) picks the container; a
    path without an extension is a folder that gets SRS's default name.  ``keep`` is srv's
    ``dvr_keep`` (age in seconds, total bytes; 0: no limit).
    """

    enabled: bool = False
    apply: tuple[str, ...] = ("all",)
    plan: str = "session"  # "session" (a file per publish) or "segment" (every `duration` s)
    path: str = "./objs/nginx/html/[app]/[stream].[timestamp].flv"
    duration: float = 30.0
    wait_keyframe: bool = True
    time_jitter: str = "full"  # "full", "zero" or "off" (SRS)
    keep: tuple[float, int] = (0.0, 0)  # dvr_keep: (max age in seconds, max total bytes); 0: no limit

    def applies(self, app: str, stream: str) -> bool:
        """Whether ``dvr_apply`` takes ``app/stream`` (SRS: ``all`` or the exact name)."""
        return "all" in self.apply or f"{app}/{stream}" in self.apply


@dataclass(frozen=True)
class HttpHooksConfig:
    """SRS's ``http_hooks { }``: URLs POSTed a JSON body at each event, called in order.

    ``on_connect``, ``on_publish`` and ``on_play`` decide (every URL must accept); the others
    only notify. ``on_hls`` and ``on_hls_notify`` follow each HLS segment (srv/net/hls.py);
    ``on_dvr`` each finished DVR file (srv/net/dvr.py). ``timeout`` is srv's (SRS's HTTP
    client has a fixed 30 s): seconds one call may take, the whole answer included.
    """

    enabled: bool = False
    on_connect: tuple[str, ...] = ()
    on_close: tuple[str, ...] = ()
    on_publish: tuple[str, ...] = ()
    on_unpublish: tuple[str, ...] = ()
    on_play: tuple[str, ...] = ()
    on_stop: tuple[str, ...] = ()
    on_dvr: tuple[str, ...] = ()
    on_hls: tuple[str, ...] = ()
    on_hls_notify: tuple[str, ...] = ()
    timeout: float = 30.0

    def urls(self, hook: str) -> tuple[str, ...]:
        """The URLs of `hook` ("on_publish", ...) when hooks are enabled, else ()."""
        urls: tuple[str, ...] = getattr(self, hook)
        return urls if self.enabled else ()


@dataclass(frozen=True)
class VhostConfig:
    name: str
    enabled: bool = True
    chunk_size: int | None = None
    min_latency: bool = False
    tcp_nodelay: bool = False
    play: PlayConfig = PlayConfig()
    publish: PublishConfig = PublishConfig()
    forwards: tuple[ForwardConfig, ...] = ()
    http_remux: HttpRemuxConfig = HttpRemuxConfig()
    hls: HlsConfig = HlsConfig()
    dvr: DvrConfig = DvrConfig()
    security: SecurityConfig = SecurityConfig()
    signed_url: SignedUrlConfig = SignedUrlConfig()
    http_hooks: HttpHooksConfig = HttpHooksConfig()
    cluster: ClusterConfig = ClusterConfig()

    def forwards_for(self, app: str, stream: str) -> tuple[ForwardConfig, ...]:
        """The enabled forward blocks that apply to ``app/stream``, in file order."""
        return tuple(f for f in self.forwards if f.enabled and f.matches(app, stream))


class VhostMap(Mapping[str, VhostConfig]):
    """An immutable, hashable, picklable ``name -> VhostConfig`` mapping in file order."""

    __slots__ = ("_items",)

    _items: dict[str, VhostConfig]

    def __init__(self, items: Iterable[tuple[str, VhostConfig]] = ()) -> None:
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, name: str) -> VhostConfig:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("VhostMap is immutable")

    def __reduce__(self) -> tuple[type[VhostMap], tuple[tuple[tuple[str, VhostConfig], ...]]]:
        return (VhostMap, (tuple(self._items.items()),))

    def __repr__(self) -> str:
        return f"VhostMap({list(self._items)!r})"


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerConfig:
    path: str
    listen: tuple[Endpoint, ...] = (Endpoint("0.0.0.0", 1935),)
    pid: str = "./objs/srs.pid"
    workers: int = field(default_factory=_cpu_count)
    daemon: bool = True
    srs_log_tank: str = "file"
    srs_log_level: str = "trace"
    srs_log_format: str = "text"  # srv: text (SRS's lines) or json
    srs_log_file: str = "./objs/srs.log"
    max_connections: int = 1000
    chunk_size: int = 60000
    grace_start_wait: int = 2300
    grace_final_wait: int = 3200
    handshake_timeout: int = 30000
    identify_timeout: int = 30000
    worker_timeout: float = 30.0
    force_grace_quit: bool = False
    pithy_print_ms: int = 10000
    # srv: peers allowed to send PROXY headers to a `proxy_protocol` listener (no one by default)
    proxy_protocol_trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    http_api: HttpApiConfig = HttpApiConfig()
    http_server: HttpServerConfig = HttpServerConfig()
    exporter: ExporterConfig = ExporterConfig()
    per_ip: PerIpConfig = PerIpConfig()
    rtmps: RtmpsConfig = RtmpsConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    proxy: ProxyConfig = ProxyConfig()
    vhosts: Mapping[str, VhostConfig] = field(default_factory=VhostMap)
    warnings: tuple[str, ...] = ()

    def vhost(self, name: str) -> VhostConfig | None:
        """The vhost called ``name``, else ``__defaultVhost__`` if defined, else None (SRS)."""
        found = self.vhosts.get(name)
        if found is not None:
            return found
        return self.vhosts.get(DEFAULT_VHOST)
