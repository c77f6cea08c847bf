"""Every directive srv implements, grouped by feature, next to the dataclass it fills.

This table is the meaning of the configuration language: ``builder`` validates a parsed tree
against it, ``env`` derives the SRS_* environment overrides from it, ``diff`` uses
``reloadable``, and a test checks each name appears in conf/full.conf.  Defaults are
declared once, on the dataclasses in ``model``; ``default`` here repeats them in config
spelling for docs and must agree (a test checks).
"""

from __future__ import annotations

from typing import Any

from srv.conf import values as v
from srv.conf.model import (
    ApiAuthConfig,
    ApiHttpsConfig,
    ClusterConfig,
    DvrConfig,
    ExporterConfig,
    ForwardConfig,
    HeartbeatConfig,
    HlsConfig,
    HttpApiConfig,
    HttpHooksConfig,
    HttpRemuxConfig,
    HttpsConfig,
    HttpServerConfig,
    PerIpConfig,
    PlayConfig,
    ProxyConfig,
    PublishConfig,
    RawApiConfig,
    RtmpsConfig,
    SecurityConfig,
    ServerConfig,
    SignedUrlConfig,
    VhostConfig,
)
from srv.conf.registry import MAIN, Registry, Spec

_ANY = (0, None)
_SOME = (1, None)

# --- process and logging: ServerConfig ---------------------------------------------------
_SERVER = [
    Spec("listen", (MAIN,), v.listen_address, nargs=_SOME, default="1935", example="1935 127.0.0.1:1936",
         join=v.listen_addresses,
         doc="RTMP listen addresses, [ip:]port each; the master keeps the sockets across reloads. "
             "An address followed by proxy_protocol expects a PROXY header (v1 or v2) first (srv)."),
    Spec("proxy_protocol_trusted", (MAIN,), v.network, nargs=_SOME, default="<none>",
         example="127.0.0.1 10.0.0.0/8 ::1",
         doc="load balancers (addresses, CIDR blocks) that may connect to a proxy_protocol listener; "
             "their PROXY header gives the client's address; anyone else is refused (srv)."),
    Spec("pid", (MAIN,), v.string, default="./objs/srs.pid", reloadable=False,
         doc="pid file; also what `-s reload|stop` signals."),
    Spec("workers", (MAIN,), v.integer(1, 1024), default="<cpu count>", example="4",
         doc="worker processes (srv, not SRS); default: one per CPU."),
    Spec("daemon", (MAIN,), v.flag, default="on", reloadable=False, example="off",
         doc="detach from the terminal at start."),
    Spec("srs_log_tank", (MAIN,), v.choice("console", "file"), default="file", reloadable=False,
         env_aliases=("SRS_LOG_TANK",), example="console", doc="where logs go: console or file."),
    Spec("srs_log_level", (MAIN,), v.choice("verbose", "info", "trace", "warn", "error"),
         default="trace", env_aliases=("SRS_LOG_LEVEL",), doc="verbose, info, trace, warn or error."),
    Spec("srs_log_format", (MAIN,), v.choice("text", "json"), default="text", env_aliases=("SRS_LOG_FORMAT",),
         example="json", doc="text (SRS's line format) or json: one JSON object per line with time, level, "
                             "worker, connection id, client, vhost/app/stream and event, for log shippers (srv)."),
    Spec("srs_log_file", (MAIN,), v.string, default="./objs/srs.log", reloadable=False,
         env_aliases=("SRS_LOG_FILE",), doc="log file when srs_log_tank is file."),
    Spec("max_connections", (MAIN,), v.integer(1, 1_000_000), default="1000",
         doc="connections per worker beyond which new ones are closed at once."),
    Spec("chunk_size", (MAIN,), v.integer(128, 65536), default="60000",
         doc="outgoing RTMP chunk size, 128 to 65536."),
    Spec("grace_start_wait", (MAIN,), v.milliseconds(), default="2300",
         doc="graceful stop: ms to keep accepting after SIGQUIT before closing listeners."),
    Spec("grace_final_wait", (MAIN,), v.milliseconds(), default="3200",
         doc="graceful stop: ms to let sessions finish before exiting."),
    Spec("handshake_timeout", (MAIN,), v.milliseconds(1), default="30000",
         doc="ms a new RTMP connection has to finish the handshake (srv; SRS's fixed 30 s)."),
    Spec("identify_timeout", (MAIN,), v.milliseconds(1), default="30000",
         doc="ms after the handshake (or after an unpublish) for an RTMP client to publish or play "
             "(srv; SRS's fixed 30 s for its identify phase)."),
    Spec("worker_timeout", (MAIN,), v.seconds(minimum=1.0), default="30", example="60",
         doc="seconds without a heartbeat before the master kills and replaces a worker (srv)."),
    Spec("force_grace_quit", (MAIN,), v.flag, default="off", example="on",
         doc="treat SIGTERM like SIGQUIT (graceful)."),
    Spec("pithy_print_ms", (MAIN,), v.milliseconds(1), default="10000",
         doc="interval of the periodic per-stream log lines."),
    Spec("http_api", (MAIN,), None, nargs=(0, 0), block=True, doc="HTTP API (/api/v1/...)."),
    Spec("http_server", (MAIN,), None, nargs=(0, 0), block=True, doc="HTTP server for files and HTTP-FLV."),
    Spec("exporter", (MAIN,), None, nargs=(0, 0), block=True, doc="Prometheus exporter."),
    Spec("per_ip", (MAIN,), None, nargs=(0, 0), block=True,
         doc="srv: limits per client IP (concurrent, rate, ban after failed auths)."),
    Spec("rtmps", (MAIN,), None, nargs=(0, 0), block=True, doc="RTMP over TLS (SRS 7)."),
    Spec("heartbeat", (MAIN,), None, nargs=(0, 0), block=True,
         doc="POST this server's identity and ports to a URL on an interval (SRS; docs/cluster.md)."),
    Spec("proxy", (MAIN,), None, nargs=(0, 0), block=True,
         doc="srv: run as an origin-cluster proxy in front of registered origins (docs/cluster.md)."),
    Spec("vhost", (MAIN,), v.vhost_name, nargs=(1, 1), block=True, multiple=True, field="vhosts",
         arg_field="name", example="__defaultVhost__",
         doc="a virtual host; __defaultVhost__ serves names no other vhost matches."),
]

