"""scripts/bench --scenario hls: what HLS costs srv and nginx-rtmp (`hls on;`), side by side.

Muxing: K publishers of the bench source (H.264 720p + AAC, ~2.16 Mb/s, -c copy) and no
player, once with HLS off and once with HLS on (2 s fragments, 10 s window, files on disk);
the server's extra CPU over the window, divided by the published Mb/s, is what writing HLS
costs (segmenting, muxing to MPEG-TS, playlist and file writes). Measured on the server's own
process tree (psutil CPU times), so other tenants of the core do not count.

Serving: one publisher, HLS on, N fetchers (200, 1000) that each behave like a player on one
keep-alive HTTP/1.1 connection: every 2 s (the target duration) GET the playlist, then GET
every segment listed after the last one it has (the newest one at start). CPU-seconds of the
server per delivered GB (segments and playlists, as counted by the fetchers), and the
delivery: bytes fetched / (N x the source's rate). Beside that whole figure, the marginal
serving cost: the same server process is first measured for a window with the stream and no
fetcher (`stream_cpu`, cores: ingest, muxing, playlists), and (CPU with fetchers - stream_cpu x
the window) / delivered GB is what the fetchers alone cost (`marginal_cpu_s_per_gb`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench_lib import servers as sv

FETCH_INTERVAL = 2.0  # seconds between playlist polls: the target duration


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, chunked) of a response head."""
    status, length, chunked = int(head.split(b" ", 2)[1]), 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return status, length, chunked


class PlayerClients:
    """N player-like clients on one event loop, each on one keep-alive connection that it opens
    again after an error (counted); subclasses say what a player does on it (`session`)."""

    spread = FETCH_INTERVAL  # seconds over which the clients start: players do not arrive in step

    def __init__(self, host: str, port: int, playlist: str) -> None:
        self.host, self.port, self.playlist = host, port, playlist
        self.base = playlist.rsplit("/", 1)[0] + "/"
        self.bytes = 0
        self.errors = 0
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, n: int) -> None:
        for _ in range(n):
            self.tasks.append(asyncio.create_task(self.client()))

    async def client(self) -> None:
        await asyncio.sleep(random.uniform(0, self.spread))
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
            except OSError:
                self.errors += 1
                await asyncio.sleep(1)
                continue
            try:
                await self.session(reader, writer)
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
                self.errors += 1
                writer.close()
                await asyncio.sleep(0.5)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def playlist_body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """The playlist, once (b"" when it is not there)."""
        raise NotImplementedError

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()


