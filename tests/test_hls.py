"""The HLS writer end to end: a real server, ffmpeg publishing, ffprobe/ffmpeg and the `m3u8`
package reading what the HTTP server serves from hls_path."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import m3u8
import pytest
from conftest import FFMPEG_PUBLISH, Clients, Server, codecs, ffprobe, keeps_growing, record_flv, wait_for, worker_procs
from hookserver import HookServer
from media_tools import ffprobe_packets

pytestmark = pytest.mark.timeout(180)


def hls_vhost(path: Path, extra: str = "", window: float = 8, dispose: float = 0, vhost_extra: str = "") -> str:
    # the files as the writer wrote them: SRS's hls_ctx playlists are tests/test_http_hls.py's
    ctx = "" if "hls_ctx" in extra else "hls_ctx off; "
    return (f"vhost __defaultVhost__ {{ hls {{ enabled on; hls_fragment 2; hls_window {window}; "
            f"hls_path {path}; hls_dispose {dispose}; {ctx}{extra} }} {vhost_extra} }}\n")


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def playlist(s: Server, name: str = "live/s") -> m3u8.M3U8 | None:
    """The media playlist as served; with `hls_ctx on` (the default) through SRS's variant."""
    status, body = fetch(f"http://127.0.0.1:{s.http_port}/{name}.m3u8")
    found = m3u8.loads(body.decode()) if status == 200 else None
    if found is not None and found.is_variant:
        status, body = fetch(f"http://127.0.0.1:{s.http_port}{found.playlists[0].uri}")
        found = m3u8.loads(body.decode()) if status == 200 else None
    return found


def start_hls(srs_server: Callable[..., Server], tmp_path: Path, extra: str = "", workers: int = 1,
              path: Path | None = None, **kw: Any) -> Server:
    return srs_server(hls_vhost(path or tmp_path / "srs", extra, **kw), workers=workers, http=True)


def ended(s: Server, name: str = "live/s") -> m3u8.M3U8:
    """The playlist once it ends (a ceiling, not a speed claim: ffmpeg's start and its real-time
    encoding of the publisher's seconds both stretch on a loaded machine)."""
    def done() -> m3u8.M3U8 | None:
        p = playlist(s, name)
        return p if p is not None and p.is_endlist else None
    found: m3u8.M3U8 = wait_for(done, timeout=60)
    return found


def decode_errors(url: str, seconds: int = 20) -> str:
    done = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", url, "-t", str(seconds),
                           "-f", "null", "-"], capture_output=True, text=True, timeout=120)
    return done.stderr.strip()


def test_a_published_stream_plays_as_hls_segments_cut_on_keyframes(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path)
    clients.publish(f"{s.url}/live/s", seconds=9)
    wait_for(lambda: (p := playlist(s)) is not None and len(p.segments) >= 2, timeout=60)
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
    assert 0.5 < p.segments[-1].duration < 1.9  # the publisher stopped mid-segment (9 s): listed as it is
    assert decode_errors(f"http://127.0.0.1:{s.http_port}/live/s.m3u8") == ""
    previous_end = None
    folder = tmp_path / "srs" / "live"
    for seg in p.segments:
        assert seg.duration <= p.target_duration + 0.5
        path = folder / seg.uri.split("?")[0]  # hls_ts_ctx adds the viewer's ctx
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


def publish_args(url: str, seconds: float, audio: bool = True, video: bool = True) -> list[str]:
    spec = list(FFMPEG_PUBLISH[:-2])  # without "-f flv"
    if not audio:
        i = spec.index("sine=frequency=440:sample_rate=44100")
        del spec[i - 3:i + 1]
        spec += ["-an"]
    if not video:
        i = spec.index("testsrc=size=320x240:rate=25")
        del spec[i - 3:i + 1]
        spec += ["-vn"]
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *spec, "-t", str(seconds),
            "-f", "flv", url]


