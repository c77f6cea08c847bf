"""scripts/bench --scenario llhls: what LL-HLS blocking reloads cost srv, and how far behind
live they deliver (srv only: nginx-rtmp and SRS have no LL-HLS).

One publisher of a 1 s GOP source (H.264 720p + AAC, -c copy), `hls_ll on; hls_part 0.2;
hls_fragment 1;` over two workers, and N clients that each behave like an LL-HLS player on one
keep-alive HTTP/1.1 connection (SO_REUSEPORT spreads them over the workers): ask the playlist
for the part after the last one it has (`?_HLS_msn=M&_HLS_part=P`, held by the server until the
part is there), then GET that part. Measured over the window:

- behind live: for every blocking answer, the wall clock when it arrived minus the wall-clock
  end of the part it asked for (the segment's `EXT-X-PROGRAM-DATE-TIME`, the server's clock at
  its first frame, plus the durations of its parts up to this one): what the server adds
  between a part's last frame reaching it and a player knowing of the part; p50, p95, max. A
  player adds its hold-back (`PART-HOLD-BACK`, 0.6 s) on top;
- CPU: the server's process tree (psutil), per viewer and per blocking answer (with the part
  fetched after it); `delivery`: answers / the parts the viewers should have had (one per part
  duration each), so under 1 means the server (or this client) could not keep up;
- answers that were not the part asked for (a 503 after holding, a 400), and errors.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from bench_lib import servers as sv
from bench_lib.hls import PlayerClients, parse_head, wait_playlist

SOURCE_GOP1 = sv.BENCH_DIR / "source-gop1.flv"
PART = 0.2  # seconds
LL_CONF = f"hls_fragment 1; hls_window 6; hls_ll on; hls_part {PART}; hls_use_fmp4 on;"


def make_source(core: str) -> Path:
    """The bench source again, with a keyframe every second (LL-HLS wants a short GOP)."""
    if not SOURCE_GOP1.exists():
        SOURCE_GOP1.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["taskset", "-c", core, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
             "-t", "10", "-c:v", "libx264", "-preset", "veryfast",
             "-b:v", "2000k", "-maxrate", "2000k", "-bufsize", "1000k", "-g", "25",
             "-keyint_min", "25", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(SOURCE_GOP1) + ".tmp"],
            check=True,
        )
        os.replace(str(SOURCE_GOP1) + ".tmp", SOURCE_GOP1)
    return SOURCE_GOP1


def epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parts_of(text: str) -> tuple[dict[tuple[int, int], tuple[str, float]], int, int]:
    """{(msn, part): (uri, wall-clock end)}, and the (msn, part) of the preload hint."""
    msn, part, start, offset = 0, 0, 0.0, 0.0
    out: dict[tuple[int, int], tuple[str, float]] = {}
    for line in text.split("\n"):
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:"):
            msn += int(line.rsplit("=", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            start, offset = epoch(line.split(":", 1)[1]), 0.0
        elif line.startswith("#EXT-X-PART:"):
            attrs = dict(a.split("=", 1) for a in line.split(":", 1)[1].split(","))
            offset += float(attrs["DURATION"])
            out[(msn, part)] = (attrs["URI"].strip('"'), start + offset)
            part += 1
        elif line and not line.startswith("#"):
            msn, part, offset = msn + 1, 0, 0.0
    return out, msn, part


class LlClients(PlayerClients):
    """N blocking-reload clients on one event loop."""

    spread = 1.0

    def __init__(self, host: str, port: int, playlist: str, folder: Path | None = None) -> None:
        super().__init__(host, port, playlist)
        self.folder = folder  # where the parts are on disk (this machine): their mtime
        self.behind: list[float] = []  # seconds behind live of each blocking answer, while measuring
        self.after_part: list[float] = []  # seconds from the part's last write to the answer
        self.measuring = False
        self.answers = 0
        self.misses = 0  # answers without the part asked for (503, 400)

    async def get(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> tuple[int, bytes]:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        status, length, chunked = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if not chunked:
            body = await reader.readexactly(length)
        else:
            pieces = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                pieces.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in pieces)
        self.bytes += len(body)
        return status, body

    async def playlist_body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        status, body = await self.get(reader, writer, self.playlist)
        return body if status == 200 else b""

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, body = await self.get(reader, writer, self.playlist)
        _, msn, part = parts_of(body.decode())
        while True:
            status, body = await self.get(reader, writer, f"{self.playlist}?_HLS_msn={msn}&_HLS_part={part}")
            now = time.time()
            self.answers += 1
            listed, next_msn, next_part = parts_of(body.decode()) if status == 200 else ({}, msn, part)
            got = listed.get((msn, part))
            if got is None and status == 200 and msn < next_msn:
                msn, part = msn + 1, 0  # segment msn ended with fewer parts: the next one's first
                continue
            if got is None:
                self.misses += 1
                msn, part = next_msn, next_part
                await asyncio.sleep(0.2)
                continue
            if self.measuring:
                self.behind.append(now - got[1])
                if self.folder is not None:
                    try:
                        self.after_part.append(now - os.stat(self.folder / got[0]).st_mtime)
                    except OSError:
                        pass
            await self.get(reader, writer, self.base + got[0])
            msn, part = (msn, part + 1) if (msn, part + 1) in listed or msn >= next_msn else (msn + 1, 0)


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def serving(session: Any, steps: list[int], window: float, warmup: float, log: Any) -> dict[str, Any]:
    make_source(session.CLIENT_CORE)
    out: dict[str, Any] = {}
    for n in steps:
        server = sv.SrvServer(core=session.SERVER_CORE, hls=True, workers_n=2, hls_extra=LL_CONF)
        server.start()
        pub = session.Publisher(server.rtmp_url("s"), SOURCE_GOP1)
        clients = LlClients("127.0.0.1", server.http_port, f"/{server.app}/s.m3u8",
                            server.workdir / "html" / server.app)
        try:
            await wait_playlist(clients, lambda body: body.count(b"#EXTINF") >= 2 and b"PRELOAD-HINT" in body)
            clients.start(n)
            await asyncio.sleep(warmup + 2)
            me = psutil.Process()
            clients.measuring = True
            c0, s0, a0, m0, e0, b0 = me.cpu_times(), server.sample(), clients.answers, clients.misses, \
                clients.errors, clients.bytes
            t0, p0 = time.monotonic(), pub.media_time()
            await asyncio.sleep(window)
            seconds = time.monotonic() - t0
            c1, s1, a1, m1, e1, b1 = me.cpu_times(), server.sample(), clients.answers, clients.misses, \
                clients.errors, clients.bytes
            p1 = pub.media_time()
            clients.measuring = False
        finally:
            clients.close()
            pub.stop()
            server.stop()
        cpu = (s1["cpu"] - s0["cpu"]) / seconds
        behind = clients.behind
        answers = (a1 - a0) / seconds
        m = {"n": n, "answers_per_s": round(answers, 1),
             # of the parts the viewers should have had (one per 0.2 s each): under 1, they fell behind
             "delivery": round(answers / (n / PART), 3),
             # server CPU per blocking answer and the part fetched after it
             "cpu_ms_per_answer": round(1000 * cpu / answers, 3) if answers else None,
             "behind_p50": round(percentile(behind, 50) or 0, 3), "behind_p95": round(percentile(behind, 95) or 0, 3),
             "behind_max": round(max(behind), 3) if behind else None, "samples": len(behind),
             "after_part_p50": round(percentile(clients.after_part, 50) or 0, 3),
             "after_part_p95": round(percentile(clients.after_part, 95) or 0, 3),
             # media seconds ffmpeg sent per wall second: under 1, the publisher (or the machine)
             # is behind real time and "behind" grows with it
             "publisher_realtime": round((p1 - p0) / seconds, 3),
             "server_cpu": round(cpu, 3), "core_pct_per_viewer": round(100 * cpu / n, 4),
             "mbps": round((b1 - b0) * 8 / seconds / 1e6, 1),
             "client_cpu": round((c1.user + c1.system - c0.user - c0.system) / seconds, 3),
             "misses": m1 - m0, "errors": e1 - e0, "rss_mib": round(s1["rss"] / 2**20, 1),
             "load": [round(x, 2) for x in os.getloadavg()]}
        log(f"  srv llhls N={n}: {m}")
        out[str(n)] = m
        await asyncio.sleep(0.5)
    return out
