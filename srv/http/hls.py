"""HLS files over HTTP, from every worker: which file a URL names, its headers, and SRS's
`hls_ctx` playlists.

URL mapping, as SRS (which writes HLS under its HTTP root): the URL path is the file's path
relative to the vhost's `hls_path`, so `hls_m3u8_file [app]/[stream].m3u8` is
`GET /live/s.m3u8` and `hls_ts_file [app]/[stream]-[seq].ts` is `GET /live/s-3.ts`. The vhost is
the request's `Host` (or `?vhost=`), as for HTTP-FLV. A `.m3u8`, `.ts`, `.m4s` or `.mp4` URL
is looked up under that vhost's `hls_path` first (when its `hls` is enabled), then under
`http_server.dir` as any static file; both go through `static.resolve`, so no URL leads out
of either folder. The app and stream of a file come from matching the URL against the
vhost's templates (`hls_m3u8_file`, `hls_ts_file`, `hls_fmp4_file`, `hls_init_file`; SRS's
path variables); a playlist that matches none is named like SRS does (app: its folder,
stream: its name without `.m3u8`).

Headers: playlists and init segments `Cache-Control: no-cache` (they change under the same
name); media segments `max-age` of `hls_dispose` (or a day) with `immutable`, since a name is
never written twice within a stream's life; a playlist made for one viewer (it carries its
ctx) is `private, no-store`. Content types: `.m3u8` `application/vnd.apple.mpegurl`, `.ts`
`video/mp2t`, `.m4s` `video/iso.segment`, `.mp4` `video/mp4`.

`hls_ctx on` (SRS's default): the text of playlists is rewritten here, never on disk. Without
a valid `?hls_ctx=` the request is a new viewer (`HlsViewers`); `variant` is SRS's answer,
a one-entry master playlist pointing at `<path>?hls_ctx=<ctx>&<the rest of the query>`. With
`hls_ts_ctx on` every URI of the playlist gets `hls_ctx=<ctx>` (`with_ctx`), so segment
requests are counted for the viewer. `hls_ctx off`: a playlist is a plain file (for CDNs).
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlencode

from srv.app.paths import safe_name
from srv.conf.model import DEFAULT_VHOST, VhostConfig

CTX_PARAM = "hls_ctx"
NO_CACHE = b"no-cache"
PRIVATE = b"private, no-store"
SEGMENT_MAX_AGE = 86400  # seconds, when hls_dispose is 0 (files kept until cleanup)
DIGITS = ("[seq]", "[duration]", "[timestamp]", "[2006]", "[01]", "[02]", "[15]", "[04]", "[05]", "[999]")


class Kind(Enum):
    PLAYLIST = "playlist"
    SEGMENT = "segment"
    INIT = "init"


EXTENSIONS = {".m3u8": Kind.PLAYLIST, ".ts": Kind.SEGMENT, ".m4s": Kind.SEGMENT, ".mp4": Kind.INIT}


class HlsUrl(NamedTuple):
    """A URL that may name a file of a vhost's `hls_path`."""

    kind: Kind
    vhost: VhostConfig
    app: str  # "" when the name follows none of the templates (counted for no stream)
    stream: str

    @property
    def key(self) -> str:
        return f"{self.vhost.name}/{self.app}/{self.stream}" if self.app and self.stream else ""


@lru_cache(maxsize=256)
def template_pattern(template: str, vhost: str) -> re.Pattern[str]:
    """The regex of URL paths a path template names (groups: app, stream)."""
    rx = re.escape("/" + template.lstrip("/"))
    rx = rx.replace(re.escape("[vhost]"), re.escape(safe_name(vhost)))
    for name, group in (("app", ".+?"), ("stream", "[^/]+?")):
        var = re.escape(f"[{name}]")
        rx = rx.replace(var, f"(?P<{name}>{group})", 1).replace(var, f"(?P={name})")
    for var in DIGITS:
        rx = rx.replace(re.escape(var), r"\d+")
    return re.compile(rx)