class Watcher:
    """Polls the playlist and checks, across every version a player could have read, what
    RFC 8216 asks of a live playlist that changes under it."""

    def __init__(self, s: Server) -> None:
        self.s = s
        self.seen: dict[str, int] = {}  # uri -> media sequence number
        self.discontinuity: dict[int, bool] = {}  # media sequence number -> EXT-X-DISCONTINUITY
        self.targets: set[int] = set()
        self.last: m3u8.M3U8 | None = None
        self.ended_seen = 0
        self.removed_ok: list[str] = []

    def poll(self) -> m3u8.M3U8 | None:
        p = playlist(self.s)
        if p is None or not p.segments:
            return p
        self.targets.add(p.target_duration)
        for i, seg in enumerate(p.segments):
            n = p.media_sequence + i
            assert self.seen.setdefault(seg.uri, n) == n, f"{seg.uri} moved from {self.seen[seg.uri]} to {n}"
            assert self.discontinuity.setdefault(n, seg.discontinuity) == seg.discontinuity
        gone = [n for n, d in self.discontinuity.items() if d and n < p.media_sequence]
        assert (p.discontinuity_sequence or 0) == len(gone), (p.dumps(), gone)
        if self.last is not None:
            now = {seg.uri for seg in p.segments}
            for seg in self.last.segments:
                if seg.uri not in now:  # just left the playlist: a player may still ask for it
                    status, _ = fetch(f"http://127.0.0.1:{self.s.http_port}/live/{seg.uri}")
                    assert status == 200, seg.uri
                    self.removed_ok.append(seg.uri)
        if p.is_endlist:
            self.ended_seen += 1
        self.last = p
        return p

    def until(self, cond: Callable[[m3u8.M3U8], bool], timeout: float = 40) -> m3u8.M3U8:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.poll()
            if p is not None and p.segments and cond(p):
                return p
            time.sleep(0.25)
        raise AssertionError(f"playlist never got there: {self.last.dumps() if self.last else None}")


def test_a_republish_goes_on_in_one_playlist_that_stays_right_on_every_worker(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path, workers=2, window=4, dispose=6)
    folder = tmp_path / "srs" / "live"
    w = Watcher(s)
    url = f"{s.url}/live/s"
    clients.spawn(publish_args(url, 7), stdout=subprocess.DEVNULL)
    first = w.until(lambda p: p.is_endlist)
    clients.spawn(publish_args(url, 9), stdout=subprocess.DEVNULL)
    w.until(lambda p: not p.is_endlist)
    listed_during = 0
    while (p := w.poll()) is None or not p.is_endlist:
        listed = {seg.uri for seg in p.segments} if p else set()
        listed_during = max(listed_during, len(listed))
        # files stay bounded: what is listed plus what left it less than RFC 8216's grace ago
        assert len(list(folder.glob("*.ts"))) <= len(listed) + 6
        time.sleep(0.25)
    final = w.last
    assert final is not None and final.is_endlist
    assert w.targets == {2}  # EXT-X-TARGETDURATION never changed
    assert final.media_sequence > first.media_sequence  # segments left the window
    assert final.discontinuity_sequence == 1  # the republish's discontinuity slid out of the window
    assert w.removed_ok, "no segment was seen leaving the playlist"
    for seg in final.segments:  # SO_REUSEPORT spreads the fetches over both workers
        for _ in range(4):
            assert fetch(f"http://127.0.0.1:{s.http_port}/live/{seg.uri}")[0] == 200, seg.uri
    assert max(w.seen.values()) + 1 > len(list(folder.glob("*.ts")))  # older files were deleted
    wait_for(lambda: not any(folder.iterdir()), timeout=20)  # hls_dispose: everything goes


def test_temp_files_a_killed_worker_left_are_swept(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path)
    folder = tmp_path / "srs" / "live"
    url = f"{s.url}/live/s"
    clients.spawn(publish_args(url, 60), stdout=subprocess.DEVNULL)
    wait_for(lambda: (p := playlist(s)) is not None and len(p.segments) >= 2, timeout=60)
    pid = worker_procs(s.master_pid).get(1)
    assert pid is not None
    pid.kill()  # kill -9 mid-stream: what it was writing stays behind as temp files
    for name in ("s-99.ts.tmp", "s.m3u8.tmp"):
        (folder / name).write_bytes(b"half a file")
    s.wait_worker_ready(1, not_pid=pid.pid)
    clients.spawn(publish_args(url, 5), stdout=subprocess.DEVNULL)
    p = ended(s)
    assert not list(folder.glob("*.tmp"))
    assert any(seg.discontinuity for seg in p.segments)  # the new publish went on with the playlist

    (folder / "s-98.ts.tmp").write_bytes(b"half a file")
    s.stop()
    s.start()  # the master sweeps before any worker writes
    assert not list(folder.glob("*.tmp"))


