"""The bench's load client counts what a real player receives.

Against a real srv with a real ffmpeg publisher, three views of the same stream over the same
seconds must agree: the load client's counting players (raw bytes after Play.Start), a player
that parses every message (media payload bytes), and rtmpdump (payload bytes of the FLV it
writes). Speed is never asserted here; that is scripts/bench's job.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import loadclient as lc  # noqa: E402

from srv.media.flv import FlvReader  # noqa: E402

SECONDS = 12  # the publisher's length: one GOP (-g 500), so every player starts on its keyframe
ONE_GOP = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "500",
           "-pix_fmt", "yuv420p"]


def flv_media_bytes(path: Path) -> int:
    reader = FlvReader()
    tags = reader.feed(path.read_bytes())  # rtmpdump stopped mid-tag: no finish()
    return sum(len(t.payload) for t in tags if t.tag_type in (8, 9))


async def play_side_by_side(rtmp_url: str, rtmpdump_out: Path) -> dict[str, Any]:
    """Three counting views and rtmpdump join the live stream within its one GOP, so each starts
    on its keyframe from the GOP cache (the read carrying Play.Start carries media too) and gets
    every frame after it; the publisher's end (UnpublishNotify, `publish_notify on`) ends
    rtmpdump, and the counters are read once the parsing player has what rtmpdump wrote. The same
    stream from the same first frame to the same last one: whatever the load, no view gets a GOP
    more or a second less than another (joining a 1 s GOP at different moments and stopping
    rtmpdump by a signal while it lagged made the views differ by up to a GOP)."""
    url = lc.RtmpUrl.parse(rtmp_url)
    loop = asyncio.get_running_loop()
    dump = subprocess.Popen(["rtmpdump", "-q", "-v", "-r", rtmp_url, "-o", str(rtmpdump_out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counters = []
    for _ in range(2):
        _, p = await loop.create_connection(lambda: lc.RtmpPlayer(url), url.host, url.port)
        counters.append(p)
    _, parser = await loop.create_connection(lambda: lc.RtmpPlayer(url, parse=True),
                                             url.host, url.port)
    players = [*counters, parser]
    await asyncio.wait_for(asyncio.gather(*(p.ready for p in players)), 60)
    deadline = loop.time() + 90  # ceilings: the publisher's seconds on a loaded machine
    while dump.poll() is None and loop.time() < deadline:
        await asyncio.sleep(0.2)
    dumped = flv_media_bytes(rtmpdump_out) if dump.poll() == 0 else -1
    while parser.media_bytes < dumped and loop.time() < deadline:
        await asyncio.sleep(0.2)
    result = {"counted": [p.bytes for p in counters], "parsed": parser.media_bytes, "dumped": dumped,
              "failed": [p.failed for p in players]}
    for p in players:
        p.close()
    if dump.poll() is None:
        dump.kill()
    dump.wait(10)
    return result


@pytest.mark.timeout(240)
def test_load_client_counts_what_rtmpdump_and_a_parsing_player_receive(srs_server, clients,
                                                                     tmp_path, monkeypatch):
    # read every byte as it comes (the bench batches reads with SO_RCVLOWAT, which leaves up to
    # 32 KiB unread at any instant: a rounding error at 2 Mb/s, a big one for this small stream)
    monkeypatch.setattr(lc, "COUNTING_RCVLOWAT", 0)
    server = srs_server(workers=1, body="vhost __defaultVhost__ { play { publish_notify on; } }\n")
    stream = f"{server.url}/live/bench"
    clients.publish(stream, seconds=SECONDS, video=ONE_GOP)
    server.wait_log("publish start", timeout=60)
    time.sleep(1)  # the GOP cache holds a keyframe and a second of media: every player starts on it
    out = asyncio.run(play_side_by_side(stream, tmp_path / "dump.flv"))

    assert out["failed"] == ["", "", ""]
    dumped, parsed = out["dumped"], out["parsed"]
    assert dumped > 0, out  # rtmpdump ended at the unpublish
    assert parsed > 50_000, out  # ~12 s of a real stream, not a few control messages
    for counted in out["counted"]:
        # counted = payload + RTMP chunk headers: a little more than the payload, never less
        assert parsed * 0.97 <= counted <= parsed * 1.08, (counted, parsed)
        # rtmpdump got the same frames
        assert dumped * 0.85 <= counted <= dumped * 1.15, (counted, dumped)


@pytest.mark.timeout(30)
def test_rtmp_url_splits_app_stream_and_query():
    u = lc.RtmpUrl.parse("rtmp://127.0.0.1:1940/live/cam1?key=x")
    assert (u.host, u.port, u.app, u.stream) == ("127.0.0.1", 1940, "live", "cam1?key=x")
    assert u.tc_url == "rtmp://127.0.0.1:1940/live"


@pytest.mark.timeout(180)
def test_probe_process_times_each_video_message_from_the_kernels_arrival_to_its_parse(srs_server, tmp_path):
    """`loadclient.py --probe-publish` (the bench's latency probes in a process of their own):
    it publishes the file, plays it back with its probes and times each video message three ways,
    kernel arrival <= loop wake-up <= parsed, all after the publisher's write."""
    flv = tmp_path / "src.flv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=25", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "25", "-pix_fmt", "yuv420p", "-f", "flv", str(flv)], check=True, timeout=60)
    server = srs_server(workers=1)
    url = f"{server.url}/live/probe"
    proc = subprocess.Popen([sys.executable, str(Path(lc.__file__)), url, "-n", "2", "--probe-publish", url,
                             "--flv", str(flv)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": 2}

        def ask(command: str) -> dict[str, Any]:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            got: dict[str, Any] = json.loads(proc.stdout.readline())
            return got

        ask("clear")
        deadline = time.monotonic() + 60
        while ask("report").get("latency_samples", 0) < 40 and time.monotonic() < deadline:
            time.sleep(0.5)
        fig = ask("report")
        samples = ask("samples")["samples"]
    finally:
        proc.kill()
        proc.wait(10)
    assert fig["failed"] == [] and fig["latency_samples"] >= 40, fig
    assert len(samples) == fig["latency_samples"]
    for kernel, woke, parsed in samples:
        assert 0 < kernel <= woke <= parsed, (kernel, woke, parsed)
    assert any(kernel < woke for kernel, woke, _ in samples)  # the kernel's stamp, not the wake-up
    assert fig["latency_ms_kernel_p95"] <= fig["latency_ms_p95"] <= fig["latency_ms_max"]
