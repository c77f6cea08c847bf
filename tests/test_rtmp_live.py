"""RTMP live streaming with real clients: ffmpeg publishes, ffprobe/ffmpeg/rtmpdump play.

Every test starts the real ./objs/srs (master + workers) on free ports (conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Clients, Server, codecs, ffprobe, wait_for
from rtmp_tools import RtmpTestClient, run

from srv.media.flv import FlvError, FlvReader
from srv.rtmp import events as ev


def record(clients: Clients, url: str, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """An ffmpeg player that saves `seconds` of the stream, as received, to `out`."""
    return clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                          "-i", url, "-t", str(seconds), "-c", "copy", "-f", "flv", str(out)])


def duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "csv=p=0", str(path)], capture_output=True, text=True, timeout=30)
    return float(out.stdout.strip() or 0)


def decode_errors(path: Path) -> str:
    """What ffmpeg complains about when decoding the whole file (empty: it decodes cleanly)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stderr.strip()


def media_seconds(path: Path) -> float:
    """Seconds of audio/video in an FLV file that may still be growing (0 before its first tag)."""
    try:
        tags = FlvReader(check_previous_tag_size=False).feed(path.read_bytes())
    except (FileNotFoundError, FlvError):
        return 0.0
    stamps = [t.timestamp for t in tags if t.tag_type in (8, 9)]
    return (max(stamps) - min(stamps)) / 1000 if stamps else 0.0


def first_video_packet_is_key(path: Path) -> bool:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "packet=flags", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, timeout=30)
    flags = out.stdout.split()
    return bool(flags) and flags[0].startswith("K")


def publishing(s: Server, count: int = 1, timeout: float = 20) -> None:
    s.wait_log("publish start", timeout=timeout, count=count)


def test_ffprobe_reads_codecs_and_resolution_from_every_worker(srs_server, clients: Clients) -> None:
    s = srs_server(workers=2)
    clients.publish(f"{s.url}/live/livestream")
    publishing(s)
    served = set()
    for _ in range(16):
        streams = codecs(ffprobe(f"{s.url}/live/livestream"))
        assert streams["video"]["codec_name"] == "h264"
        assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
        assert streams["audio"]["codec_name"] == "aac"
        assert streams["audio"]["sample_rate"] == "44100"
        served = set(re.findall(r"\]\[w(\d)\]\[\d+\]\[[\d-]+\] [\d.:]+ \S+ play start", s.log_text()))
        if len(served) == 2:
            break
    assert served == {"1", "2"}, "players were not served by both workers"
    assert "pull __defaultVhost__/live/livestream from worker" in s.log_text()


def records_five_clean_seconds(s: Server, clients: Clients, tmp_path: Path) -> Path:
    """Publish with ffmpeg, record 5 s with an ffmpeg player: the file is whole and decodes."""
    clients.publish(f"{s.url}/live/s")
    publishing(s)
    out = tmp_path / "rec.flv"
    p = record(clients, f"{s.url}/live/s", out, 5)
    assert p.wait(30) == 0, p.stderr.read() if p.stderr else ""
    assert duration(out) >= 4.5
    assert decode_errors(out) == ""
    return out


def test_ffmpeg_records_five_seconds_that_decode(srs_server, clients: Clients, tmp_path: Path) -> None:
    out = records_five_clean_seconds(srs_server(workers=2), clients, tmp_path)
    assert first_video_packet_is_key(out)


def test_min_latency_plays_audio_and_video_that_decode(srs_server, clients: Clients, tmp_path: Path) -> None:
    """`min_latency on`: one send per video frame, the audio riding with it; nothing is lost."""
    s = srs_server(workers=2, body="vhost __defaultVhost__ { min_latency on; }\n")
    clients.publish(f"{s.url}/live/s")
    publishing(s)
    out = tmp_path / "rec.flv"
    p = record(clients, f"{s.url}/live/s", out, 4)
    assert p.wait(30) == 0, p.stderr.read() if p.stderr else ""
    streams = codecs(ffprobe(str(out)))
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert duration(out) >= 3.5
    assert decode_errors(out) == ""


