"""DVR files without a server: the FLV keyframe index, finishing and recovering what a crash
left (FLV cut inside a tag, fMP4 cut inside a fragment), listing, retention, dvr_path roots."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from media_tools import encode_h264_aac_flv, ffmpeg_decode_errors

from srv.app import dvr_files
from srv.media.flv import TAG_VIDEO, encode_tag, read_flv_file
from srv.media.flv_file import RecordingInfo, metadata_head, metadata_values, srv_values, starts_picture
from srv.media.fmp4 import Fmp4Muxer
from srv.media.mp4_file import file_head, fragment_samples

DEAD_PID = 999_999_999  # beyond pid_max: never a live writer
INFO = RecordingInfo("__defaultVhost__", "live", "s", 1_700_000_000_000.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_h264_aac_flv(tmp_path_factory.mktemp("dvrsrc") / "src.flv", seconds=4)


def live_flv(source: Path) -> bytes:
    """What the recorder writes live: head with placeholders, sequence headers, frames."""
    tags = list(read_flv_file(source))
    meta = next(t for t in tags if t.tag_type == 18)
    out = [metadata_head(metadata_values(meta.payload), INFO, has_audio=True, has_video=True)]
    out += [encode_tag(t.tag_type, t.timestamp, t.payload) for t in tags if t.tag_type != 18]
    return b"".join(out)


def video_count(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def test_finished_flv_has_duration_filesize_and_a_keyframe_index_players_seek_with(
        source: Path, tmp_path: Path) -> None:
    temp = tmp_path / f"a.flv.{DEAD_PID}.tmp"
    temp.write_bytes(live_flv(source))
    done = dvr_files.finish(str(temp), str(tmp_path / "a.flv"))
    assert done is not None and not temp.exists()
    final = tmp_path / "a.flv"
    data = final.read_bytes()
    values = metadata_values(next(iter(read_flv_file(final))).payload)
    assert values["filesize"] == len(data) == done.size
    assert values["duration"] == pytest.approx(4.0, abs=0.1) and values["srvstream"] == "s"  # AAC runs to 4.097
    times, positions = values["keyframes"]["times"], values["keyframes"]["filepositions"]
    assert times == [0.0, 1.0, 2.0, 3.0]
    for t, pos in zip(times, positions, strict=True):  # each position is a keyframe tag at that time
        pos = int(pos)
        assert data[pos] == TAG_VIDEO
        ts = data[pos + 7] << 24 | data[pos + 4] << 16 | data[pos + 5] << 8 | data[pos + 6]
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        assert ts == t * 1000 and starts_picture(TAG_VIDEO, data[pos + 11:pos + 11 + size])
    assert video_count(final) == 100 and ffmpeg_decode_errors(final) == ""


def test_recovery_finishes_an_flv_cut_inside_a_tag_and_leaves_live_writers_alone(
        source: Path, tmp_path: Path) -> None:
    whole = live_flv(source)
    (tmp_path / "live").mkdir()
    crashed = tmp_path / "live" / f"b.flv.{DEAD_PID}.tmp"
    crashed.write_bytes(whole[:len(whole) * 2 // 3 + 5])  # the crash cut a tag
    alive = tmp_path / "live" / f"c.flv.{os.getppid()}.tmp"  # a writer that is alive
    alive.write_bytes(whole)
    (tmp_path / "live" / f"b.flv.{DEAD_PID}.tmp.close").write_bytes(b"half a close")
    found = dvr_files.recover_under(str(tmp_path))
    assert [Path(f.path).name for f in found] == ["b.flv"] and found[0].recovered
    assert alive.exists() and not crashed.exists()
    assert sorted(p.name for p in (tmp_path / "live").iterdir()) == ["b.flv", alive.name]
    final = tmp_path / "live" / "b.flv"
    assert 50 < video_count(final) < 100 and ffmpeg_decode_errors(final) == ""
    listed = dvr_files.list_recordings([str(tmp_path)])
    assert [(Path(e.path).name, e.recovered, e.stream) for e in listed] == [("b.flv", True, "s")]


def mp4_bytes(source: Path) -> tuple[bytes, list[int]]:
    """A live fMP4 recording of `source`, and where each fragment ends."""
    muxer = Fmp4Muxer()
    tags = [t for t in read_flv_file(source) if t.tag_type != 18]
    body, ends = b"", []
    head = b""
    for t in tags:
        muxer.push(t.tag_type, t.timestamp, t.payload)
        if not head and muxer.frames.video and muxer.frames.audio:
            head = file_head(muxer.frames.video, muxer.frames.audio,
                             {k[3:]: v for k, v in srv_values(INFO).items()})
        if t.tag_type == TAG_VIDEO and starts_picture(t.tag_type, t.payload):
            fragment = muxer.fragment()
            if fragment:
                body += fragment
                ends.append(len(head) + len(body))
    body += muxer.flush()
    ends.append(len(head) + len(body))
    return head + body, ends


def test_recovery_cuts_an_mp4_after_its_last_whole_fragment_and_patches_the_duration(
        source: Path, tmp_path: Path) -> None:
    data, ends = mp4_bytes(source)
    cut = (ends[2] + ends[3]) // 2  # inside the fourth fragment
    (tmp_path / f"m.mp4.{DEAD_PID}.tmp").write_bytes(data[:cut])
    done, = dvr_files.recover_under(str(tmp_path))
    final = tmp_path / "m.mp4"
    assert done.size == ends[2] == final.stat().st_size  # up to the last whole fragment
    assert video_count(final) == 75 and ffmpeg_decode_errors(final) == ""
    assert done.duration == pytest.approx(3.0, abs=0.05)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                          str(final)], capture_output=True, text=True, check=True)
    assert float(out.stdout) == pytest.approx(3.0, abs=0.05)
    entry, = dvr_files.list_recordings([str(tmp_path)])
    assert entry.recovered and entry.duration == pytest.approx(3.0, abs=0.05)
    moof_at = data.index(b"moof") - 4
    samples = fragment_samples(data[moof_at:moof_at + int.from_bytes(data[moof_at:moof_at + 4], "big")], moof_at)
    assert samples[0].sync and samples[0].track_id == 1


def test_keep_removes_the_oldest_by_age_and_by_size(source: Path, tmp_path: Path) -> None:
    live = live_flv(source)
    for i in range(3):
        info = RecordingInfo("v", "live", "s", 1_000_000.0 + i * 10_000)
        head = metadata_head({}, info, has_audio=True, has_video=True)
        body = live[live.index(b"\x09", len(metadata_head({}, INFO, has_audio=True, has_video=True)) - 1):]
        temp = tmp_path / f"{i}.flv.{DEAD_PID}.tmp"
        temp.write_bytes(head + body)
        dvr_files.finish(str(temp), str(tmp_path / f"{i}.flv"))
    size = (tmp_path / "0.flv").stat().st_size
    removed = dvr_files.enforce_keep(str(tmp_path), "v", (0.0, 2 * size + 10))
    assert [Path(e.path).name for e in removed] == ["0.flv"]
    removed = dvr_files.enforce_keep(str(tmp_path), "v", (15.0, 0), now=1_000 + 20 + 4 + 10)
    assert [Path(e.path).name for e in removed] == ["1.flv"]
    assert dvr_files.enforce_keep(str(tmp_path), "other", (1.0, 1)) == []
    assert [p.name for p in tmp_path.glob("*.flv")] == ["2.flv"]


@pytest.mark.parametrize("path, template, root", [
    ("./objs/nginx/html", "./objs/nginx/html/[app]/[stream].[timestamp].flv", "./objs/nginx/html"),
    ("/data/[vhost]/[app]/[2006]/x.mp4", "/data/[vhost]/[app]/[2006]/x.mp4", "/data"),
    ("/data/dvr/[stream].flv", "/data/dvr/[stream].flv", "/data/dvr"),
    ("/data/dvr/fixed.flv", "/data/dvr/fixed.flv", "/data/dvr"),
])
def test_dvr_path_template_and_root(path: str, template: str, root: str) -> None:
    assert dvr_files.dvr_template(path) == template
    assert dvr_files.dvr_root(path) == root