# --- TLS files, shared by rtmps { } and the https { } blocks (docs/tls.md) --------------------
def _tls_files(context: str) -> list[Spec]:
    return [
        Spec("key", (context,), v.string, default="./conf/server.key",
             doc="PEM private key; re-read on every reload."),
        Spec("cert", (context,), v.string, default="./conf/server.crt",
             doc="PEM certificate (chain); re-read on every reload (new handshakes use it)."),
    ]


def _https(context: str, port: str) -> list[Spec]:
    return [Spec("enabled", (context,), v.flag, default="off", example="on"),
            Spec("listen", (context,), v.listen_address, nargs=(1, 2), default=port, join=v.one_listen_address,
                 doc="[ip:]port; followed by proxy_protocol, it expects a PROXY header before the TLS "
                     "handshake (srv)."),
            *_tls_files(context)]


# --- http_api { raw_api { } auth { } }: HttpApiConfig, RawApiConfig, ApiAuthConfig --------
_HTTP_API = [
    Spec("enabled", ("http_api",), v.flag, default="off", example="on"),
    Spec("listen", ("http_api",), v.listen_address, nargs=(1, 2), default="1985", example="1985",
         join=v.one_listen_address,
         doc="[ip:]port; followed by proxy_protocol, it expects a PROXY header first (srv)."),
    Spec("crossdomain", ("http_api",), v.flag, default="on", example="on",
         doc="answer CORS requests."),
    Spec("raw_api", ("http_api",), None, nargs=(0, 0), block=True, env=False),
    Spec("enabled", ("http_api.raw_api",), v.flag, default="off", example="on"),
    Spec("allow_reload", ("http_api.raw_api",), v.flag, default="off", example="on",
         doc="allow /api/v1/raw?rpc=reload."),
    Spec("allow_query", ("http_api.raw_api",), v.flag, default="off", example="on",
         doc="allow /api/v1/raw?rpc=query."),
    Spec("auth", ("http_api",), None, nargs=(0, 0), block=True, env=False,
         doc="HTTP Basic authentication of /api/... (SRS 5+)."),
    Spec("enabled", ("http_api.auth",), v.flag, default="off", example="on"),
    Spec("username", ("http_api.auth",), v.string, default='""', example="admin"),
    Spec("password", ("http_api.auth",), v.string, default='""', example="change-me",
         doc="compared in constant time; never logged."),
    Spec("https", ("http_api",), None, nargs=(0, 0), block=True, doc="the API over TLS on its own port."),
    *_https("http_api.https", "1990"),
]