def test_rtmpdump_plays(srs_server, clients: Clients, tmp_path: Path) -> None:
    s = srs_server(workers=2)
    clients.publish(f"{s.url}/live/s")
    publishing(s)
    out = tmp_path / "dump.flv"
    p = clients.spawn(["rtmpdump", "-q", "--live", "-r", f"{s.url}/live/s", "-o", str(out), "-B", "3"])
    wait_for(lambda: p.poll() is not None or media_seconds(out) >= 2.5, 30, interval=0.2,
             what="rtmpdump to save 2.5 s")
    assert p.poll() is None, p.stderr.read() if p.stderr else ""
    p.send_signal(signal.SIGINT)
    p.wait(10)
    streams = codecs(ffprobe(str(out)))
    assert streams["video"]["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"
    assert duration(out) >= 2


def test_twenty_players_on_two_workers_all_receive(srs_server, clients: Clients, tmp_path: Path) -> None:
    s = srs_server(workers=2)
    clients.publish(f"{s.url}/live/s")
    publishing(s)
    outs = [tmp_path / f"p{i}.flv" for i in range(20)]
    procs = [record(clients, f"{s.url}/live/s", out, 4) for out in outs]
    for p in procs:
        assert p.wait(60) == 0
    for out in outs:
        assert duration(out) >= 3.5, out
        assert first_video_packet_is_key(out), out
    workers = set(re.findall(r"\]\[w(\d)\]\[\d+\]\[[\d-]+\] [\d.:]+ \S+ play start", s.log_text()))
    assert workers == {"1", "2"}


def test_late_joiner_decodes_from_its_first_frame(srs_server, clients: Clients, tmp_path: Path) -> None:
    s = srs_server(workers=2, body="vhost __defaultVhost__ { play { gop_cache on; } }\n")
    clients.publish(f"{s.url}/live/s", video=["-c:v", "libx264", "-preset", "ultrafast", "-tune",
                                               "zerolatency", "-g", "100", "-pix_fmt", "yuv420p"])
    publishing(s)
    time.sleep(2.5)  # not a wait for an event: puts the players 2.5 s into a 4 s GOP
    for i in range(3):
        out = tmp_path / f"late{i}.flv"
        assert record(clients, f"{s.url}/live/s", out, 2).wait(30) == 0
        assert first_video_packet_is_key(out)
        assert decode_errors(out) == ""


def test_second_publisher_is_refused_whatever_its_worker(srs_server, clients: Clients) -> None:
    s = srs_server(workers=2)
    first = clients.publish(f"{s.url}/live/s")
    publishing(s)
    for _ in range(4):
        dup = clients.publish(f"{s.url}/live/s")
        assert dup.wait(20) != 0
    assert first.poll() is None, "the first publisher must not be disturbed"
    s.wait_log("publish refused", count=4)  # logged just after the answer ffmpeg exits on
    assert codecs(ffprobe(f"{s.url}/live/s"))["video"]["codec_name"] == "h264"


def test_bad_name_status_reaches_a_second_publisher(srs_server, clients: Clients) -> None:
    s = srs_server(workers=2)
    clients.publish(f"{s.url}/live/s")
    publishing(s)

    async def go() -> list[str]:
        codes = []
        for _ in range(4):
            c = RtmpTestClient(s.port)
            await c.open()
            status = await c.publish("s")
            codes.append(status.code)
            await c.close()
        return codes

    assert run(go()) == ["NetStream.Publish.BadName"] * 4


def test_player_connected_before_the_publisher_starts_when_it_arrives(
        srs_server, clients: Clients, tmp_path: Path) -> None:
    s = srs_server(workers=2)
    out = tmp_path / "early.flv"
    player = record(clients, f"{s.url}/live/early", out, 3)
    s.wait_log("play start")
    time.sleep(1)  # not a wait for an event: the player idles a while before the publisher comes
    clients.publish(f"{s.url}/live/early")
    assert player.wait(40) == 0
    assert duration(out) >= 2.5
    assert first_video_packet_is_key(out)


def test_player_keeps_waiting_across_publishers(srs_server, clients: Clients) -> None:
    s = srs_server(workers=2, body="vhost __defaultVhost__ { play { publish_notify on; } }\n")

    async def go() -> None:
        c = RtmpTestClient(s.port)
        await c.open()
        await c.play("s")
        pub = clients.publish(f"{s.url}/live/s", seconds=2)
        await c.expect(ev.StatusEvent, "NetStream.Play.PublishNotify", timeout=20)  # publish_notify on
        await c.expect(ev.MediaMessage, timeout=20)
        await asyncio.get_running_loop().run_in_executor(None, pub.wait, 30)
        await c.expect(ev.StatusEvent, "NetStream.Play.UnpublishNotify", timeout=20)
        c.media.clear()
        clients.publish(f"{s.url}/live/s", seconds=2)
        await c.expect(ev.MediaMessage, timeout=20)
        assert not c.closed.is_set()
        await c.close()

    run(go())


def test_killed_publisher_frees_the_stream_for_a_new_one(srs_server, clients: Clients) -> None:
    s = srs_server(workers=2)
    first = clients.publish(f"{s.url}/live/s")
    publishing(s)
    first.kill()
    first.wait()
    clients.publish(f"{s.url}/live/s")
    publishing(s, count=2)
    assert "publish refused" not in s.log_text()
    assert codecs(ffprobe(f"{s.url}/live/s"))["video"]["codec_name"] == "h264"


@pytest.mark.parametrize("mode", ["", "min_latency on;"], ids=["merge_window", "min_latency"])
def test_paused_player_does_not_disturb_others_and_is_dropped(
        srs_server, clients: Clients, tmp_path: Path, mode: str) -> None:
    s = srs_server(workers=1, body=f"vhost __defaultVhost__ {{ {mode} play {{ queue_length 2; }} }}\n")
    # constant 2 Mb/s (filler NALs), so the stalled player's buffers fill at a known pace
    pub = clients.publish(f"{s.url}/live/s", video=[
        "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-minrate", "2M", "-maxrate", "2M",
        "-bufsize", "1M", "-x264-params", "nal-hrd=cbr", "-g", "25", "-pix_fmt", "yuv420p"])
    publishing(s)

    async def stalled() -> None:
        c = RtmpTestClient(s.port, rcvbuf=4096)
        await c.open()
        await c.play("s")
        c.read = False  # stop reading: the kernel buffers fill, the server must push back
        deadline = time.monotonic() + 40
        while "player stalled for" not in s.log_text():  # until the server drops it
            assert time.monotonic() < deadline, "the stalled player was never dropped"
            await asyncio.sleep(0.2)
        await c.close()

    out = tmp_path / "ok.flv"
    good = record(clients, f"{s.url}/live/s", out, 8)
    run(stalled())
    assert good.wait(30) == 0
    assert duration(out) >= 7.5
    assert decode_errors(out) == ""
    assert pub.poll() is None
    s.wait_log("player stalled for")


def test_publisher_that_sends_nothing_is_dropped(srs_server, clients: Clients) -> None:
    s = srs_server(workers=1, body="vhost __defaultVhost__ { publish { firstpkt_timeout 1500; } }\n")

    async def go() -> None:
        c = RtmpTestClient(s.port)
        await c.open()
        status = await c.publish("idle")
        assert status.code == "NetStream.Publish.Start"
        await asyncio.wait_for(c.closed.wait(), 10)

    run(go())
    s.wait_log("firstpkt_timeout")
    clients.publish(f"{s.url}/live/idle")
    publishing(s, count=2)


def test_publisher_sending_media_outlives_normal_timeout(srs_server, clients: Clients) -> None:
    """A publisher's audio and video go to its source without an event per message: each read
    that carries media must still count as a sign of life, or normal_timeout would drop it."""
    s = srs_server(workers=1, body="vhost __defaultVhost__ { publish { normal_timeout 1000; } }\n")
    pub = clients.publish(f"{s.url}/live/alive")
    publishing(s)
    time.sleep(4)  # four normal_timeouts of real-time media
    assert pub.poll() is None
    assert "normal_timeout" not in s.log_text()
    pub.send_signal(signal.SIGSTOP)  # connected, silent: now normal_timeout drops it
    try:
        s.wait_log("normal_timeout 1s", timeout=10)
    finally:
        pub.send_signal(signal.SIGCONT)


def test_max_connections_closes_the_extra_ones(srs_server) -> None:
    import socket

    s = srs_server(workers=1, body="max_connections 3;\nvhost __defaultVhost__ { }\n")
    socks = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
    for x in socks:  # each one answers its handshake: the server holds (and counts) all three
        x.settimeout(10)
        x.sendall(b"\x03" + bytes(1536))
        assert x.recv(1) == b"\x03"
    extra = socket.create_connection(("127.0.0.1", s.port))
    extra.settimeout(5)
    assert extra.recv(10) == b""  # closed by the server
    s.wait_log("rejected: max_connections")
    for x in socks + [extra]:
        x.close()


def test_worker_crash_releases_its_streams(srs_server, clients: Clients) -> None:
    import psutil

    s = srs_server(workers=2)
    pub = clients.publish(f"{s.url}/live/s")
    publishing(s)
    m = re.search(r"\]\[w(\d)\]\[(\d+)\]\[[\d-]+\] [\d.:]+ \S+ publish start", s.log_text())
    assert m
    psutil.Process(int(m.group(2))).kill()
    s.wait_log(f"worker {m.group(1)} (pid {m.group(2)}) killed by SIGKILL")
    pub.wait(20)
    clients.publish(f"{s.url}/live/s")
    wait_for(lambda: s.log_text().count("publish start") >= 2, 20, what="republish")
    assert "publish refused" not in s.log_text()
    assert codecs(ffprobe(f"{s.url}/live/s"))["video"]["codec_name"] == "h264"
