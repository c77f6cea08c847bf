"""The HLS writer end to end: a real server, ffmpeg publishing, ffprobe/ffmpeg and the `m3u8`
package reading what the HTTP server serves from hls_path."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import m3u8
import pytest

from tests.conftest import Clients, Server, codecs, ffprobe, wait_for
from tests.media_tools import ffprobe_packets

pytestmark = pytest.mark.timeout(180)


def hls_vhost(path: Path, extra: str = "") -> str:
    return (f"vhost __defaultVhost__ {{ hls {{ enabled on; hls_fragment 2; hls_window 8; hls_path {path}; "
            f"hls_dispose 0; {extra} }} }}\n")


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def playlist(s: Server, name: str = "live/s") -> m3u8.M3U8 | None:
    status, body = fetch(f"http://127.0.0.1:{s.http_port}/{name}.m3u8")
    return m3u8.loads(body.decode()) if status == 200 else None


def start_hls(srs_server: Callable[..., Server], tmp_path: Path, extra: str = "", workers: int = 1) -> Server:
    return srs_server(hls_vhost(tmp_path / "srs", extra), workers=workers, http=True)


def ended(s: Server, name: str = "live/s") -> m3u8.M3U8:
    def done() -> m3u8.M3U8 | None:
        p = playlist(s, name)
        return p if p is not None and p.is_endlist else None
    found: m3u8.M3U8 = wait_for(done, timeout=30)
    return found


def decode_errors(url: str, seconds: int = 20) -> str:
    done = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", url, "-t", str(seconds),
                           "-f", "null", "-"], capture_output=True, text=True, timeout=120)
    return done.stderr.strip()


def test_a_published_stream_plays_as_hls_segments_cut_on_keyframes(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path)
    clients.publish(f"{s.url}/live/s", seconds=9)
    wait_for(lambda: (p := playlist(s)) is not None and len(p.segments) >= 2, timeout=30)
    found = codecs(ffprobe(f"http://127.0.0.1:{s.http_port}/live/s.m3u8"))
    assert found["video"]["codec_name"] == "h264" and found["audio"]["codec_name"] == "aac"
    hls = api_hls(s)
    assert hls is not None and hls["segments"] >= 2 and hls["format"] == "ts" and hls["gop"] == 1.0
    assert hls["long_gop"] is False and hls["last_duration"] == 2.0 and hls["m3u8"] == "live/s.m3u8"
    status, metrics = fetch(f"http://127.0.0.1:{s.exporter_port}/metrics")
    text = metrics.decode()
    assert 'srs_hls_segments_total{app="live",stream="s",vhost="__defaultVhost__"}' in text
    assert 'srs_hls_segment_duration_seconds_bucket{app="live",le="2.0",stream="s"' in text

    p = ended(s)
    assert p.version == 3 and p.target_duration == 2 and len(p.segments) >= 4
    assert decode_errors(f"http://127.0.0.1:{s.http_port}/live/s.m3u8") == ""
    previous_end = None
    folder = tmp_path / "srs" / "live"
    for seg in p.segments:
        assert seg.duration <= p.target_duration + 0.5
        path = folder / seg.uri
        video = ffprobe_packets(path, "v")
        assert video[0][2], f"{seg.uri} does not start with a keyframe"
        pts = sorted(v[0] for v in video)
        if previous_end is not None:
            assert abs(pts[0] - previous_end - 3600) <= 90, seg.uri  # one frame at 25 fps, 90 kHz
        previous_end = pts[-1]
    assert not list(folder.glob("*.tmp"))


def api_hls(s: Server, stream: str = "s") -> dict[str, Any] | None:
    import json

    status, body = fetch(f"http://127.0.0.1:{s.api_port}/api/v1/streams")
    if status != 200:
        return None
    for st in json.loads(body)["streams"]:
        if st["name"] == stream:
            hls: dict[str, Any] | None = st.get("hls")
            return hls
    return None


def wait_file_gone(path: Path, timeout: float = 30) -> None:
    wait_for(lambda: not path.exists(), timeout=timeout)


def now() -> float:
    return time.monotonic()