# --- http_server { }: HttpServerConfig ----------------------------------------------------
_HTTP_SERVER = [
    Spec("enabled", ("http_server",), v.flag, default="off", example="on"),
    Spec("listen", ("http_server",), v.listen_address, nargs=(1, 2), default="8080", example="8080",
         join=v.one_listen_address,
         doc="[ip:]port; followed by proxy_protocol, it expects a PROXY header first (srv)."),
    Spec("dir", ("http_server",), v.string, default="./objs/nginx/html", doc="document root."),
    Spec("crossdomain", ("http_server",), v.flag, default="on", example="on"),
    Spec("https", ("http_server",), None, nargs=(0, 0), block=True,
         doc="HTTP-FLV and files over TLS on their own port."),
    *_https("http_server.https", "8088"),
]

# --- rtmps { }: RtmpsConfig (SRS 7) ---------------------------------------------------------
_RTMPS = [
    Spec("enabled", ("rtmps",), v.flag, default="off", example="on"),
    Spec("listen", ("rtmps",), v.listen_address, nargs=_SOME, default="1443", example="1443",
         join=v.listen_addresses,
         doc="RTMPS listen addresses, [ip:]port each; an address followed by proxy_protocol expects a "
             "PROXY header before the TLS handshake (srv)."),
    *_tls_files("rtmps"),
]

# --- exporter { }: ExporterConfig ---------------------------------------------------------
_EXPORTER = [
    Spec("enabled", ("exporter",), v.flag, default="off", example="on"),
    Spec("listen", ("exporter",), v.listen_address, nargs=(1, 2), default="9972", example="9972",
         join=v.one_listen_address,
         doc="[ip:]port; followed by proxy_protocol, it expects a PROXY header first (srv)."),
    Spec("label", ("exporter",), v.string, default='""', example="cn-beijing",
         doc="value of the label= label on every metric."),
    Spec("tag", ("exporter",), v.string, default='""', example="cn-edge",
         doc="value of the tag= label on every metric."),
]

# --- heartbeat { }: HeartbeatConfig (SRS; summaries is not implemented: a warning) ----------
_HEARTBEAT = [
    Spec("enabled", ("heartbeat",), v.flag, default="off", example="on"),
    Spec("interval", ("heartbeat",), v.seconds(0.1, 86400.0), default="9.9", example="9",
         doc="seconds between two POSTs, sent by the master (not each worker)."),
    Spec("url", ("heartbeat",), v.http_url, default="http://127.0.0.1:8085/api/v1/servers",
         example="http://127.0.0.1:12025/api/v1/srs/register",
         doc="where the JSON body {device_id, ip, server, service, pid[, rtmp, http, api]} is POSTed "
             "(http:// only); SRS_DEVICE_IP overrides the ip reported."),
    Spec("device_id", ("heartbeat",), v.string, default='""', example="origin1",
         doc="a label for this server, sent as device_id."),
    Spec("ports", ("heartbeat",), v.flag, default="off", example="on",
         doc="send the listen endpoints (rtmp, http, api): an origin-cluster proxy needs them."),
]

# --- proxy { }: ProxyConfig (srv; SRS 7's srs-proxy environment, as directives) -------------
_PROXY = [
    Spec("enabled", ("proxy",), v.flag, default="off", example="on",
         doc="this server is a proxy: RTMP and HTTP clients are relayed to the origin of their stream."),
    Spec("system_api", ("proxy",), v.endpoint, default="12025", example="12025",
         doc="[ip:]port of the register API (POST /api/v1/srs/register), SRS's PROXY_SYSTEM_API."),
    Spec("load_balancer", ("proxy",), v.choice("memory", "redis"), default="redis", example="redis",
         doc="where origins and stream owners live: memory (one proxy with one worker) or redis."),
    Spec("redis_host", ("proxy",), v.string, default="127.0.0.1"),
    Spec("redis_port", ("proxy",), v.port, default="6379"),
    Spec("redis_password", ("proxy",), v.string, default='""', example="change-me",
         doc="never logged."),
    Spec("redis_db", ("proxy",), v.integer(0, 1_000_000), default="0"),
    Spec("stream_ttl", ("proxy",), v.seconds(1.0, 3600.0), default="10",
         doc="seconds a stream's owner key lives unless its proxy refreshes it (every third of it)."),
    Spec("server_ttl", ("proxy",), v.seconds(1.0, 86400.0), default="30",
         doc="seconds an origin stays listed without a heartbeat (give it 3 heartbeat intervals)."),
    Spec("play_wait", ("proxy",), v.seconds(0.0, 3600.0), default="10",
         doc="seconds a player of a stream nobody publishes waits for its publisher."),
]

