"""Forward targets: where a forwarded stream is published, and the loop policy (pure functions).

- `resolve()` turns a configured `destination` (or a URL a forward backend returned) into a
  `Target`, exactly as SRS builds its forward URL for `host[:port]`, with srv's `rtmp://` URL
  templates beside it. `rtmps://` URLs, and `host[:port]` under SRS 7's `rtmps on;`, are dialed
  over TLS (`Target.tls`); an `rtmps://` URL without a port means 443, as in ffmpeg and OBS.
- Loop protection: a forwarded publish carries `srv_via`, the ids of the servers it went
  through. `loop_refusal()` says why a publish must be refused (this server is in the chain, or
  it made MAX_HOPS hops). Whether a destination is sent `srv_via` at all is `sends_via()`:
  slaves named `host[:port]` (srv or SRS servers of one cluster) get it, third-party `rtmp://`
  URLs only when the block says `srv_via on;`.
- SRS's `on_forward` backend: the request body and the accept rule for its answer.

Nothing here does I/O: srv/net/forward.py connects, srv/net/hooks.py calls the backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from srv.conf.model import DEFAULT_VHOST
from srv.log import redact_url

VIA_PARAM = "srv_via"
MAX_HOPS = 8
LOOP_REASON = "forward loop"

# `srv_via` directive values: `auto` sends it to host[:port] slaves only
VIA_AUTO, VIA_ON, VIA_OFF = "auto", "on", "off"


@dataclass(frozen=True)
class Target:
    """A resolved destination: where to connect and what to publish."""

    host: str
    port: int
    app: str
    tc_url: str
    stream: str  # the publish name, with its query string
    tls: bool = False  # RTMPS

    @property
    def url(self) -> str:
        return f"{self.tc_url.partition('?')[0]}/{self.stream}"

    @property
    def name(self) -> str:
        """The publish name without its query."""
        return self.stream.partition("?")[0]


def upstream_via(params: dict[str, str]) -> list[str]:
    """The server ids a publish went through, from its `srv_via` query parameter."""
    return [s for s in params.get(VIA_PARAM, "").split(",") if s]


def loop_refusal(server_id: str, params: dict[str, str]) -> str | None:
    """Why a publish must be refused as a forward loop, or None."""
    via = upstream_via(params)
    if server_id in via:
        return f"{LOOP_REASON}: this server ({server_id}) is already in the chain {' -> '.join(via)}"
    if len(via) >= MAX_HOPS:
        return f"{LOOP_REASON}: {len(via)} forward hops (max {MAX_HOPS}): {' -> '.join(via)}"
    return None


def is_url(destination: str) -> bool:
    """An `rtmp://` or `rtmps://` URL (srv, a CDN, a streaming service) rather than SRS's `host[:port]`."""
    return "://" in destination


def sends_via(destination: str, mode: str) -> bool:
    """Whether a publish to `destination` carries `srv_via` (the block's `srv_via` directive).

    `auto` (the default): only `host[:port]` destinations, SRS's way of naming the slaves of a
    cluster; `rtmp://` URLs usually point at third parties, who have no use for srv's ids.
    """
    return mode == VIA_ON or (mode == VIA_AUTO and not is_url(destination))


def resolve(destination: str, vhost: str, app: str, stream: str, params: dict[str, str],
            via: list[str] | None, rtmps: bool = False) -> Target:
    """Turn a `destination` into a Target, as SRS builds its forward URL.

    `host[:port]`: same app, stream and query on the slave; tcUrl `rtmp://<vhost>:<port>/app`
    with the destination host when the vhost is the default one, and `vhost=` in the publish
    query for other vhosts (srs_net_url_encode_rtmp_url). `rtmp://host[:port]/app/stream?q`:
    `[vhost] [app] [stream] [param]` expand (param: the publisher's query, without `?`).
    With `via` (a list of server ids), `srv_via=<ids>` is appended for loop protection.
    `rtmps` (the block's `rtmps on;`) dials `host[:port]` over TLS; URLs say it by their scheme.
    """
    query = {k: v for k, v in params.items() if k != VIA_PARAM}
    param = urlencode(query)
    via_q = urlencode({VIA_PARAM: ",".join(via)}) if via else ""
    if not is_url(destination):
        host, sep, port_text = destination.rpartition(":")
        if not sep:
            host, port_text = destination, ""
        host = host.strip("[]")
        port = int(port_text) if port_text else 1935
        if vhost != DEFAULT_VHOST and "vhost" not in query:
            query["vhost"] = vhost
        tc_host = host if vhost == DEFAULT_VHOST else vhost
        tc_url = f"rtmp{'s' if rtmps else ''}://{_bracket(tc_host)}:{port}/{app}"
        return Target(host, port, app, tc_url, _with_query(stream, urlencode(query), via_q), rtmps)
    url = (destination.replace("[vhost]", vhost).replace("[app]", app)
           .replace("[stream]", stream).replace("[param]", param))
    parts = urlsplit(url)
    tls = parts.scheme == "rtmps"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if tls else 1935)
    path = parts.path.strip("/")
    dest_app, _, dest_stream = path.rpartition("/")
    if not dest_app:
        dest_app, dest_stream = dest_stream, stream
    tc_url = f"{parts.scheme}://{_bracket(host)}:{port}/{dest_app}"
    return Target(host, port, dest_app, tc_url, _with_query(dest_stream, parts.query, via_q), tls)


def _with_query(name: str, *queries: str) -> str:
    q = "&".join(s for s in queries if s)
    return f"{name}?{q}" if q else name


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---- SRS on_forward ---------------------------------------------------------------------------


def on_forward_body(server_id: str, client_id: str, ip: str, vhost: str, app: str, tc_url: str,
                    stream: str, params: dict[str, str]) -> dict[str, Any]:
    """The JSON body SRS POSTs to a forward `backend` (SrsHttpHooks::on_forward_backend)."""
    query = {k: v for k, v in params.items() if k != VIA_PARAM}
    return {
        "action": "on_forward", "server_id": server_id, "client_id": client_id, "ip": ip,
        "vhost": vhost, "app": app, "tcUrl": tc_url, "stream": stream,
        "param": f"?{urlencode(query)}" if query else "",
    }


def on_forward_urls(status: int, text: str) -> list[str]:
    """The destinations in a backend's answer; ValueError (why) unless SRS would accept it.

    SRS's rule: HTTP 200 and `{"code": 0, "data": {"urls": [...]}}` with rtmp:// URLs (srv: or rtmps://).
    """
    if status != 200:
        raise ValueError(f"HTTP {status}")
    try:
        answer = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {text[:80]!r}") from None
    code = answer.get("code") if isinstance(answer, dict) else answer
    if code != 0 or isinstance(code, bool):
        raise ValueError(f"code {code!r}")
    data = answer.get("data") if isinstance(answer, dict) else None
    urls = data.get("urls", []) if isinstance(data, dict) else []
    schemes = ("rtmp://", "rtmps://")
    if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(schemes) for u in urls):
        shown = [redact_url(u) if isinstance(u, str) else u for u in urls] if isinstance(urls, list) else urls
        raise ValueError(f"data.urls must be a list of rtmp:// or rtmps:// URLs, got {str(shown)[:200]}")
    return urls
