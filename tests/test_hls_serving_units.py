"""The pure parts of HLS serving: which file a URL names (SRS's path variables), the headers,
SRS's variant playlist and the ctx rewriting, and the signed, cross-worker hls_ctx."""

from __future__ import annotations

import dataclasses
import time

from srv.app.hls_viewers import HlsViewer, HlsViewers, Visit, owner_of, sign
from srv.conf.model import HlsConfig, VhostConfig
from srv.http.hls import Kind, cache_control, match_hls, variant, with_ctx

SECRET = b"k" * 32


def vhost(**hls: object) -> VhostConfig:
    return dataclasses.replace(VhostConfig(name="__defaultVhost__"),
                               hls=dataclasses.replace(HlsConfig(enabled=True), **hls))  # type: ignore[arg-type]


def test_urls_are_paths_relative_to_hls_path_named_by_the_templates() -> None:
    v = vhost()
    url = match_hls(v, "/live/s.m3u8")
    assert url is not None and (url.kind, url.app, url.stream) == (Kind.PLAYLIST, "live", "s")
    url = match_hls(v, "/a/b/s-12.ts")
    assert url is not None and (url.kind, url.app, url.stream) == (Kind.SEGMENT, "a/b", "s")
    assert url.key == "__defaultVhost__/a/b/s"
    dated = vhost(ts_file="[app]/[stream]/[2006][01][02]/[15][04][05]-[seq]-[timestamp].ts",
                  m3u8_file="[vhost]/[app]/[stream]/index.m3u8")
    url = match_hls(dated, "/live/cam/20261129/220101-7-1796000000000.ts")
    assert url is not None and (url.app, url.stream) == ("live", "cam")
    url = match_hls(dated, "/__defaultVhost__/live/cam/index.m3u8")
    assert url is not None and (url.app, url.stream) == ("live", "cam")
    # a segment that follows no template is still an HLS file, counted for no stream
    url = match_hls(v, "/live/other.ts")
    assert url is not None and url.key == ""
    assert match_hls(v, "/live/s.flv") is None and match_hls(v, "/index.html") is None
    assert match_hls(dataclasses.replace(v, hls=HlsConfig(enabled=False)), "/live/s.m3u8") is None


def test_playlists_and_init_are_revalidated_segments_are_immutable() -> None:
    v = vhost(dispose=0.0)
    assert cache_control(match_hls(v, "/live/s.m3u8")) == b"no-cache"  # type: ignore[arg-type]
    assert cache_control(match_hls(v, "/live/s-init.mp4")) == b"no-cache"  # type: ignore[arg-type]
    assert cache_control(match_hls(v, "/live/s-3.m4s")) == b"public, max-age=86400, immutable"  # type: ignore[arg-type]
    assert cache_control(match_hls(vhost(), "/live/s-3.ts")) == b"public, max-age=120, immutable"  # type: ignore[arg-type]


def test_variant_is_srs_one_entry_master_playlist_with_the_viewers_query() -> None:
    body = variant("/live/s.m3u8", "1-2-abc", [("token", "t"), ("hls_ctx", "old"), ("a", "b c")])
    assert body == (b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n"
                    b"/live/s.m3u8?hls_ctx=1-2-abc&token=t&a=b+c\n")


def test_with_ctx_marks_every_uri_and_nothing_else() -> None:
    playlist = (b"#EXTM3U\r\n#EXT-X-MAP:URI=\"s-init.mp4\"\r\n#EXTINF:2.0,\r\ns-1.m4s\r\n"
                b"#EXT-X-PROGRAM-DATE-TIME:2026-11-29T22:00:00.000Z\r\n#EXTINF:2.0,\r\nhttp://cdn/s-2.ts?x=1\r\n")
    assert with_ctx(playlist, "C") == (
        b"#EXTM3U\r\n#EXT-X-MAP:URI=\"s-init.mp4?hls_ctx=C\"\r\n#EXTINF:2.0,\r\ns-1.m4s?hls_ctx=C\r\n"
        b"#EXT-X-PROGRAM-DATE-TIME:2026-11-29T22:00:00.000Z\r\n#EXTINF:2.0,\r\nhttp://cdn/s-2.ts?x=1&hls_ctx=C\r\n")