def test_audio_only_and_video_only_streams_play(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path)
    clients.spawn(publish_args(f"{s.url}/live/a", 6, video=False), stdout=subprocess.DEVNULL)
    clients.spawn(publish_args(f"{s.url}/live/v", 6, audio=False), stdout=subprocess.DEVNULL)
    a, v = ended(s, "live/a"), ended(s, "live/v")
    assert a.target_duration == 5  # audio-only: cut at hls_aof_ratio * hls_fragment = 4.2 s
    assert all(seg.duration <= 5.5 for seg in a.segments)
    assert v.target_duration == 2 and all(seg.duration <= 2.5 for seg in v.segments)
    for name in ("a", "v"):
        u = f"http://127.0.0.1:{s.http_port}/live/{name}.m3u8"
        assert decode_errors(u) == ""
        found = codecs(ffprobe(u))
        assert set(found) == ({"audio"} if name == "a" else {"video"})


def test_fmp4_segments_play_with_their_init_segment(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path, extra="hls_use_fmp4 on;")
    clients.spawn(publish_args(f"{s.url}/live/s", 7), stdout=subprocess.DEVNULL)
    p = ended(s)
    assert p.version == 7 and p.segments[0].init_section.uri == "s-init.mp4"
    assert all(seg.uri.endswith(".m4s") for seg in p.segments)
    u = f"http://127.0.0.1:{s.http_port}/live/s.m3u8"
    found = codecs(ffprobe(u))
    assert found["video"]["codec_name"] == "h264" and found["audio"]["codec_name"] == "aac"
    assert decode_errors(u) == ""


