"""What one HLS request costs a server, apart from any stream (run through scripts/hls-request-cost).

Each server (srv, `srv@<dir>`: another tree's srv, nginx) is started with HLS on and no
publisher; a playlist (~400 bytes) and one MPEG-TS segment (540 KB) are written into its
`hls_path` (their mtime touched every 2 s: nginx-rtmp's cleanup deletes old .ts files). C
keep-alive connections then ask, each in turn, for the playlist and the segment, R requests in
all; the server's process tree's user and system CPU over those requests (psutil), per request,
in microseconds. `floor` is `hls_request_floor.py`, the least Python + uvloop can do per request
(what srv's layers add is srv's figure minus the floor's). Servers take turns in each repeat
(A/B in the same run); the server is pinned to core 0 and this client to core 1, as in
scripts/bench.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_lib import servers as sv

SEGMENT = 540_000
PLAYLIST = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n"
            + "".join(f"#EXTINF:2.000,\ns-{i}.ts\n" for i in range(1, 6)))


async def read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def connection(port: int, app: str, count: list[int], stop: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    paths = [f"/{app}/s.m3u8", f"/{app}/s-1.ts"]
    i = 0
    try:
        while count[0] < stop:
            count[0] += 1
            path = paths[i % 2]
            i += 1
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n".encode())
            status = await read_answer(reader)
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
    finally:
        writer.close()


async def fresh(folder: Path) -> None:
    """Keep the files' mtime recent: nginx-rtmp's `hls_cleanup` deletes .ts files older than
    its playlist's length (both servers see the same touches)."""
    while True:
        await asyncio.sleep(2)
        for name in ("s.m3u8", "s-1.ts"):
            os.utime(folder / name)


async def requests(port: int, app: str, conns: int, n: int, folder: Path | None = None) -> float:
    count = [0]
    toucher = asyncio.ensure_future(fresh(folder)) if folder is not None else None
    t0 = time.monotonic()
    try:
        await asyncio.gather(*(connection(port, app, count, n) for _ in range(conns)))
    finally:
        if toucher is not None:
            toucher.cancel()
    return time.monotonic() - t0


def cpu(server: sv.Server) -> tuple[float, float]:
    user = system = 0.0
    for p in server.processes():
        t = p.cpu_times()
        user, system = user + t.user, system + t.system
    return user, system


@dataclass
class FloorServer(sv.Server):
    """`hls_request_floor.py`: a bare uvloop protocol answering the same files (the floor)."""

    name: str = "floor"

    def start(self) -> None:
        self.http_port = self.port
        super().start()

    def command(self) -> list[str]:
        return [str(sv.TOP / "objs" / "venv" / "bin" / "python"), str(Path(__file__).with_name("hls_request_floor.py")),
                str(self.port), str(self.workdir / "html")]


async def measure(name: str, conns: int, n: int) -> dict[str, Any]:
    server = FloorServer(name="floor", core="0") if name == "floor" else sv.make(name, core="0", hls=True)
    server.start()
    try:
        folder = server.workdir / "html" / server.app
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "s.m3u8").write_text(PLAYLIST)
        (folder / "s-1.ts").write_bytes((b"\x47" + os.urandom(187)) * (SEGMENT // 188))
        for _ in range(50):
            try:
                await requests(server.http_port, server.app, 1, 2)
                break
            except (OSError, RuntimeError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.2)
        await requests(server.http_port, server.app, conns, n // 10, folder)  # warm up
        u0, s0 = cpu(server)
        seconds = await requests(server.http_port, server.app, conns, n, folder)
        u1, s1 = cpu(server)
    finally:
        server.stop()
    return {"user_us": (u1 - u0) / n * 1e6, "sys_us": (s1 - s0) / n * 1e6, "req_s": n / seconds}


async def main_async(opts: argparse.Namespace) -> None:
    names = opts.server.split(",")
    got: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(opts.repeat):
        for name in names:
            m = await measure(name, opts.conns, opts.requests)
            got[name].append(m)
            print(f"run {r + 1} {name}: user {m['user_us']:.1f} us, system {m['sys_us']:.1f} us per request, "
                  f"{m['req_s']:.0f} req/s; load {os.getloadavg()[0]:.1f}", flush=True)
    print("\nserver | user µs/request (median) | system µs/request (median) | runs")
    for name, ms in got.items():
        print(f"{name} | {statistics.median(m['user_us'] for m in ms):.1f} | "
              f"{statistics.median(m['sys_us'] for m in ms):.1f} | {len(ms)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="srv,nginx",
                    help="comma-separated: srv, srv@<dir>, nginx, floor (a bare uvloop protocol: hls_request_floor.py)")
    ap.add_argument("--conns", type=int, default=20, help="keep-alive connections")
    ap.add_argument("--requests", type=int, default=20000, help="requests measured per server and run")
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    os.sched_setaffinity(0, {1})
    asyncio.run(main_async(opts))


if __name__ == "__main__":
    main()