def test_a_ctx_names_its_worker_and_holds_only_for_its_stream_and_server() -> None:
    ctx = sign(SECRET, "2-17", "v/live/s", "0a0b0c0d")
    assert owner_of(SECRET, ctx, "v/live/s") == (2, "2-17")
    assert owner_of(SECRET, ctx, "v/live/t") is None
    assert owner_of(b"x" * 32, ctx, "v/live/s") is None
    assert owner_of(SECRET, ctx[:-1] + ("0" if ctx[-1] != "0" else "1"), "v/live/s") is None
    assert owner_of(SECRET, "3" + ctx[1:], "v/live/s") is None  # another worker's id
    assert owner_of(SECRET, ctx.replace(".0a0b0c0d", ".0a0b0c0e"), "v/live/s") is None  # another run's
    for junk in ("", "-", "a-b-c", "1-1", "--" + "0" * 16, "1-1-" + "0" * 16, "1-1.-" + "0" * 16):
        assert owner_of(SECRET, junk, "v/live/s") is None


def test_a_respawned_worker_never_hands_out_a_ctx_its_previous_run_gave() -> None:
    """A new worker in the same slot counts client ids from 1 again: the dead worker's viewers
    must not become the new worker's viewers of the same number (they are new viewers)."""
    dead, respawned = HlsViewers(SECRET, 1), HlsViewers(SECRET, 1)
    old = dead.ctx_for("1-1", "v/live/s")
    new = respawned.ctx_for("1-1", "v/live/s")
    assert old != new
    assert owner_of(SECRET, old, "v/live/s") == owner_of(SECRET, new, "v/live/s") == (1, "1-1")
    respawned.open(HlsViewer("1-1", new, "v/live/s", "v", "127.0.0.1", "/live/s.m3u8", "http://h/live", timeout=4))
    assert respawned.visit(new, 0, time.monotonic()) is Visit.ALIVE
    assert respawned.visit(old, 0, time.monotonic()) is Visit.UNKNOWN


def test_viewers_live_on_their_owner_and_collect_bytes_served_elsewhere() -> None:
    one, two = HlsViewers(SECRET, 1), HlsViewers(SECRET, 2)
    ctx = sign(SECRET, "1-1", "k", "r1")
    viewer = HlsViewer("1-1", ctx, "k", "v", "127.0.0.1", "/live/s.m3u8", "http://h/live", timeout=4)
    viewer.seen = 100.0
    one.open(viewer)
    two.served(ctx, 1, 500)  # a segment worker 2 served
    two.count("k", 500)
    assert one.visit(ctx, two.take_pending(ctx), 102.0) is Visit.ALIVE and viewer.sent == 500
    assert two.take_pending(ctx) == 0 and two.figures() == {"k": [1, 500]}
    two.served(ctx, 1, 300)
    two.served(sign(SECRET, "3-9", "k", "r3"), 3, 7)
    owed = two.take_all_pending()
    assert owed == {1: {ctx: 300}, 3: {sign(SECRET, "3-9", "k", "r3"): 7}} and two.take_all_pending() == {}
    one.add_sent(owed[1])
    assert viewer.sent == 800
    assert one.expired(105.0) == [] and one.expired(106.5) == [viewer]
    assert one.visit(ctx, 0, 107.0) is Visit.UNKNOWN
    kicked: list[HlsViewer] = []
    viewer.kicked = kicked.append
    viewer.seen = 200.0
    one.open(viewer)
    viewer.kick("api")
    viewer.kick("api")
    assert kicked == [viewer] and one.visit(ctx, 0, 201.0) is Visit.EOF
    assert one.expired(203.0) == [] and one.expired(204.5) == [viewer]  # a kicked one does not renew
