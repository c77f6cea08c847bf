"""DVR (issue 14): real server, ffmpeg publishing, ffprobe reading the recordings."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import Clients, Server, wait_for

FPS = 25


def dvr_vhost(path: str, extra: str = "") -> str:
    return f"vhost __defaultVhost__ {{\n    dvr {{\n        enabled on;\n        dvr_path {path};\n{extra}    }}\n}}\n"


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,nb_read_frames,duration:format=duration",
                          "-of", "json", str(path)], capture_output=True, timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def video_frames(path: Path) -> int:
    streams = probe(path)["streams"]
    return sum(int(s["nb_read_frames"]) for s in streams if s["codec_type"] == "video")


def finished(folder: Path, ext: str) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{ext}") if p.is_file())


def publish_and_wait(clients: Clients, server: Server, stream: str, seconds: float) -> None:
    p = clients.publish(f"{server.url}/live/{stream}", seconds=seconds)
    assert p.wait(seconds + 30) == 0


@pytest.mark.parametrize("ext", [".flv", ".mp4"])
def test_session_recording_has_every_frame_and_the_published_duration(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path, ext: str) -> None:
    root = tmp_path / "dvr"
    server = srs_server(dvr_vhost(f"{root}/[app]/[stream].[timestamp]{ext}"), workers=1)
    publish_and_wait(clients, server, "s1", 4)
    wait_for(lambda: finished(root, ext), timeout=15)
    files = finished(root, ext)
    assert len(files) == 1 and files[0].parent == root / "live" and files[0].name.startswith("s1.")
    info = probe(files[0])
    assert video_frames(files[0]) == 4 * FPS
    assert abs(float(info["format"]["duration"]) - 4.0) <= 1 / FPS + 1e-3, info
    assert not list(root.rglob("*.tmp"))


def video_pts(path: Path) -> list[tuple[float, bool]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time,flags",
                          "-of", "csv=p=0", str(path)], capture_output=True, timeout=60, check=True, text=True)
    rows = [line.split(",") for line in out.stdout.split() if line]
    return sorted((float(pts), "K" in flags) for pts, flags in rows)


@pytest.mark.parametrize("ext", [".flv", ".mp4"])
def test_segment_plan_cuts_on_keyframes_without_gap_or_overlap(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path, ext: str) -> None:
    root = tmp_path / "dvr"
    extra = "        dvr_plan segment;\n        dvr_duration 2;\n        time_jitter off;\n"
    server = srs_server(dvr_vhost(f"{root}/[app]/[stream]-[timestamp]{ext}", extra), workers=1)
    publish_and_wait(clients, server, "seg", 5)
    wait_for(lambda: len(finished(root, ext)) >= 3 and not list(root.rglob("*.tmp")), timeout=15)
    files = sorted(finished(root, ext), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert len(files) == 3, files
    frames = [video_pts(f) for f in files]
    assert sum(len(f) for f in frames) == 5 * FPS  # nothing lost, nothing written twice
    for before, after in zip(frames, frames[1:]):
        assert after[0][1], "a segment starts on a keyframe"
        assert after[0][0] - before[-1][0] == pytest.approx(1 / FPS, abs=2e-3)  # no gap, no overlap
    assert [round(len(f) / FPS) for f in frames] == [2, 2, 1]
    for f in files:  # each file on its own starts with its headers: decodable alone
        assert video_frames(f) == len(video_pts(f))