# --- vhost { }: VhostConfig ---------------------------------------------------------------
_VHOST = [
    Spec("enabled", ("vhost",), v.flag, default="on", example="on", doc="off rejects every client."),
    Spec("chunk_size", ("vhost",), v.integer(128, 65536), default="<global chunk_size>", example="60000"),
    Spec("min_latency", ("vhost",), v.flag, default="off", example="off",
         doc="low latency: each video frame is sent at once; audio and metadata wait for the next frame, "
             "at most min(mw_latency, 50) ms (mw_latency 0: every message at once)."),
    Spec("tcp_nodelay", ("vhost",), v.flag, default="off", example="off", doc="TCP_NODELAY on player sockets."),
    Spec("play", ("vhost",), None, nargs=(0, 0), block=True),
    Spec("publish", ("vhost",), None, nargs=(0, 0), block=True),
    Spec("forward", ("vhost",), v.stream_pattern, nargs=(0, 1), block=True, multiple=True,
         field="forwards", arg_field="pattern", env=False, example="live/game_*",
         doc="push matching streams to other servers (srv: may repeat, optional app/stream pattern)."),
    Spec("http_remux", ("vhost",), None, nargs=(0, 0), block=True),
    Spec("hls", ("vhost",), None, nargs=(0, 0), block=True,
         doc="SRS's HLS writer: segments and playlists under hls_path (see docs/hls.md)."),
    Spec("dvr", ("vhost",), None, nargs=(0, 0), block=True,
         doc="SRS's DVR: record streams to .flv or fragmented .mp4 files (see docs/dvr.md)."),
    Spec("security", ("vhost",), None, nargs=(0, 0), block=True,
         doc="SRS's allow/deny rules on the client IP (see docs/access.md)."),
    Spec("signed_url", ("vhost",), None, nargs=(0, 0), block=True, env=False,
         doc="srv: require an HMAC ?token= to publish and/or play (see docs/access.md)."),
    Spec("http_hooks", ("vhost",), None, nargs=(0, 0), block=True,
         doc="SRS's HTTP callbacks on_connect, on_publish, on_play... (see docs/hooks.md)."),
    Spec("cluster", ("vhost",), None, nargs=(0, 0), block=True,
         doc="SRS's origin/edge settings (see docs/cluster.md)."),
]

# --- vhost { cluster { } }: ClusterConfig (SRS) -------------------------------------------
_CLUSTER = [
    Spec("mode", ("vhost.cluster",), v.choice("local", "remote"), default="local", example="remote",
         doc="local: an origin, serving its own streams; remote: an edge of the origins below."),
    Spec("origin", ("vhost.cluster",), v.origin, nargs=_SOME, field="origins", default="<none>",
         example="127.0.0.1:19350 127.0.0.2:1935",
         doc="the edge's origins, host[:port] each; one at a time, the next on each reconnect; "
             "reloads without dropping players."),
    Spec("token_traverse", ("vhost.cluster",), v.flag, default="off", example="off",
         doc="edge: before admitting a client, connect to an origin with the client's tcUrl; "
             "the origin's refusal refuses the client."),
    Spec("vhost", ("vhost.cluster",), v.vhost_name, default="<this vhost>", example="same.edge.srs.com",
         doc="edge: the origin's vhost to pull from and push to."),
]

# --- vhost { security { } }: SecurityConfig (SRS) -----------------------------------------
_SECURITY = [
    Spec("enabled", ("vhost.security",), v.flag, default="off", example="on"),
    Spec("allow", ("vhost.security",), v.security_arg, nargs=(2, 2), multiple=True, env=False,
         default="<none>", example="play 127.0.0.1",
         doc="allow publish|play all|<ip>|<cidr>; IPv6 too (srv)."),
    Spec("deny", ("vhost.security",), v.security_arg, nargs=(2, 2), multiple=True, env=False,
         default="<none>", example="publish all", doc="deny publish|play all|<ip>|<cidr>."),
]