class Fetchers(PlayerClients):
    """N HLS fetchers; `bytes` counts every body byte received."""

    def __init__(self, host: str, port: int, playlist: str) -> None:
        super().__init__(host, port, playlist)
        self.segments = 0

    async def get(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes | int:
        """GET path on the connection: the body if it is a playlist, else its length (counted)."""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        status, length, _ = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if status != 200:
            await reader.readexactly(length)
            raise OSError(f"GET {path}: {status}")
        if path.endswith(".m3u8"):
            body = await reader.readexactly(length)
            self.bytes += length
            return body
        left = length
        while left:
            chunk = await reader.read(min(left, 1 << 20))
            if not chunk:
                raise OSError("closed mid-body")
            left -= len(chunk)
            self.bytes += len(chunk)
        self.segments += 1
        return length

    async def playlist_body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        body = await self.get(reader, writer, self.playlist)
        return body if isinstance(body, bytes) else b""

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        last: str | None = None
        while True:
            t0 = time.monotonic()
            body = await self.get(reader, writer, self.playlist)
            assert isinstance(body, bytes)
            uris = [ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")]
            todo = uris[-1:] if last is None or last not in uris else uris[uris.index(last) + 1:]
            for uri in todo:
                await self.get(reader, writer, uri if uri.startswith("/") else self.base + uri)
                last = uri
            await asyncio.sleep(max(0.0, FETCH_INTERVAL - (time.monotonic() - t0)))


def make_hls(name: str, core: str, hls: bool) -> sv.Server:
    """srv, `srv@<dir>` (another tree's srv: A/B in one run) or nginx, HLS on or off."""
    return sv.make(name, core=core, hls=hls)


def two_segments(body: bytes) -> bool:
    return body.count(b"#EXTINF") >= 2


async def wait_playlist(clients: PlayerClients, ready: Callable[[bytes], bool] = two_segments,
                        timeout: float = 30) -> None:
    """Wait until the playlist the clients will read is `ready`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(clients.host, clients.port)
            try:
                if ready(await clients.playlist_body(reader, writer)):
                    return
            finally:
                writer.close()
        except (OSError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"no playlist at {clients.playlist} after {timeout}s")


async def muxing(session: Any, server_names: list[str], publishers: int, window: float, warmup: float,
                 log: Any) -> dict[str, Any]:
    """Per server: CPU with K publishers and HLS off, then on; the difference per published Mb/s."""
    out: dict[str, Any] = {}
    for name in server_names:
        r: dict[str, Any] = {}
        for hls in (False, True):
            server = make_hls(name, session.SERVER_CORE, hls)
            server.start()
            pubs = [session.Publisher(server.rtmp_url(f"s{i}")) for i in range(publishers)]
            try:
                await asyncio.sleep(warmup)
                s0, p0 = server.sample(), sum(p.written() for p in pubs)
                await asyncio.sleep(window)
                s1, p1 = server.sample(), sum(p.written() for p in pubs)
            finally:
                for p in pubs:
                    p.stop()
                server.stop()
            mbps = (p1 - p0) * 8 / window / 1e6
            files = len(list((server.workdir / "html").rglob("*.ts"))) if hls else 0
            r["on" if hls else "off"] = {"cpu": round((s1["cpu"] - s0["cpu"]) / window, 4),
                                         "published_mbps": round(mbps, 2), "ts_files": files}
            log(f"  {name} hls {'on' if hls else 'off'}, {publishers} publishers: {r['on' if hls else 'off']}")
        extra = r["on"]["cpu"] - r["off"]["cpu"]
        mbps = r["on"]["published_mbps"]
        r["hls_cpu"] = round(extra, 4)
        r["core_pct_per_mbps"] = round(100 * extra / mbps, 3) if mbps else None
        r["core_pct_per_2mbps_stream"] = round(200 * extra / mbps, 3) if mbps else None
        out[name] = r
    return out


async def serving(session: Any, server_names: list[str], steps: list[int], src_bps: float, window: float,
                  warmup: float, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in server_names:
        out[name] = {}
        for n in steps:
            server = make_hls(name, session.SERVER_CORE, True)
            server.start()
            pub = session.Publisher(server.rtmp_url("s"))
            fetchers = Fetchers("127.0.0.1", server.http_port, f"/{server.app}/s.m3u8")
            try:
                await wait_playlist(fetchers)
                # the stream alone first (ingest, muxing, playlists; no fetcher), same process
                await asyncio.sleep(warmup)
                q0, t0 = server.sample(), time.monotonic()
                await asyncio.sleep(window)
                q1, alone = server.sample(), time.monotonic() - t0
                fetchers.start(n)
                await asyncio.sleep(warmup + FETCH_INTERVAL)
                me = psutil.Process()
                c0, s0, b0, e0 = me.cpu_times(), server.sample(), fetchers.bytes, fetchers.errors
                t0 = time.monotonic()
                await asyncio.sleep(window)
                seconds = time.monotonic() - t0
                c1, s1, b1, e1 = me.cpu_times(), server.sample(), fetchers.bytes, fetchers.errors
            finally:
                fetchers.close()
                pub.stop()
                server.stop()
            gb = (b1 - b0) / 1e9
            cpu = s1["cpu"] - s0["cpu"]
            stream = (q1["cpu"] - q0["cpu"]) / alone  # cores the stream costs with no fetcher
            m = {"n": n, "gbps": round((b1 - b0) * 8 / seconds / 1e9, 3),
                 "delivery": round((b1 - b0) / seconds / (n * src_bps), 3),
                 "server_cpu": round(cpu / seconds, 3),
                 "cpu_s_per_gb": round(cpu / gb, 3) if gb > 0.001 else None,
                 "stream_cpu": round(stream, 4),
                 "marginal_cpu_s_per_gb": round((cpu - stream * seconds) / gb, 3) if gb > 0.001 else None,
                 "client_cpu": round((c1.user + c1.system - c0.user - c0.system) / seconds, 3),
                 "errors": e1 - e0, "rss_mib": round(s1["rss"] / 2**20, 1)}
            log(f"  {name} hls serving N={n}: {m}")
            out[name][str(n)] = m
            await asyncio.sleep(0.5)
    return out
