"""HEVC and AV1 over HLS, published as Enhanced RTMP by a real encoder: the static ffmpeg 9 of
the PyPI wheel `imageio-ffmpeg` (libx265, SVT-AV1; Debian's ffmpeg 5.1 cannot publish them).

- fMP4 (`hls_use_fmp4 on`): the init segment named by EXT-X-MAP has the `hvc1` (+ `mp4a`) or
  `av01` (+ `Opus`) sample entries, and ffmpeg decodes the init segment followed by every
  listed segment without a word;
- MPEG-TS: HEVC goes in as stream_type 0x24 (AAC as 0x0F) in the PMT of every segment, and the
  segments decode; AV1 + Opus in a TS configuration are written as fMP4 (with a warning).
- AV1 + Opus in fMP4 also plays in Chromium with the vendored hls.js.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import m3u8
import pytest
from browser import Browser
from conftest import Clients, Server, wait_for
from test_browser_players import assert_plays, open_player, wait_playing, watch
from test_enhanced_rtmp_ffmpeg import FFMPEG9, QUIET, publish9
from test_media_fmp4 import boxes, find
from test_media_mpegts import section_of, ts_packets

pytestmark = pytest.mark.timeout(240)
SAMPLE_ENTRIES = {"hevc": {b"hvc1", b"mp4a"}, "av1": {b"av01", b"Opus"}}
TS_STREAM_TYPES = {"hevc": {0x24, 0x0F}}


def hls_vhost(fmp4: bool) -> str:
    return ("vhost __defaultVhost__ { hls { enabled on; hls_fragment 2; hls_window 10; hls_path .; "
            f"hls_dispose 0; hls_use_fmp4 {'on' if fmp4 else 'off'}; }} }}\n")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()  # type: ignore[no-any-return]


def playlist_with(server: Server, name: str, segments: int) -> tuple[str, m3u8.M3U8]:
    url = f"http://127.0.0.1:{server.http_port}/live/{name}.m3u8"

    def ready() -> m3u8.M3U8 | None:
        try:
            p = m3u8.loads(fetch(url).decode(), uri=url)
            if p.is_variant:  # hls_ctx on (the default): the variant names the viewer's playlist
                media = p.playlists[0].absolute_uri
                p = m3u8.loads(fetch(media).decode(), uri=media)
        except OSError:
            return None
        return p if len(p.segments) >= segments else None

    found: m3u8.M3U8 = wait_for(ready, timeout=60, interval=0.5, what=f"{segments} segments of {name}")
    return url, found


def decode_errors(path: Path) -> tuple[str, int]:
    """(what ffmpeg 9 says while decoding every frame of `path`, video frames decoded)."""
    done = subprocess.run([FFMPEG9, "-hide_banner", "-v", "error", "-nostdin",
                           "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
                          capture_output=True, timeout=120, env=QUIET, text=True)
    frames = sum(1 for line in done.stdout.splitlines() if line and not line.startswith("#"))
    return done.stderr.strip() + ("" if done.returncode == 0 else f" (exit {done.returncode})"), frames


def sample_entries(init: bytes) -> set[bytes]:
    """The sample entries of every track (video and audio)."""
    return {entry[0] for stsd in find(boxes(init), "moov/trak/mdia/minf/stbl/stsd") for entry in stsd[2]}


def pmt_stream_types(segment: bytes) -> set[int]:
    packets = ts_packets(segment)
    pat = section_of(packets[0])
    assert packets[0].pid == 0 and pat[0] == 0x00
    pmt_pid = int.from_bytes(pat[10:12], "big") & 0x1FFF
    pmt_packet = next(p for p in packets if p.pid == pmt_pid and p.start)
    pmt = section_of(pmt_packet)
    assert pmt[0] == 0x02
    pos = 12 + (int.from_bytes(pmt[10:12], "big") & 0x0FFF)
    types = set()
    while pos < len(pmt) - 4:  # the CRC closes the section
        types.add(pmt[pos])
        pos += 5 + (int.from_bytes(pmt[pos + 3 : pos + 5], "big") & 0x0FFF)
    return types


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_fmp4_init_segment_names_the_codec_and_every_segment_decodes(  # type: ignore[no-untyped-def]
        srs_server, clients: Clients, tmp_path: Path, codec: str) -> None:
    server = srs_server(hls_vhost(fmp4=True), http=True, workers=2)
    publish9(clients, f"{server.url}/live/{codec}", codec)
    _, playlist = playlist_with(server, codec, 3)
    assert playlist.version == 7 and playlist.segments[0].init_section is not None
    init = fetch(playlist.segments[0].init_section.absolute_uri)
    assert sample_entries(init) == SAMPLE_ENTRIES[codec], sample_entries(init)
    whole = tmp_path / f"{codec}.mp4"
    with whole.open("wb") as f:
        f.write(init)
        for seg in playlist.segments:
            f.write(fetch(seg.absolute_uri))
    said, frames = decode_errors(whole)
    assert said == "", said
    listed = sum(seg.duration for seg in playlist.segments)
    assert frames >= int(listed * 25) - 2, (frames, listed)  # 25 fps: every listed second decodes


def test_hevc_in_mpeg_ts_is_stream_type_0x24_and_decodes(  # type: ignore[no-untyped-def]
        srs_server, clients: Clients, tmp_path: Path) -> None:
    server = srs_server(hls_vhost(fmp4=False), http=True, workers=2)
    publish9(clients, f"{server.url}/live/hevc", "hevc")
    _, playlist = playlist_with(server, "hevc", 3)
    assert playlist.version == 3 and playlist.segments[0].init_section is None
    whole = tmp_path / "hevc.ts"
    with whole.open("wb") as f:
        for seg in playlist.segments:
            data = fetch(seg.absolute_uri)
            assert pmt_stream_types(data) == TS_STREAM_TYPES["hevc"], (seg.uri, pmt_stream_types(data))
            f.write(data)
    said, frames = decode_errors(whole)
    assert said == "", said
    assert frames >= int(sum(seg.duration for seg in playlist.segments) * 25) - 2


def test_av1_in_a_ts_configuration_is_written_as_fmp4(  # type: ignore[no-untyped-def]
        srs_server, clients: Clients) -> None:
    server = srs_server(hls_vhost(fmp4=False), http=True, workers=1)
    publish9(clients, f"{server.url}/live/av1", "av1")
    _, playlist = playlist_with(server, "av1", 2)
    assert playlist.segments[0].init_section is not None
    assert sample_entries(fetch(playlist.segments[0].init_section.absolute_uri)) == SAMPLE_ENTRIES["av1"]
    assert all(urlsplit(seg.uri).path.endswith(".m4s") for seg in playlist.segments), \
        [seg.uri for seg in playlist.segments]


def test_av1_and_opus_in_fmp4_play_in_chromium_with_hls_js(  # type: ignore[no-untyped-def]
        srs_server, clients: Clients, browser: Browser) -> None:
    server = srs_server(hls_vhost(fmp4=True), http=True, workers=2)
    publish9(clients, f"{server.url}/live/av1", "av1")
    url, _ = playlist_with(server, "av1", 2)
    open_player(browser, server, url)
    wait_playing(browser, timeout=40)
    assert_plays(browser, watch(browser, 10), "av1-opus-fmp4")