# --- vhost { signed_url { } }: SignedUrlConfig (srv) --------------------------------------
_SIGNED_URL = [
    Spec("enabled", ("vhost.signed_url",), v.flag, default="off", example="on"),
    Spec("publish", ("vhost.signed_url",), v.flag, default="on", doc="publishers need a token."),
    Spec("play", ("vhost.signed_url",), v.flag, default="off", example="off", doc="players need a token."),
    Spec("key", ("vhost.signed_url",), v.string, nargs=(2, 2), multiple=True, field="keys",
         default="<none>", example="k1 change-me-to-a-long-random-secret",
         doc="a signing key: name and secret; list two while rotating."),
]

# --- per_ip { }: PerIpConfig (srv) ---------------------------------------------------------
_PER_IP = [
    Spec("max_connections", ("per_ip",), v.integer(0, 1_000_000), default="0",
         doc="concurrent connections from one IP (0: no limit)."),
    Spec("connect_rate", ("per_ip",), v.seconds(0.0), default="0",
         doc="new connections per second from one IP (0: no limit)."),
    Spec("connect_burst", ("per_ip",), v.integer(1, 1_000_000), default="10",
         doc="new connections from one IP allowed at once above connect_rate."),
    Spec("ban_after", ("per_ip",), v.integer(0, 1_000_000), default="0",
         doc="refused auths (security, signed_url, http_hooks) from one IP within ban_window that ban it (0: never)."),
    Spec("ban_window", ("per_ip",), v.seconds(1.0), default="60",
         doc="seconds over which refused auths are counted."),
    Spec("ban_time", ("per_ip",), v.seconds(1.0), default="600",
         doc="seconds a ban lasts; connections from a banned IP are closed at once."),
]

# --- vhost { play { } }: PlayConfig -------------------------------------------------------
_PLAY = [
    Spec("gop_cache", ("vhost.play",), v.flag, default="on", example="on",
         doc="keep the last GOP so a new player starts at once."),
    Spec("gop_cache_max_frames", ("vhost.play",), v.integer(0), default="2500",
         doc="bound on GOP cache messages (0: no bound)."),
    Spec("gop_cache_max_size", ("vhost.play",), v.size, default="64m", example="64m",
         doc="srv: bound on GOP cache bytes (0: no bound); a longer GOP is not cached."),
    Spec("queue_length", ("vhost.play",), v.seconds(0.0), default="30",
         doc="seconds a player may fall behind; beyond it whole GOPs are dropped."),
    Spec("mw_latency", ("vhost.play",), v.milliseconds(), default="350",
         doc="merged write: ms of media gathered into one write per player."),
    Spec("mw_msgs", ("vhost.play",), v.integer(0), default="8",
         doc="merged write: messages gathered before a write."),
    Spec("wait_timeout", ("vhost.play",), v.milliseconds(), default="30000",
         doc="ms a player (RTMP or HTTP-FLV) may wait for a stream that has no publisher, before the "
             "first one or between two; then it is closed (srv; 0: wait forever, as SRS)."),
    Spec("publish_notify", ("vhost.play",), v.flag, default="off", example="off",
         doc="send NetStream.Play.PublishNotify/UnpublishNotify to RTMP players (nginx-rtmp's "
             "publish_notify); ffmpeg, ffplay, VLC and rtmpdump stop playing on UnpublishNotify."),
]

# --- vhost { publish { } }: PublishConfig -------------------------------------------------
_PUBLISH = [
    Spec("firstpkt_timeout", ("vhost.publish",), v.milliseconds(), default="20000",
         doc="ms to wait for a publisher's first packet."),
    Spec("normal_timeout", ("vhost.publish",), v.milliseconds(), default="5000",
         doc="ms of silence after which a publisher is dropped."),
    Spec("second_publisher", ("vhost.publish",), v.choice("reject", "takeover"), default="reject",
         doc="srv: a second publisher of a stream is refused (reject, SRS) or kicks the first (takeover)."),
    Spec("mr", ("vhost.publish",), v.flag, default="off", example="on",
         doc="merged read (SRS): after a small read from a publisher, wait mr_latency before reading "
             "again, so its bytes arrive in fewer, larger reads (less CPU, up to mr_latency more "
             "latency); off with min_latency on."),
    Spec("mr_latency", ("vhost.publish",), v.milliseconds(), default="350",
         doc="merged read: ms a publisher's reads pause after a small one."),
]

