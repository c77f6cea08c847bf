"""Measures the cost of cross-worker play (run through scripts/xworker-cost)."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from srv.rtmp import events as ev
from srv.rtmp.client import ClientSession

TOP = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def play_once(port: int, stream: str) -> tuple[int, float]:
    """(local port, seconds from sending play to the first media message)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    local = writer.get_extra_info("sockname")[1]
    session = ClientSession("live", f"rtmp://127.0.0.1:{port}/live")
    session.start()
    writer.write(session.data_to_send())
    t_play = 0.0
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                raise RuntimeError("server closed")
            for e in session.receive_data(data):
                if isinstance(e, ev.Connected):
                    session.create_stream()
                elif isinstance(e, ev.StreamCreated):
                    session.play(stream)
                    t_play = time.perf_counter()
                elif isinstance(e, ev.MediaMessage) and e.message.type_id == 9 and t_play:
                    return local, time.perf_counter() - t_play
            writer.write(session.data_to_send())
    finally:
        writer.close()


def worker_of(log: str, port: int) -> str:
    m = re.search(rf"\]\[w(\d)\]\[\d+\]\[[\d-]+\] 127\.0\.0\.1:{port} \S+ play start", log)
    return m.group(1) if m else "?"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--players", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xworker-"))
    port = free_port()
    conf = tmp / "srs.conf"
    log = tmp / "srs.log"
    conf.write_text(f"listen 127.0.0.1:{port}; pid {tmp}/srs.pid; daemon off; workers 2;\n"
                    f"srs_log_tank file; srs_log_file {log}; srs_log_level trace;\n"
                    "vhost __defaultVhost__ { }\n")
    srs = subprocess.Popen([str(TOP / "objs" / "srs"), "-c", str(conf)], cwd=tmp)
    pub = None
    try:
        while "ready:" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.05)
        pub = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25",
             "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1M", "-g", "50", "-f", "flv",
             f"rtmp://127.0.0.1:{port}/live/s"])
        while "publish start" not in log.read_text():
            time.sleep(0.05)
        owner = re.search(r"\]\[w(\d)\]\[\d+\]\[[\d-]+\] \S+ \S+ publish start", log.read_text())
        assert owner
        time.sleep(2)
        # 1. startup delay, one player at a time (so each cross-worker play starts a fresh pull)
        same, cross = [], []
        for _ in range(args.players):
            local, delay = asyncio.run(play_once(port, "s"))
            time.sleep(0.3)  # let the other worker's pull stop before the next player
            (same if worker_of(log.read_text(), local) == owner.group(1) else cross).append(delay * 1000)
        # 2. CPU of the non-owner worker while it carries the stream for one idle player
        workers = {p.pid: p for p in psutil.Process(srs.pid).children()}
        text = log.read_text()
        pids = {m.group(1): int(m.group(2)) for m in re.finditer(r"worker (\d) spawned, pid (\d+)", text)}
        other = [w for w in pids if w != owner.group(1)][0]
        proc = workers[pids[other]]

        async def hold_player() -> float:
            # keep one player on the other worker and read CPU over the window
            while True:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                local = writer.get_extra_info("sockname")[1]
                session = ClientSession("live", f"rtmp://127.0.0.1:{port}/live")
                session.start()
                writer.write(session.data_to_send())
                started = playing = False
                t0 = c0 = 0.0
                while True:
                    data = await reader.read(65536)
                    for e in session.receive_data(data):
                        if isinstance(e, ev.Connected):
                            session.create_stream()
                        elif isinstance(e, ev.StreamCreated):
                            session.play("s")
                        elif isinstance(e, ev.StatusEvent) and e.code == "NetStream.Play.Start":
                            playing = True
                    writer.write(session.data_to_send())
                    if playing and not started:
                        await asyncio.sleep(0.2)
                        if worker_of(log.read_text(), local) != other:
                            writer.close()
                            break
                        started = True
                        await asyncio.sleep(2)  # let the pull settle
                        t0, ct = time.monotonic(), proc.cpu_times()
                        c0 = ct.user + ct.system
                    elif started and time.monotonic() - t0 > args.seconds:
                        ct = proc.cpu_times()
                        writer.close()
                        return (ct.user + ct.system - c0) / (time.monotonic() - t0)

        idle0 = proc.cpu_times()
        time.sleep(args.seconds / 2)
        idle1 = proc.cpu_times()
        idle = (idle1.user + idle1.system - idle0.user - idle0.system) / (args.seconds / 2)
        carrying = asyncio.run(hold_player())

        def fmt(xs: list[float]) -> str:
            if not xs:
                return "n/a"
            return (f"n={len(xs)} median {statistics.median(xs):.1f} ms, "
                    f"min {min(xs):.1f}, max {max(xs):.1f}")

        print(f"stream: 640x360 x264 1 Mb/s, owner worker {owner.group(1)}")
        print(f"play -> first video, same worker : {fmt(same)}")
        print(f"play -> first video, cross worker: {fmt(cross)}")
        print(f"other worker CPU idle            : {idle * 100:.2f}% of a core")
        print(f"other worker CPU carrying 1 pull : {carrying * 100:.2f}% of a core "
              f"(+{(carrying - idle) * 100:.2f}%)")
        return 0
    finally:
        if pub is not None:
            pub.kill()
        srs.send_signal(signal.SIGTERM)
        srs.wait(10)


if __name__ == "__main__":
    sys.exit(main())