def test_on_hls_and_on_hls_notify_follow_each_segment(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    hooks = HookServer()
    try:
        notify = hooks.url("notify/[app]/[stream]/[ts_url][param]")
        s = start_hls(srs_server, tmp_path, extra="hls_nb_notify 10;", vhost_extra=(
            f"http_hooks {{ enabled on; on_hls {hooks.url('hls')}; on_hls_notify {notify}; }}"))
        clients.spawn(publish_args(f"{s.url}/live/s?token=abc", 7), stdout=subprocess.DEVNULL)
        p = ended(s)
        wait_for(lambda: len(hooks.bodies("on_hls")) == len(p.segments) and len(hooks.gets) == len(p.segments))
        bodies = hooks.bodies("on_hls")
        first = bodies[0]
        for key in ("server_id", "service_id", "client_id", "ip", "vhost", "app", "tcUrl", "stream", "param",
                    "duration", "cwd", "file", "url", "m3u8", "m3u8_url", "seq_no", "stream_url", "stream_id"):
            assert key in first, key
        assert (first["app"], first["stream"], first["param"]) == ("live", "s", "?token=abc")
        assert [b["seq_no"] for b in bodies] == list(range(len(bodies)))
        assert [b["url"] for b in bodies] == [seg.uri for seg in p.segments]
        assert first["m3u8_url"] == "live/s.m3u8" and first["duration"] == 2.0
        assert (Path(first["cwd"]) / first["file"]).exists()
        assert hooks.gets[0] == "/notify/live/s/s-0.ts?token=abc"
        assert s.log_text().count("failed") == 0
    finally:
        hooks.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("on_error", ["continue", "disconnect"])
def test_a_full_disk_is_said_once_and_players_keep_playing(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path, small_disk: Path,
        on_error: str) -> None:
    s = start_hls(srs_server, tmp_path, extra=f"hls_on_error {on_error};", path=small_disk)
    url = f"{s.url}/live/s"
    publisher = clients.spawn(publish_args(url, 30), stdout=subprocess.DEVNULL)
    recording = tmp_path / "player.flv"
    record_flv(clients, url, recording)
    s.wait_log("write failed", timeout=30)
    if on_error == "continue":
        assert keeps_growing(recording, 4)  # the RTMP player does not notice
        hls = api_hls(s)
        assert hls is not None and hls["errors"] >= 2 and hls["writing"]
        assert s.log_text().count("write failed") == 1  # said once, however many segments fail
        assert publisher.poll() is None
    else:
        publisher.wait(15)  # the publisher is disconnected long before its 30 s
        s.wait_log("hls write failed")  # its line may follow the disconnect


def test_cleanup_off_keeps_every_segment_file(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path, extra="hls_cleanup off;", window=2)
    clients.spawn(publish_args(f"{s.url}/live/s", 9), stdout=subprocess.DEVNULL)
    p = ended(s)
    assert p.media_sequence >= 3  # segments left the playlist...
    time.sleep(5)  # ...longer ago than RFC 8216's grace
    assert len(list((tmp_path / "srs" / "live").glob("*.ts"))) == p.media_sequence + len(p.segments)


def publish_tags(s: Server, name: str, tags: list[Any], shift: Callable[[int], int]) -> None:
    """Publish FLV tags as a raw RTMP client, timestamps rewritten by `shift`, as fast as the
    socket takes them; unpublish once they are all out."""
    from rtmp_tools import RtmpTestClient

    from srv.rtmp.messages import Message

    async def run() -> None:
        c = RtmpTestClient(s.port)
        await c.open()
        status = await c.publish(name)
        assert status.code == "NetStream.Publish.Start", status
        for t in tags:
            c.send(Message(t.tag_type, 1, shift(t.timestamp) & 0xFFFFFFFF, t.payload))
        await c.drain()
        await asyncio.sleep(1)
        await c.close()

    asyncio.run(run())


@pytest.mark.parametrize("case", ["wrap", "jump_back"])
def test_timestamps_that_wrap_or_jump_back_still_play(
        srs_server: Callable[..., Server], tmp_path: Path, case: str) -> None:
    from media_tools import encode_h264_aac_flv

    from srv.media.flv import read_flv_file

    tags = list(read_flv_file(encode_h264_aac_flv(tmp_path / "in.flv", seconds=8)))
    s = start_hls(srs_server, tmp_path)
    if case == "wrap":
        publish_tags(s, "s", tags, lambda ts: ts + (1 << 32) - 3000)  # past 2^32 ms at 3 s
    else:
        publish_tags(s, "s", tags, lambda ts: ts if ts < 3000 else ts - 2500)  # back 2.5 s at 3 s
    p = ended(s)
    assert all(0 < seg.duration <= 2.5 for seg in p.segments)
    assert any(seg.discontinuity for seg in p.segments) == (case == "jump_back")
    assert decode_errors(f"http://127.0.0.1:{s.http_port}/live/s.m3u8") == ""


def test_a_gop_longer_than_the_fragment_is_said_once(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    s = start_hls(srs_server, tmp_path)
    args = publish_args(f"{s.url}/live/s", 12)
    args[args.index("-g") + 1] = "100"  # a keyframe every 4 s, fragment 2 s
    clients.spawn(args, stdout=subprocess.DEVNULL)
    s.wait_log("longer than", timeout=30)
    hls = wait_for(lambda: (h := api_hls(s)) is not None and h["long_gop"] and h)
    assert hls["gop"] == 4.0
    status, metrics = fetch(f"http://127.0.0.1:{s.exporter_port}/metrics")
    assert 'srs_hls_long_gop{app="live",stream="s",vhost="__defaultVhost__"} 1.0' in metrics.decode()
    p = ended(s)
    assert p.target_duration == 2  # constant, even though the segments cannot keep to it
    assert s.log_text().count("longer than hls_fragment") == 1


def test_a_quick_republish_keeps_what_it_took_over_from_the_dispose(
        srs_server: Callable[..., Server], clients: Clients, tmp_path: Path) -> None:
    # hls_dispose 1: the old writer (on either worker) disposes before the new one has a segment
    s = start_hls(srs_server, tmp_path, workers=2, dispose=1, window=30)
    url = f"{s.url}/live/s"
    clients.spawn(publish_args(url, 5), stdout=subprocess.DEVNULL)
    first = ended(s)
    clients.spawn(publish_args(url, 5), stdout=subprocess.DEVNULL)
    wait_for(lambda: (p := playlist(s)) is not None and not p.is_endlist, timeout=15)
    time.sleep(2)  # past the old writer's dispose
    p = ended(s)
    old = [seg.uri for seg in first.segments]
    assert [seg.uri for seg in p.segments[:len(old)]] == old  # went on with the playlist
    for seg in p.segments:
        assert fetch(f"http://127.0.0.1:{s.http_port}/live/{seg.uri}")[0] == 200, seg.uri