# --- vhost { forward [pattern] { } }: ForwardConfig ---------------------------------------
_FORWARD = [
    Spec("enabled", ("vhost.forward",), v.flag, default="off", example="on"),
    Spec("destination", ("vhost.forward",), v.destination, nargs=_SOME, field="destinations",
         default="<none>", example="127.0.0.1:1936 rtmp://cdn.example.com/live/[stream]?key=abc",
         doc="host[:port] (same app/stream) or rtmp:// URLs; [vhost] [app] [stream] expand."),
    Spec("backend", ("vhost.forward",), v.http_url, default="<none>",
         example="http://127.0.0.1:8085/api/v1/forward",
         doc="HTTP hook asked for the destination URLs of each stream."),
    Spec("backoff_initial", ("vhost.forward",), v.milliseconds(), default="3000",
         doc="ms before the first reconnect (srv)."),
    Spec("backoff_max", ("vhost.forward",), v.milliseconds(), default="3000",
         doc="reconnect delay doubles up to this many ms (srv)."),
    Spec("queue_length", ("vhost.forward",), v.seconds(0.0), default="10",
         doc="seconds of media queued for a slow destination (srv)."),
    Spec("allow_private", ("vhost.forward",), v.flag_or_network, nargs=_SOME, default="<none>",
         example="10.0.0.0/8 fd00::/8",
         doc="backend destinations may resolve to loopback, link-local or private addresses: on "
             "(all), or only these networks (srv; config destinations are always trusted)."),
    Spec("srv_via", ("vhost.forward",), v.choice("auto", "on", "off"), default="auto", example="on",
         doc="send the srv_via loop-protection parameter: auto = to host[:port] slaves only, "
             "not to rtmp:// URLs (srv)."),
    Spec("rtmps", ("vhost.forward",), v.flag, default="off", example="on",
         doc="dial host[:port] destinations over TLS (SRS 7); rtmps:// URLs always are."),
    Spec("tls_verify", ("vhost.forward",), v.flag, default="on", example="on",
         doc="check a TLS destination's certificate and host name (srv)."),
    Spec("tls_ca", ("vhost.forward",), v.string, default="<system CAs>", example="./conf/ca.crt",
         doc="CA file a TLS destination's certificate is checked against (srv)."),
]

# --- vhost { http_remux { } }: HttpRemuxConfig --------------------------------------------
_HTTP_REMUX = [
    Spec("enabled", ("vhost.http_remux",), v.flag, default="off", example="on"),
    Spec("mount", ("vhost.http_remux",), v.string, default="[vhost]/[app]/[stream].flv",
         doc="URL path of HTTP-FLV streams; [vhost] [app] [stream] expand."),
    Spec("has_audio", ("vhost.http_remux",), v.flag, default="on", example="on",
         doc="the FLV header's audio flag when guess_has_av is off."),
    Spec("has_video", ("vhost.http_remux",), v.flag, default="on", example="on",
         doc="the FLV header's video flag when guess_has_av is off."),
    Spec("guess_has_av", ("vhost.http_remux",), v.flag, default="on", example="on",
         doc="set the FLV header's flags from the tracks the stream sends before its first frame."),
]

