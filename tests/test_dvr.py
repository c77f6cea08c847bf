"""DVR (issue 14): real server, ffmpeg publishing, ffprobe reading the recordings."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clients, Server, keeps_growing, record_flv, wait_for, worker_procs
from hookserver import HookServer

from srv.media.mp4_file import boxes

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
    for before, after in zip(frames, frames[1:], strict=False):
        assert after[0][1], "a segment starts on a keyframe"
        assert after[0][0] - before[-1][0] == pytest.approx(1 / FPS, abs=2e-3)  # no gap, no overlap
    assert [round(len(f) / FPS) for f in frames] == [2, 2, 1]
    for f in files:  # each file on its own starts with its headers: decodable alone
        assert video_frames(f) == len(video_pts(f))


def api(server: Server, path: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.api_port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def listing(server: Server, query: str = "") -> list[dict[str, Any]]:
    status, body = api(server, f"/api/v1/dvrs{query}")
    assert status == 200, body
    return json.loads(body)["dvrs"]  # type: ignore[no-any-return]


def test_api_lists_downloads_deletes_and_filters_recordings(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    root = tmp_path / "dvr"
    body = dvr_vhost(f"{root}/[app]/[stream].[timestamp].mp4", "        dvr_apply live/a live/b;\n")
    server = srs_server(body, workers=2, http=True)
    for name in ("a", "b", "c"):  # c is not in dvr_apply: not recorded
        publish_and_wait(clients, server, name, 2)
    wait_for(lambda: len(listing(server)) == 2, timeout=15)
    entries = listing(server)
    assert [(e["app"], e["stream"]) for e in entries] == [("live", "a"), ("live", "b")]
    a = entries[0]
    assert a["duration"] == pytest.approx(2.0, abs=1 / FPS) and a["size"] == Path(a["path"]).stat().st_size
    assert a["end"] > a["start"] and not a["recovered"]
    assert [e["stream"] for e in listing(server, "?stream=live/b")] == ["b"]
    assert listing(server, f"?from={entries[1]['start']}") == [entries[1]]
    assert listing(server, "?to=2000-01-01T00:00:00Z") == []
    status, data = api(server, a["url"])
    assert status == 200 and data == Path(a["path"]).read_bytes()
    assert api(server, a["url"], "DELETE")[0] == 200
    assert not Path(a["path"]).exists() and [e["stream"] for e in listing(server)] == ["b"]
    assert api(server, a["url"])[0] == 404


@pytest.mark.parametrize("ext", [".flv", ".mp4"])
def test_time_range_playback_starts_on_a_keyframe_before_start_and_has_the_frames_of_the_range(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path, ext: str) -> None:
    root = tmp_path / "dvr"
    extra = "        dvr_plan segment;\n        dvr_duration 2;\n"
    server = srs_server(dvr_vhost(f"{root}/[app]/[stream].[timestamp]{ext}", extra), workers=1, http=True)
    publish_and_wait(clients, server, "r", 6)
    wait_for(lambda: len(listing(server)) == 3, timeout=15)
    first = listing(server)[0]
    start_ms = first["start_ms"] + 1500  # keyframes every second: the answer starts at +1.0 s
    start = datetime.datetime.fromtimestamp(start_ms / 1000, datetime.UTC).isoformat()
    status, data = api(server, f"/api/v1/dvrs/__defaultVhost__/live/r.mp4?start={start}&duration=3")
    assert status == 200
    out = tmp_path / "range.mp4"
    out.write_bytes(data)
    pts = video_pts(out)
    assert pts[0][1], "the first frame is a keyframe"
    assert pts[0][0] == pytest.approx(0.0, abs=1e-3)
    # from the keyframe at +1.0 s to +4.5 s: 3.5 s of frames, across two recordings
    assert len(pts) == pytest.approx(3.5 * FPS, abs=1)
    assert video_frames(out) == len(pts)
    duration = float(probe(out)["format"]["duration"])
    assert len(pts) / FPS - 1e-3 <= duration <= len(pts) / FPS + 0.1, duration
    moov = next(data[pos:pos + size] for kind, pos, size in boxes(data) if kind == b"moov")
    mvhd = next(moov[pos:pos + size] for kind, pos, size in boxes(moov, 8) if kind == b"mvhd")
    assert int.from_bytes(mvhd[24:28], "big") == 0  # not the first recording's 2 s: unknown
    assert api(server, "/api/v1/dvrs/__defaultVhost__/live/r.mp4?start=2000-01-01T00:00:00Z&duration=3")[0] == 404
    assert api(server, "/api/v1/dvrs/__defaultVhost__/live/r.mp4?start=nonsense")[0] == 400


def test_kill_9_mid_recording_leaves_an_mp4_that_plays_to_its_last_fragment_and_is_reported(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    root = tmp_path / "dvr"
    server = srs_server(dvr_vhost(f"{root}/[app]/[stream].mp4"), workers=1, http=True)
    clients.publish(f"{server.url}/live/crash", seconds=60)
    temp = wait_for(lambda: list(root.rglob("*.mp4.*.tmp")), timeout=15)[0]
    wait_for(lambda: temp.stat().st_size > 60_000, timeout=20)
    time.sleep(1.5)
    (slot, worker), = worker_procs(server.master_pid).items()
    os.kill(worker.pid, signal.SIGKILL)
    server.wait_worker_ready(slot, not_pid=worker.pid)
    wait_for(lambda: listing(server), timeout=15)
    entry, = listing(server)
    assert entry["recovered"] and entry["stream"] == "crash" and not temp.exists()
    path = Path(entry["path"])
    assert path == root / "live" / "crash.mp4"
    frames = video_frames(path)
    assert frames >= 2 * FPS  # everything up to the last whole fragment
    assert abs(entry["duration"] - frames / FPS) <= 2 / FPS  # mvhd/mehd patched by the recovery
    errors = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True,
                            text=True, timeout=60).stderr
    assert errors == ""
    assert "recovered" in server.log_text() and str(path) in server.log_text()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_stops_the_recording_once_and_players_go_on(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path, small_disk: Path) -> None:
    server = srs_server(dvr_vhost(f"{small_disk}/[app]/[stream].flv"), workers=1, http=True)
    clients.publish(f"{server.url}/live/full", seconds=40)
    got = tmp_path / "player.flv"
    wait_for(lambda: list(small_disk.rglob("*.tmp")), timeout=15)
    record_flv(clients, f"{server.url}/live/full", got)
    server.wait_log("recording stopped", timeout=30)
    status, body = api(server, "/api/v1/streams")
    stream, = json.loads(body)["streams"]
    assert stream["dvr"]["state"] == "error" and "No space" in stream["dvr"]["error"]
    assert keeps_growing(got, 3.0)  # the RTMP player is undisturbed
    assert server.log_text().count("recording stopped") == 1
    # one line at the default level (trace): the rest of the story is info
    shown = [line for line in server.log_text().splitlines() if "dvr" in line and "[Info]" not in line
             and ("[Warn]" in line or "[Error]" in line)]
    assert len(shown) == 1, shown


def test_on_dvr_is_called_after_the_file_is_renamed_with_srs_fields(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    hooks = HookServer()
    try:
        root = tmp_path / "dvr"
        body = (f"vhost __defaultVhost__ {{\n    dvr {{ enabled on; dvr_path {root}; }}\n"
                f"    http_hooks {{ enabled on; on_dvr {hooks.url('dvr')}; }}\n}}\n")
        server = srs_server(body, workers=1)
        p = clients.publish(f"{server.url}/live/hooked?token=abc", seconds=2)
        assert p.wait(40) == 0
        wait_for(lambda: hooks.bodies("on_dvr"), timeout=15)
        sent, = hooks.bodies("on_dvr")
        assert list(sent)[:4] == ["server_id", "service_id", "action", "client_id"]
        assert (sent["vhost"], sent["app"], sent["stream"], sent["param"]) == (
            "__defaultVhost__", "live", "hooked", "?token=abc")
        assert sent["cwd"] == str(server.dir) and sent["client_id"] and sent["ip"] == "127.0.0.1"
        # a bare folder gets SRS's default name: [app]/[stream].[timestamp].flv
        file = Path(sent["file"])
        assert file.exists() and file.parent == root / "live" and file.name.startswith("hooked.")
        assert file.suffix == ".flv" and file.stem.split(".")[1].isdigit()
    finally:
        hooks.close()


def test_path_variables_expand_and_names_stay_under_the_folder(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    root = tmp_path / "dvr"
    server = srs_server(dvr_vhost(f"{root}/[vhost]/[app]/[stream]/[2006]/[01]/[02]/[15].[04].[05].[999].mp4"),
                        workers=1)
    before = time.localtime()
    publish_and_wait(clients, server, "v", 1)
    files = wait_for(lambda: finished(root, ".mp4"), timeout=15)
    rel = files[0].relative_to(root).parts
    assert rel[:3] == ("__defaultVhost__", "live", "v")
    assert rel[3:6] == (f"{before.tm_year:04d}", f"{before.tm_mon:02d}", f"{before.tm_mday:02d}")
    hour, minute, second, millis, ext = rel[6].split(".")
    assert (len(hour), len(minute), len(second), len(millis), ext) == (2, 2, 2, 3, "mp4")


def new_ffmpeg() -> str:
    """The PyPI wheel imageio-ffmpeg's ffmpeg (9.x): publishes HEVC and AV1 over Enhanced RTMP."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@pytest.mark.parametrize("codec, encoder, box, ext", [
    ("hevc", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=25:log-level=error"],
     b"hvcC", ".mp4"),
    ("av1", ["-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-svtav1-params", "lp=1"], b"av1C", ".mp4"),
    ("hevc", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=25:log-level=error"],
     b"", ".flv"),
], ids=["hevc-mp4", "av1-mp4", "hevc-flv"])
def test_hevc_and_av1_published_by_ffmpeg_9_are_recorded_with_their_configuration(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path, codec: str, encoder: list[str],
        box: bytes, ext: str) -> None:
    root = tmp_path / "dvr"
    server = srs_server(dvr_vhost(f"{root}/[app]/[stream]{ext}"), workers=1)
    p = clients.spawn([new_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                       "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "3", *encoder,
                       "-pix_fmt", "yuv420p", "-f", "flv", f"{server.url}/live/{codec}"], stdout=subprocess.DEVNULL)
    assert p.wait(60) == 0, p.stderr.read() if p.stderr else ""
    path, = wait_for(lambda: finished(root, ext), timeout=15)
    assert not box or box in path.read_bytes()[:4096]  # the sample entry's configuration record
    # the system's ffprobe (5.x) cannot read Enhanced FLV: ffmpeg 9 decodes the file
    out = subprocess.run([new_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60).stderr
    assert re.search(rf"Stream #0:0.*: Video: {codec}", out), out
    assert re.findall(r"frame=\s*(\d+)", out)[-1] == str(3 * FPS), out
    duration = re.search(r"Duration: 00:00:(\d+\.\d+)", out)
    assert duration is not None and abs(float(duration.group(1)) - 3.0) <= 1 / FPS + 1e-3, out


def test_reload_that_stops_recording_a_stream_finishes_its_file_while_it_publishes(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    root = tmp_path / "dvr"
    server = srs_server(dvr_vhost(f"{root}/[app]/[stream].flv"), workers=1, http=True)
    publisher = clients.publish(f"{server.url}/live/r", seconds=30)
    wait_for(lambda: list(root.rglob("*.tmp")), timeout=15)
    time.sleep(2)
    server.write_conf(dvr_vhost(f"{root}/[app]/[stream].flv", "        dvr_apply live/other;\n"))
    server.send_signal(signal.SIGHUP)
    wait_for(lambda: finished(root, ".flv") and not list(root.rglob("*.tmp")), timeout=15)
    assert publisher.poll() is None  # the publisher goes on
    assert video_frames(finished(root, ".flv")[0]) >= FPS
    status, body = api(server, "/api/v1/streams")
    assert json.loads(body)["streams"][0]["dvr"] == {"state": "off"}
