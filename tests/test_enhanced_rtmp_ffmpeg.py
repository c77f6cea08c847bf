"""Enhanced RTMP end to end with a real publisher: the static ffmpeg 9 of the PyPI wheel
`imageio-ffmpeg` (Debian's ffmpeg 5.1 cannot write Enhanced RTMP) publishes HEVC (libx265) +
AAC and AV1 (SVT-AV1) + Opus to srv over RTMP, and the same ffmpeg plays them back over RTMP
and HTTP-FLV from the other worker: the codecs arrive as published and every frame decodes
without a word from the decoder. tests/test_media_ffmpeg.py and test_rtmp_robustness.py build
Enhanced RTMP tags by hand; this is what OBS 30 or ffmpeg >= 6.1 send.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from conftest import Clients, wait_for

FFMPEG9 = imageio_ffmpeg.get_ffmpeg_exe()
# SVT-AV1 prints its banner on stderr whatever ffmpeg's -v says; SVT_LOG=1: errors only
QUIET = {**os.environ, "SVT_LOG": "1"}
SOURCE = ["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
          "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-pix_fmt", "yuv420p"]
CODECS = {
    "hevc": (["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25:min-keyint=25",
              "-c:a", "aac", "-b:a", "64k"], "hevc", "aac"),
    "av1": (["-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-c:a", "libopus", "-b:a", "64k"], "av1", "opus"),
}


def publish9(clients: Clients, url: str, codec: str) -> subprocess.Popen[bytes]:
    args, _, _ = CODECS[codec]
    return clients.spawn([FFMPEG9, "-hide_banner", "-loglevel", "error", "-nostdin", *SOURCE, *args, "-f", "flv", url],
                         stdout=subprocess.DEVNULL, env=QUIET)


def record9(url: str, out: Path, seconds: int = 4) -> None:
    """Play `url` with ffmpeg 9 and keep `seconds` of it, as published (-c copy), in Matroska."""
    done = subprocess.run([FFMPEG9, "-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "15000000",
                           "-i", url, "-t", str(seconds), "-c", "copy", "-y", str(out)],
                          capture_output=True, timeout=60, env=QUIET)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def streams(path: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, timeout=30, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


def decode_errors(path: Path) -> str:
    """What ffmpeg 9's decoders say about every frame of `path` (nothing when all is well)."""
    done = subprocess.run([FFMPEG9, "-hide_banner", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, timeout=120, env=QUIET)
    return done.stderr.decode(errors="replace") + ("" if done.returncode == 0 else f"exit {done.returncode}")


def frame_count(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v",
                          "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
                         capture_output=True, timeout=60, check=True, text=True)
    return int(out.stdout.strip())


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_ffmpeg9_publishes_enhanced_rtmp_and_plays_it_back_over_rtmp_and_http_flv(  # type: ignore[no-untyped-def]
        srs_server, clients: Clients, tmp_path: Path, codec: str) -> None:
    server = srs_server(http=True, workers=2, body="vhost __defaultVhost__ { http_remux { enabled on; } }\n")
    url = f"{server.url}/live/{codec}"
    publish9(clients, url, codec)
    _, video, audio = CODECS[codec]
    for name, play_url in (("rtmp", url), ("flv", f"http://127.0.0.1:{server.http_port}/live/{codec}.flv")):
        out = tmp_path / f"{name}.mkv"
        wait_for(lambda u=play_url, o=out: record_ok(u, o), timeout=40, interval=1, what=f"{codec} over {name}")
        found = streams(out)
        assert found["video"]["codec_name"] == video, found
        assert found["audio"]["codec_name"] == audio, found
        assert (found["video"]["width"], found["video"]["height"]) == (320, 240), found
        assert frame_count(out) >= 50, f"{codec} over {name}: too few frames in 4 s"
        assert decode_errors(out) == "", f"{codec} over {name}"
    with urllib.request.urlopen(f"http://127.0.0.1:{server.api_port}/api/v1/streams", timeout=10) as r:
        (stream,) = [s for s in json.load(r)["streams"] if s["name"] == codec]
    assert stream["video"]["codec"] == {"hevc": "HEVC", "av1": "AV1"}[codec], stream


def record_ok(url: str, out: Path) -> bool:
    try:
        record9(url, out)
    except AssertionError:
        return False
    return True