# --- vhost { hls { } }: HlsConfig (SRS; fields drop the hls_ prefix) ------------------------
_HLS_CTX = ("vhost.hls",)
_HLS = [
    Spec("enabled", _HLS_CTX, v.flag, default="off", example="on"),
    Spec("hls_fragment", _HLS_CTX, v.seconds(0.1, 3600.0), field="fragment", default="10",
         doc="seconds of media per segment; cut on the next keyframe after fragment * hls_td_ratio."),
    Spec("hls_td_ratio", _HLS_CTX, v.seconds(0.1, 100.0), field="td_ratio", default="1",
         doc="EXT-X-TARGETDURATION = hls_td_ratio * hls_fragment, fixed for the playlist's life (srv)."),
    Spec("hls_aof_ratio", _HLS_CTX, v.seconds(0.1, 100.0), field="aof_ratio", default="2.1",
         doc="an audio-only stream is cut at hls_aof_ratio * hls_fragment."),
    Spec("hls_window", _HLS_CTX, v.seconds(0.1, 86400.0), field="window", default="60",
         doc="seconds of segments listed in the playlist."),
    Spec("hls_on_error", _HLS_CTX, v.choice("ignore", "disconnect", "continue"), field="on_error",
         default="continue",
         doc="on a write error: ignore (stop HLS for the stream), disconnect (the publisher) or "
             "continue (retry at the next segment)."),
    Spec("hls_path", _HLS_CTX, v.string, field="path", default="./objs/nginx/html",
         doc="folder the files are written under."),
    Spec("hls_m3u8_file", _HLS_CTX, v.string, field="m3u8_file", default="[app]/[stream].m3u8",
         doc="playlist path under hls_path; SRS's path variables expand."),
    Spec("hls_ts_file", _HLS_CTX, v.string, field="ts_file", default="[app]/[stream]-[seq].ts",
         doc="segment path under hls_path; [seq] [timestamp] [duration] and the date variables expand."),
    Spec("hls_entry_prefix", _HLS_CTX, v.string, field="entry_prefix", default='""',
         example="http://cdn.example.com", doc="prefix of segment URIs in the playlist."),
    Spec("hls_acodec", _HLS_CTX, v.choice("aac", "mp3", "an"), field="acodec", default="aac",
         doc="audio codec assumed before the stream says (an: no audio)."),
    Spec("hls_vcodec", _HLS_CTX, v.choice("h264", "vn"), field="vcodec", default="h264",
         doc="video codec assumed before the stream says (vn: no video)."),
    Spec("hls_cleanup", _HLS_CTX, v.flag, field="cleanup", default="on",
         doc="delete segments that have left the playlist (after RFC 8216's grace time)."),
    Spec("hls_dispose", _HLS_CTX, v.seconds(0.0, 86400.0 * 365), field="dispose", default="120",
         doc="seconds after the publisher leaves before the playlist and segments are removed (0: never)."),
    Spec("hls_wait_keyframe", _HLS_CTX, v.flag, field="wait_keyframe", default="on",
         doc="cut segments only on keyframes."),
    Spec("hls_ts_floor", _HLS_CTX, v.flag, field="ts_floor", default="off",
         doc="SRS's floor mode: [timestamp] is the fragment-aligned time."),
    Spec("hls_nb_notify", _HLS_CTX, v.integer(0, 1_000_000), field="nb_notify", default="64",
         doc="bytes read from each on_hls_notify answer."),
    Spec("hls_ctx", _HLS_CTX, v.flag, field="ctx", default="on",
         doc="track HLS players: a playlist request gets a session (?hls_ctx=), runs security and on_play."),
    Spec("hls_ts_ctx", _HLS_CTX, v.flag, field="ts_ctx", default="on",
         doc="carry the session on segment URIs too."),
    Spec("hls_use_fmp4", _HLS_CTX, v.flag, field="use_fmp4", default="off",
         doc="fMP4 (CMAF) segments instead of MPEG-TS."),
    Spec("hls_init_file", _HLS_CTX, v.string, field="init_file", default="[app]/[stream]-init.mp4",
         doc="fMP4 init segment path under hls_path."),
    Spec("hls_fmp4_file", _HLS_CTX, v.string, field="fmp4_file", default="[app]/[stream]-[seq].m4s",
         doc="fMP4 media segment path under hls_path."),
    Spec("hls_ll", _HLS_CTX, v.flag, field="ll", default="off", example="on",
         doc="Low-Latency HLS: partial segments, preload hints, blocking playlist reload, delta "
             "playlists; needs fMP4 (srv, not SRS; docs/hls.md)."),
    Spec("hls_part", _HLS_CTX, v.seconds(0.05, 5.0), field="part", default="0.2",
         doc="LL-HLS part target duration in seconds, under hls_fragment * hls_td_ratio (srv)."),
]

# --- vhost { dvr { } }: DvrConfig (SRS; fields drop the dvr_ prefix) ------------------------
_DVR_CTX = ("vhost.dvr",)


def _keep(args: list[Any]) -> tuple[float, int]:
    """``dvr_keep 7d;``, ``dvr_keep 10g;`` or both: (keep_seconds, keep_bytes)."""
    found = dict(args)
    if len(found) != len(args):
        raise ValueError("dvr_keep takes at most one age and one size")
    return found.get("seconds", 0.0), int(found.get("bytes", 0))