def template_of(vhost: VhostConfig, kind: Kind, path: str) -> str:
    hls = vhost.hls
    if kind is Kind.PLAYLIST:
        return hls.m3u8_file
    if kind is Kind.INIT:
        return hls.init_file
    return hls.fmp4_file if path.endswith(".m4s") else hls.ts_file


def match_hls(vhost: VhostConfig, path: str) -> HlsUrl | None:
    """What `path` names among `vhost`'s HLS files, or None (not an HLS file type, HLS off).
    Remembered per path (every viewer asks for the same few), for this `vhost` object: a
    reload's new config is matched afresh."""
    held = _MATCHED.get(path)
    if held is not None and held[0] is vhost:
        return held[1]
    url = _match(vhost, path)
    if len(_MATCHED) >= MATCHED_MAX:
        _MATCHED.clear()
    _MATCHED[path] = (vhost, url)
    return url


MATCHED_MAX = 4096
_MATCHED: dict[str, tuple[VhostConfig, HlsUrl | None]] = {}


def _match(vhost: VhostConfig, path: str) -> HlsUrl | None:
    if not vhost.hls.enabled:
        return None
    dot = path.rfind(".")
    kind = EXTENSIONS.get(path[dot:].lower()) if dot >= 0 else None
    if kind is None:
        return None
    m = template_pattern(template_of(vhost, kind, path), vhost.name).fullmatch(path)
    if m is not None and "app" in m.groupdict() and "stream" in m.groupdict():
        return HlsUrl(kind, vhost, m.group("app"), m.group("stream"))
    if kind is Kind.PLAYLIST:  # SRS: app is the folder, stream the file's name
        folder, _, name = path.rpartition("/")
        return HlsUrl(kind, vhost, folder.strip("/"), name[:-len(".m3u8")])
    return HlsUrl(kind, vhost, "", "")


def cache_control(url: HlsUrl) -> bytes:
    if url.kind is Kind.SEGMENT:
        return _segment_cache_control(int(url.vhost.hls.dispose) or SEGMENT_MAX_AGE)
    return NO_CACHE


@lru_cache(maxsize=64)
def _segment_cache_control(age: int) -> bytes:
    return f"public, max-age={age}, immutable".encode()


def variant(path: str, ctx: str, query: list[tuple[str, str]]) -> bytes:
    """SRS's playlist for a new viewer: one variant, the same path with its ctx."""
    rest = [(k, v) for k, v in query if k != CTX_PARAM]
    tail = f"&{urlencode(rest)}" if rest else ""
    return (f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n"
            f"{path}?{CTX_PARAM}={ctx}{tail}\n").encode()


def _add_ctx(uri: str, ctx: str) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{CTX_PARAM}={ctx}"


_MAP_URI = re.compile(r'(URI=")([^"]*)(")')
# tags whose URI names a file of the stream (LL-HLS: parts and the preload hint)
_URI_TAGS = ("#EXT-X-MAP:", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:")


def with_ctx(playlist: bytes, ctx: str) -> bytes:
    """`playlist` with `hls_ctx=<ctx>` on every URI: segment lines, `EXT-X-MAP`'s and (LL-HLS)
    `EXT-X-PART`'s and `EXT-X-PRELOAD-HINT`'s."""
    out = []
    for line in playlist.decode("utf-8", "replace").split("\n"):
        bare = line.rstrip("\r")
        if bare and not bare.startswith("#"):
            line = _add_ctx(bare, ctx) + line[len(bare):]
        elif bare.startswith(_URI_TAGS):
            line = _MAP_URI.sub(lambda m: m.group(1) + _add_ctx(m.group(2), ctx) + m.group(3), line)
        out.append(line)
    return "\n".join(out).encode()


def vhost_name(host: str, query: dict[str, str]) -> str:
    """The vhost a request names: `?vhost=`, else its Host without the port (as HTTP-FLV)."""
    return query.get("vhost") or host.rsplit(":", 1)[0].strip("[]") or DEFAULT_VHOST