_DVR = [
    Spec("enabled", _DVR_CTX, v.flag, default="off", example="on"),
    Spec("dvr_apply", _DVR_CTX, v.string, nargs=_SOME, field="apply", default="all",
         example="live/stream1 live/stream2",
         doc="all, or the app/stream names to record."),
    Spec("dvr_plan", _DVR_CTX, v.choice("session", "segment"), field="plan", default="session",
         doc="session: one file per publish; segment: a new file every dvr_duration seconds."),
    Spec("dvr_path", _DVR_CTX, v.string, field="path",
         default="./objs/nginx/html/[app]/[stream].[timestamp].flv",
         doc="the file; .flv or .mp4 picks the container; a folder gets [app]/[stream].[timestamp].flv."),
    Spec("dvr_duration", _DVR_CTX, v.seconds(1.0, 86400.0), field="duration", default="30",
         doc="segment plan: seconds per file."),
    Spec("dvr_wait_keyframe", _DVR_CTX, v.flag, field="wait_keyframe", default="on",
         doc="segment plan: cut on the first keyframe past dvr_duration (off: on any frame)."),
    Spec("time_jitter", _DVR_CTX, v.choice("full", "zero", "off"), default="full",
         doc="full: each file starts at 0 and its time never goes back; zero: starts at 0; off: as published."),
    Spec("dvr_keep", _DVR_CTX, v.keep_limit, nargs=(1, 2), field="keep", default="<all>", example="7d 50g",
         join=_keep, doc="srv: remove the oldest recordings past an age (3600, 12h, 7d) and/or a size (500m, 10g)."),
]

# --- vhost { http_hooks { } }: HttpHooksConfig --------------------------------------------
_HOOK_DOCS = {
    "on_connect": "a client connects (decides: every URL must accept, else NetConnection.Connect.Rejected).",
    "on_close": "a client that connected leaves (notification).",
    "on_publish": "a client starts publishing (decides: else NetStream.Publish.Unauthorized).",
    "on_unpublish": "a publish ends (notification).",
    "on_play": "a client starts playing, RTMP or HTTP-FLV (decides: else NetStream.Play.Failed or HTTP 403).",
    "on_stop": "a play ends (notification).",
    "on_dvr": "a DVR file is closed and renamed to its final name (notification; fields cwd, file).",
    "on_hls": "an HLS segment is written and listed (notification: duration, file, url, m3u8, seq_no ...).",
    "on_hls_notify": "GET after each HLS segment ([app] [stream] [ts_url] [param] expand; hls_nb_notify bytes read).",
}
_HTTP_HOOKS = [
    Spec("enabled", ("vhost.http_hooks",), v.flag, default="off", example="on"),
    *(Spec(name, ("vhost.http_hooks",), v.http_url, nargs=_SOME, default="<none>",
           example=f"http://127.0.0.1:8085/api/v1/{name}", doc=doc) for name, doc in _HOOK_DOCS.items()),
    Spec("timeout", ("vhost.http_hooks",), v.seconds(0.1, 3600.0), default="30",
         doc="srv: seconds one hook call may take, the whole answer included (SRS: a fixed 30)."),
]

SECTIONS: dict[str, type[Any]] = {
    MAIN: ServerConfig,
    "http_api": HttpApiConfig,
    "http_api.raw_api": RawApiConfig,
    "http_api.auth": ApiAuthConfig,
    "http_server": HttpServerConfig,
    "http_api.https": ApiHttpsConfig,
    "http_server.https": HttpsConfig,
    "rtmps": RtmpsConfig,
    "exporter": ExporterConfig,
    "heartbeat": HeartbeatConfig,
    "proxy": ProxyConfig,
    "vhost": VhostConfig,
    "vhost.play": PlayConfig,
    "vhost.publish": PublishConfig,
    "vhost.forward": ForwardConfig,
    "vhost.http_remux": HttpRemuxConfig,
    "vhost.hls": HlsConfig,
    "vhost.dvr": DvrConfig,
    "vhost.security": SecurityConfig,
    "vhost.signed_url": SignedUrlConfig,
    "per_ip": PerIpConfig,
    "vhost.http_hooks": HttpHooksConfig,
    "vhost.cluster": ClusterConfig,
}

REGISTRY = Registry(
    [*_SERVER, *_HTTP_API, *_HTTP_SERVER, *_RTMPS, *_EXPORTER, *_HEARTBEAT, *_PROXY, *_VHOST, *_PLAY,
     *_PUBLISH, *_FORWARD, *_HTTP_REMUX, *_HLS, *_DVR, *_SECURITY, *_SIGNED_URL, *_PER_IP, *_HTTP_HOOKS,
     *_CLUSTER],
    SECTIONS,
)
