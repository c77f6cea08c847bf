"""scripts/bench: srv side by side with nginx-rtmp and node-media-server on this machine.

Each server runs pinned to core 0 (one worker); this process (the load client, one uvloop
loop, many sockets) and the ffmpeg publisher run on core 1. See docs/performance.md for what
each number means and how it is measured.

Scenarios:
  capacity  step N players until mean delivery < 98% of the source rate or server CPU > 95%;
            gives capacity, CPU-s per delivered GB at each N, RSS per player.
  latency   N counting players on the ffmpeg stream plus a second stream published by this
            process, with parse-everything probe players timing each video message.
  mw        srv only: the latency scenario for mw_latency 0 / 100 / 350 (+ min_latency on).
  workers   srv only: CPU per delivered GB at N players, workers 1 vs 2 (cross-worker pulls).
  forward   srv only: CPU per delivered GB with 0, 1, 2 forward destinations (nginx sinks).
  httpflv   srv only: CPU per delivered GB, N RTMP players vs N HTTP-FLV players.
  tls, dvr, hooks, edge, proxy
            srv side by side with nginx-rtmp (where it has the feature): RTMPS (nginx: its stream
            module's TLS in front of nginx-rtmp), recording, on_publish/on_play hooks, an edge
            pulling from an origin, srv's origin-cluster proxy; see bench_lib/features.py.
            dvr is not in the default set (--dvr-streams 1,20,100).
  ingest    every server (not in the default set): N publishers of the source from this process
            (scripts/loadclient.py IngestFleet: pre-chunked, real time), with 0 and with 1 player
            per stream, N stepped (--ingest-steps) until a publisher falls behind (> 1 s of its
            bytes waiting in the client), a player stalls (< 90 % of its stream in the window)
            or the server's CPU passes 95 %; CPU-s per ingested GB at each N.
  profile   srv only (not in the default set): py-spy on the worker while N players connect
            and in steady state; top functions by self and inclusive samples (--mw-latency and
            --min-latency set the srv it profiles).
  ingest-profile  srv only (not in the default set): py-spy on the worker over an ingest step
            (the first of --ingest-steps publishers), with 0 and with 1 player per stream.
  curve     (not in the default set) the latency/CPU curve: per srv variant of --curve (an
            mw_latency in ms, or "min" for `min_latency on` with its default window) and for
            nginx-rtmp, one server with the latency probes, players stepped over --curve-steps;
            CPU-s per delivered GB and latency p50/p95 at each step.
  hls       srv (also srv@<dir>) and nginx-rtmp (`hls on;`): HLS muxing cost per published Mb/s
            (K publishers, HLS off vs on) and serving cost (CPU-s per delivered GB at 200 and 1000
            fetchers; beside it the marginal cost: minus the same process's CPU with the stream
            and no fetcher); see bench_lib/hls.py.
  llhls     srv only (not in the default set): LL-HLS (hls_ll on, 0.2 s parts, 1 s GOP, two
            workers), N blocking-reload clients (--llhls-steps): how far behind live each
            blocking answer arrives (p50/p95) and the server's CPU per viewer; see
            bench_lib/llhls.py.

--check runs a quick fan-out + ingest comparison and judges srv / nginx-rtmp ratios against
the committed baseline docs/bench-results.json (bench_lib/check.py); --check --save rewrites it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/ for loadclient

import loadclient as lc  # noqa: E402

from bench_lib import check, features, hls, llhls  # noqa: E402
from bench_lib import servers as sv  # noqa: E402
from srv.media.flv import read_flv_file  # noqa: E402

SOURCE = sv.BENCH_DIR / "source.flv"
#: The source loops every LOOP_SECONDS; a window that is a multiple of it holds exactly
#: whole loops, so the expected bytes per player do not depend on where the window falls.
LOOP_SECONDS = 10
FULL_STEPS = [200, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 12000]
QUICK_STEPS = [50, 200]
SERVER_CORE, CLIENT_CORE = "0", "1"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_source() -> float:
    """Generate the source FLV once (H.264 ~2 Mb/s CBR-ish, keyframe every 2 s, AAC 128k);
    return its media payload rate in bytes/s."""
    if not SOURCE.exists():
        SOURCE.parent.mkdir(parents=True, exist_ok=True)
        log(f"generating {SOURCE}")
        tmp = f"{SOURCE}.{os.getpid()}.tmp"  # two runs making it at once each write their own
        subprocess.run(
            ["taskset", "-c", CLIENT_CORE, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
             "-t", str(LOOP_SECONDS), "-c:v", "libx264", "-preset", "veryfast",
             "-b:v", "2000k", "-maxrate", "2000k", "-bufsize", "1000k", "-g", "50",
             "-keyint_min", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "128k", "-f", "flv", tmp],
            check=True,
        )
        os.replace(tmp, SOURCE)
    payload = sum(len(t.payload) for t in read_flv_file(SOURCE) if t.tag_type in (8, 9))
    return payload / LOOP_SECONDS


class Publisher:
    """ffmpeg -re -stream_loop -1 -c copy of `source`, pinned to the client core."""

    def __init__(self, url: str, source: Path | None = None) -> None:
        source = source or SOURCE  # looked up now: --source replaces SOURCE after this is defined
        self.progress = sv.BENCH_DIR / "run" / f"progress-{os.getpid()}-{time.monotonic_ns()}.txt"
        self.progress.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["taskset", "-c", CLIENT_CORE, "ffmpeg", "-hide_banner", "-loglevel", "error",
             "-progress", str(self.progress), "-stats_period", "0.25",
             "-re", "-stream_loop", "-1", "-i", str(source), "-c", "copy", "-f", "flv", url],
            stdin=subprocess.DEVNULL,
        )

    def _last(self, field: str) -> int:
        """The last value of `field` ffmpeg wrote to its `-progress` file (every 0.25 s)."""
        try:
            with open(self.progress, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                tail = f.read().decode("ascii", "replace")
        except OSError:
            return 0
        values = [line.split("=", 1)[1] for line in tail.splitlines() if line.startswith(field + "=")]
        return int(values[-1]) if values and values[-1].strip().isdigit() else 0

    def written(self) -> int:
        """FLV bytes ffmpeg has muxed so far (`-progress` total_size): the source as sent, so a
        window's expected bytes do not depend on where it falls."""
        return self._last("total_size")

    def media_time(self) -> float:
        """Seconds of media ffmpeg has sent (`-progress` out_time_us)."""
        return self._last("out_time_us") / 1e6

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Session:
    """A started server with the ffmpeg publisher on stream "s" and a load client."""

    def __init__(self, server: sv.Server, opts: argparse.Namespace, source_bps: float) -> None:
        self.server = server
        self.opts = opts
        self.source_bps = source_bps
        self.pub: Publisher | None = None
        self.client: lc.LoadClient | None = None
        self.extra: list[Any] = []

    async def __aenter__(self) -> Session:
        self.server.start()
        self.pub = Publisher(self.server.publish_url())
        self.client = lc.LoadClient(self.server.rtmp_url(), self.server.flv_url())
        # wait until the stream plays (publisher connected and started)
        for _ in range(40):
            probe = lc.LoadClient(self.server.rtmp_url())
            if await probe.add(1, timeout=3):
                probe.close()
                break
            probe.close()
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"{self.server.name}: stream never started")
        await asyncio.sleep(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client:
            self.client.close()
        for x in self.extra:
            x.close()
        if self.pub:
            self.pub.stop()
        self.server.stop()
        await asyncio.sleep(0.5)

    async def measure(self, window: float) -> dict[str, Any]:
        assert self.client is not None
        c0 = psutil.cpu_times(percpu=True)[int(SERVER_CORE)]
        p0 = self.pub.written() if self.pub else 0
        s0 = self.server.sample()
        w = await self.client.window(window)
        s1 = self.server.sample()
        p1 = self.pub.written() if self.pub else 0
        c1 = psutil.cpu_times(percpu=True)[int(SERVER_CORE)]
        # cross-check: everything core 0 did (other tenants' jobs included: noise, not server)
        core_busy = (sum(c1) - c1.idle - c1.iowait) - (sum(c0) - c0.idle - c0.iowait)
        per = w.pop("per_player_bytes")
        d = lc.summarize(per, w["seconds"], self.source_bps)
        cpu = s1["cpu"] - s0["cpu"]
        gb = w["bytes"] / 1e9
        pub_bps = (p1 - p0) / w["seconds"]
        dp = lc.summarize(per, w["seconds"], pub_bps) if pub_bps > 0 else d
        return {
            "players": w["players"], "dropped": w["dropped"],
            # delivery: vs the FLV bytes ffmpeg sent in the same window (~0.3% FLV framing
            # more than RTMP's, so ~0.997 is "everything"); delivery_file: vs the file's media rate (sensitive to window edges)
            "delivery": round(dp["mean"], 4), "delivery_p5": round(dp["p5"], 4),
            "delivery_min": round(dp["min"], 4),
            "delivery_file": round(d["mean"], 4),
            "pub_mbps": round(pub_bps * 8 / 1e6, 3),
            "gbps": round(w["bytes"] * 8 / w["seconds"] / 1e9, 3),
            "server_cpu": round(cpu / w["seconds"], 3),
            "cpu_s_per_gb": round(cpu / gb, 3) if gb > 0.001 else None,
            # sends (write/writev syscalls) per player per second: what the merge window decides,
            # whatever else the core is doing
            "writes_per_player_s": round((s1.get("writes", 0) - s0.get("writes", 0)) / max(w["players"], 1)
                                         / w["seconds"], 2),
            "rss_mib": round(s1["rss"] / 2**20, 1),
            "core0_busy": round(core_busy / w["seconds"], 3),
            "client_cpu": round(w["client_cpu"], 3),
        }


class ProbeProcess:
    """The latency probes in a process of their own (`scripts/loadclient.py --probe-publish`),
    on the client core: a publisher of the source on its own stream and `n` timing players of
    it, in a loop that does nothing else, as a player's own process would. The load client's
    thousands of sockets share one loop; a probe inside it waits its turn behind them, which is
    the client's delay, not the server's (docs/performance.md, "What is measured")."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, server: sv.Server, stream: str = "latp", n: int = 3) -> ProbeProcess:
        proc = await asyncio.create_subprocess_exec(
            "taskset", "-c", CLIENT_CORE, sys.executable, str(Path(lc.__file__).resolve()),
            server.rtmp_url(stream), "-n", str(n), "--probe-publish", server.publish_url(stream),
            "--flv", str(SOURCE), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self = cls(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line or json.loads(line).get("ready") != n:
            self.close()
            raise RuntimeError(f"{server.name}: latency probe process did not start ({line!r})")
        return self

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        got: dict[str, Any] = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))
        return got

    def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


class LatencyProbes:
    """Both ways of timing a stream's video messages, side by side: probes in their own process
    (`latency_ms_*`, the figure reported) and probes inside the load client's loop
    (`latency_ms_inproc_*`, how the bench timed it before; the difference is the load client's
    own delay). Each has a `_kernel_` figure too: the kernel's arrival stamp of the read, i.e.
    the server and loopback alone."""

    def __init__(self, own: ProbeProcess, inproc: list[lc.TimedProbe]) -> None:
        self.own = own
        self.inproc = inproc

    @classmethod
    async def open(cls, sess: Session, server: sv.Server, n: int = 3) -> LatencyProbes:
        own = await ProbeProcess.start(server, "latp", n)
        sess.extra.append(own)
        pub, inproc = await lc.open_latency_probes(server.publish_url("lat"), server.rtmp_url("lat"), n,
                                                    str(SOURCE))
        sess.extra += [pub, *inproc]
        return cls(own, inproc)

    async def clear(self) -> None:
        await self.own.ask("clear")
        for p in self.inproc:
            p.samples.clear()

    async def figures(self) -> dict[str, Any]:
        out = await self.own.ask("report")
        out.pop("failed", None)
        out.update(lc.latency_figures(self.inproc, "latency_ms_inproc"))
        return out


async def grow(sess: Session, n: int, proto: str = "rtmp") -> None:
    assert sess.client is not None
    have = len([p for p in sess.client.players if not p.closed])
    if n > have:
        ok = await sess.client.add(n - have, proto)
        if ok < n - have:
            log(f"  only {ok}/{n - have} new players started")


async def capacity(server: sv.Server, opts: argparse.Namespace, src: float) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    async with Session(server, opts, src) as sess:
        base = sess.server.sample()
        await asyncio.sleep(2)
        base = sess.server.sample()
        for n in opts.steps:
            await grow(sess, n)
            await asyncio.sleep(opts.warmup)
            m = await sess.measure(opts.window)
            if m["delivery"] < 0.98 and m["server_cpu"] <= 0.95:
                # one window can end inside a merged write: measure once more before stopping
                log(f"  {server.name} N={n}: delivery {m['delivery']}, measuring again")
                m2 = await sess.measure(opts.window)
                m2["first_delivery"] = m["delivery"]
                m = m2 if m2["delivery"] > m["delivery"] else m
            m["n"] = n
            m["rss_per_player_kib"] = round((m["rss_mib"] * 2**20 - base["rss"]) / n / 1024, 1)
            steps.append(m)
            log(f"  {server.name} N={n}: {m}")
            if m["delivery"] < 0.98 or m["server_cpu"] > 0.95:
                break
    ok = [s for s in steps if s["delivery"] >= 0.98]
    return {"steps": steps, "capacity": max((s["n"] for s in ok), default=0),
            "rss_idle_mib": round(base["rss"] / 2**20, 1)}


async def point(server: sv.Server, opts: argparse.Namespace, src: float, n: int,
                proto: str = "rtmp", probes: int = 3,
                check_urls: tuple[str, ...] = ()) -> dict[str, Any]:
    """N counting players on "s" + latency probes on a stream this process publishes."""
    async with Session(server, opts, src) as sess:
        lat = await LatencyProbes.open(sess, server, probes) if probes else None
        base = server.sample()
        await grow(sess, n, proto)
        await asyncio.sleep(opts.warmup)
        if lat is not None:
            await lat.clear()
        m = await sess.measure(opts.window)
        m["n"] = n
        m["rss_per_player_kib"] = round((m["rss_mib"] * 2**20 - base["rss"]) / max(n, 1) / 1024, 1)
        m["protocol"] = proto
        if lat is not None:
            m.update(await lat.figures())
        if check_urls:
            # e.g. the forward destinations: does the stream really arrive there?
            got = []
            for url in check_urls:
                c = lc.LoadClient(url)
                ok = await c.add(1, timeout=5)
                if ok:
                    # nginx-rtmp holds video back until the next keyframe (2 s): skip that
                    await asyncio.sleep(2.5)
                    w = await c.window(5)
                    got.append(round(w["bytes"] * 8 / w["seconds"] / 1e6, 2))
                else:
                    got.append(0.0)
                c.close()
            m["check_mbps"] = got
        log(f"  {server.name} point N={n} {proto}: {m}")
        return m


def pyspy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the client core, raw (collapsed) stacks; summarised by top_functions."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    native = ["--native"] if os.environ.get("BENCH_PYSPY_NATIVE") else []  # C frames too (uvloop)
    return subprocess.Popen(
        ["taskset", "-c", CLIENT_CORE, str(exe), "record", *native, "--format", "raw", "--rate", "200",
         "-d", str(int(seconds)), "-o", str(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(raw: Path, n: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive share of samples per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split("(")[-1].split(":")[0].split("/")[-1] + ")"
                  for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    total = max(total, 1)

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(v / total * 100, 1)) for k, v in sorted(d.items(), key=lambda x: -x[1])[:n]]

    return {"self_pct": top(own), "inclusive_pct": top(incl), "samples": [("total", total)]}


async def profile(opts: argparse.Namespace, src: float) -> dict[str, Any]:
    """srv worker under py-spy: while N players connect, then in steady state."""
    out: dict[str, Any] = {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    server = sv.SrvServer(core=SERVER_CORE, mw_latency=opts.mw_latency, min_latency=opts.min_latency)
    async with Session(server, opts, src) as sess:
        worker = server.workers()[0].pid
        raw = sv.BENCH_DIR / f"profile-connect-{stamp}.txt"
        spy = pyspy(worker, 600, raw)
        t0 = time.monotonic()
        await grow(sess, opts.point_n)
        out["connect_seconds"] = round(time.monotonic() - t0, 2)
        spy.send_signal(2)
        spy.wait(30)
        if raw.exists():
            out["connect"] = top_functions(raw)
            out["connect"]["file"] = str(raw)
        await asyncio.sleep(opts.warmup)
        raw = sv.BENCH_DIR / f"profile-steady-{stamp}.txt"
        spy = pyspy(worker, opts.window, raw)
        out["steady_measure"] = await sess.measure(opts.window)
        spy.wait(30)
        if raw.exists():
            out["steady"] = top_functions(raw)
            out["steady"]["file"] = str(raw)
    log(f"  profile: {json.dumps(out, indent=1)}")
    return out


async def probed(server: sv.Server, opts: argparse.Namespace, src: float, steps: list[int],
                 probes: int = 3) -> list[dict[str, Any]]:
    """One server, the latency probes on a stream this process publishes, players stepped over
    `steps` on the ffmpeg stream: CPU per delivered GB and latency at each step."""
    out = []
    async with Session(server, opts, src) as sess:
        lat = await LatencyProbes.open(sess, server, probes)
        for n in steps:
            await grow(sess, n)
            await asyncio.sleep(opts.warmup)
            await lat.clear()
            m = await sess.measure(opts.window)
            m["n"] = n
            m.update(await lat.figures())
            log(f"  {server.name} N={n}: {m}")
            out.append(m)
            if m["server_cpu"] > 0.95:  # a short delivery is reported, not a stop: on a shared
                break  # machine one starved window is not the server's limit
    return out


async def curve(opts: argparse.Namespace, src: float) -> dict[str, Any]:
    """The latency/CPU curve: srv at each --curve variant, nginx-rtmp beside it (if asked)."""
    res: dict[str, Any] = {}
    srvs = [name for name in opts.servers if name == "srv" or name.startswith("srv@")]
    for v in opts.curve:
        for name in srvs:  # srv@<dir>: the same variant on another tree, right after (A/B)
            base, _, flag = v.partition("+")  # "min+nodelay": the same with tcp_nodelay on
            minlat = base == "min"
            mw = 350 if minlat else int(base)
            nodelay = True if flag == "nodelay" else None
            log(f"curve: {name} {'min_latency on' if minlat else f'mw_latency {mw}'}"
                f"{' tcp_nodelay on' if nodelay else ''}")
            server = sv.SrvServer(name=name, core=SERVER_CORE, mw_latency=mw, min_latency=minlat,
                                  tcp_nodelay=nodelay, tree=name.partition("@")[2])
            res[f"{name} mw={v}"] = await probed(server, opts, src, opts.curve_steps)
    for name in opts.servers:
        if name not in srvs:
            log(f"curve: {name}")
            res[name] = await probed(sv.make(name, core=SERVER_CORE), opts, src, opts.curve_steps)
    return res


def srv_has(feature: str) -> bool:
    top = sv.TOP / "srv"
    if feature == "forward":
        return (top / "net" / "forward.py").exists()
    if feature == "httpflv":
        return any("flv" in p.name.lower() or "remux" in p.name.lower()
                   for p in (top / "http").glob("*.py"))
    return True


async def run_once(opts: argparse.Namespace, src: float) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if "curve" in opts.scenarios:
        res["curve"] = {"curve": await curve(opts, src)}
    for name in opts.servers:
        r: dict[str, Any] = {}
        if "capacity" in opts.scenarios:
            log(f"{name}: capacity")
            r["capacity"] = await capacity(sv.make(name, core=SERVER_CORE), opts, src)
        if "latency" in opts.scenarios:
            log(f"{name}: latency at N={opts.point_n}")
            r["latency"] = await point(sv.make(name, core=SERVER_CORE), opts, src, opts.point_n)
        if "ingest" in opts.scenarios:
            r["ingest"] = await ingest(name, opts)
        if name == opts.servers[0] and "ingest-profile" in opts.scenarios:
            r["ingest_profile"] = await ingest_profile(opts)
        if name == "srv":
            if "profile" in opts.scenarios:
                log(f"srv: profile at N={opts.point_n}")
                r["profile"] = await profile(opts, src)
            if "mw" in opts.scenarios:
                r["mw"] = {}
                for mw, minlat in ((0, True), (100, False), (350, False)):
                    log(f"srv: mw_latency {mw} min_latency {minlat}")
                    s = sv.SrvServer(core=SERVER_CORE, mw_latency=mw, min_latency=minlat)
                    r["mw"][f"{mw}"] = await point(s, opts, src, opts.point_n)
            if "workers" in opts.scenarios:
                r["workers"] = {}
                for w in (1, 2):
                    log(f"srv: workers {w}")
                    s = sv.SrvServer(core=SERVER_CORE, workers_n=w)
                    r["workers"][str(w)] = await point(s, opts, src, opts.point_n, probes=0)
            if "forward" in opts.scenarios:
                if not srv_has("forward"):
                    log("srv: forward not implemented yet (no srv/net/forward.py): skipped")
                    r["forward"] = "skipped: not implemented"
                else:
                    r["forward"] = await forward(opts, src)
            if "llhls" in opts.scenarios:
                log(f"srv: llhls, blocking-reload clients {opts.llhls_steps}")
                r["llhls"] = await llhls.serving(sys.modules[__name__], opts.llhls_steps, opts.window, opts.warmup, log)
            if "httpflv" in opts.scenarios:
                if not srv_has("httpflv"):
                    log("srv: HTTP-FLV not implemented yet (srv/http is empty): skipped")
                    r["httpflv"] = "skipped: not implemented"
                else:
                    r["httpflv"] = {}
                    for proto in ("rtmp", "flv"):
                        s = sv.SrvServer(core=SERVER_CORE, http_flv=True)
                        r["httpflv"][proto] = await point(s, opts, src, opts.point_n, proto, 0)
        res[name] = r
    await features.run(sys.modules[__name__], opts, src, res)
    hls_servers = [n for n in opts.servers if n.partition("@")[0] in ("srv", "nginx")]
    if "hls" in opts.scenarios and hls_servers:
        log(f"hls muxing: {hls_servers}, {opts.hls_publishers} publishers, HLS off then on")
        mux = await hls.muxing(sys.modules[__name__], hls_servers, opts.hls_publishers, opts.window,
                               opts.warmup, log)
        log(f"hls serving: {hls_servers}, fetchers {opts.hls_steps}")
        serve = await hls.serving(sys.modules[__name__], hls_servers, opts.hls_steps, src, opts.window,
                                  opts.warmup, log)
        for name in hls_servers:
            res[name]["hls_muxing"] = mux[name]
            res[name]["hls_serving"] = serve[name]
    return res


async def ingest_step(server: sv.Server, n: int, players: int, window: float, warmup: float,
                      spy: Path | None = None) -> dict[str, Any]:
    """n streams published by one IngestFleet, `players` (0 or 1) counting players on each;
    `spy`: record py-spy's collapsed stacks of the (first) worker over the window there."""
    loop = asyncio.get_running_loop()
    server.start()
    fleet = lc.IngestFleet(str(SOURCE))
    watchers: list[lc.RtmpPlayer] = []
    try:
        urls = [server.rtmp_url(f"in{i}") for i in range(n)]
        for i in range(0, n, 20):
            await fleet.add(urls[i:i + 20])
        for u in urls if players else []:
            url = lc.RtmpUrl.parse(u)
            _, p = await loop.create_connection(lambda url=url: lc.RtmpPlayer(url), url.host, url.port)
            watchers.append(p)
        await asyncio.wait_for(asyncio.gather(*(p.ready for p in watchers)), 60)
        await asyncio.sleep(warmup)
        fleet.lag()
        spying = pyspy(server.workers()[0].pid, window, spy) if spy is not None else None
        a, t0 = server.sample(), time.monotonic()
        w0 = worker_cpu(server)
        sent0 = sum(p.bytes_sent for p in fleet.publishers)
        got0 = [p.bytes for p in watchers]
        await asyncio.sleep(window)
        b, t1 = server.sample(), time.monotonic()
        w1 = worker_cpu(server)
        if spying is not None:
            spying.wait(30)
        seconds = t1 - t0
        sent = sum(p.bytes_sent for p in fleet.publishers) - sent0
        lag = fleet.lag()
        delivery = [(p.bytes - g) / (fleet.byte_rate * seconds) for p, g in zip(watchers, got0, strict=True)]
        cpu = b["cpu"] - a["cpu"]
        behind = sum(1 for x, p in zip(lag, fleet.publishers, strict=True) if x > 1.0 or p.failed)
        stalled = sum(1 for d in delivery if d < 0.9) + sum(1 for p in watchers if p.closed)
        return {"publishers": n, "players": len(watchers), "behind": behind, "stalled": stalled,
                "lag_max_s": round(max(lag), 3), "ingest_mbps": round(sent * 8 / seconds / 1e6, 1),
                "server_cpu": round(cpu / seconds, 3), "worker_cpu": round((sum(w1) - sum(w0)) / seconds, 3),
                "worker_user": round((w1[0] - w0[0]) / seconds, 3), "worker_sys": round((w1[1] - w0[1]) / seconds, 3),
                "cpu_s_per_gb": round(cpu / (sent / 1e9), 2) if sent else None,
                "delivery_min": round(min(delivery), 3) if delivery else None,
                "rss_mib": round(b["rss"] / 2**20, 1)}
    finally:
        for w in watchers:
            w.close()
        fleet.close()
        server.stop()
        await asyncio.sleep(0.5)


def worker_cpu(server: sv.Server) -> tuple[float, float]:
    """(user, system) CPU seconds of the server's data-plane processes (srv: its workers, not
    the master): system is the kernel's side (reads, epoll, the TCP receive path)."""
    user = system = 0.0
    for p in server.workers():
        try:
            t = p.cpu_times()
            user += t.user
            system += t.system
        except psutil.NoSuchProcess:
            pass
    return user, system


async def ingest_profile(opts: argparse.Namespace) -> dict[str, Any]:
    """srv's worker under py-spy during an ingest step (the first --ingest-steps N), 0 and 1 player."""
    out: dict[str, Any] = {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = opts.ingest_steps[0]
    for name in [s for s in opts.servers if s.startswith("srv")]:  # srv, srv-mr<ms>
        for players in (0, 1):
            raw = sv.BENCH_DIR / f"profile-ingest-{name}-{n}x{players}-{stamp}.txt"
            log(f"{name}: profile of ingest, {n} publishers, {players} player(s) each")
            m = await ingest_step(sv.make(name, core=SERVER_CORE), n, players, opts.window, opts.warmup, spy=raw)
            if raw.exists():
                m["profile"] = top_functions(raw, 25)
                m["profile"]["file"] = str(raw)
            log(f"  {json.dumps(m, indent=1)}")
            out[f"{name}_players_{players}"] = m
    return out


async def ingest(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    """Publisher capacity and CPU per ingested GB, with 0 and with 1 player per stream."""
    out: dict[str, Any] = {}
    for players in opts.ingest_players:
        steps = []
        cap = 0
        for n in opts.ingest_steps:
            log(f"{name}: ingest {n} publishers, {players} player(s) each")
            m = await ingest_step(sv.make(name, core=SERVER_CORE), n, players, opts.window, opts.warmup)
            log(f"  {m}")
            steps.append(m)
            if m["behind"] or m["stalled"] or m["server_cpu"] > 0.95:
                break
            cap = n
        out[f"players_{players}"] = {"capacity": cap, "steps": steps}
    return out


async def forward(opts: argparse.Namespace, src: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in (0, 1, 2):
        sinks = [sv.NginxServer(name=f"sink{i}", core=sv_client_core()) for i in range(k)]
        for s in sinks:
            s.start()
        try:
            log(f"srv: forward to {k} destinations")
            s = sv.SrvServer(core=SERVER_CORE, forward_to=[f"127.0.0.1:{x.port}" for x in sinks])
            out[str(k)] = await point(s, opts, src, opts.point_n, probes=0,
                                      check_urls=tuple(x.rtmp_url() for x in sinks))
        finally:
            for s in sinks:
                s.stop()
    return out


def sv_client_core() -> str:
    return CLIENT_CORE


def fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def print_tables(runs: list[dict[str, Any]]) -> None:
    for i, res in enumerate(runs, 1):
        print(f"\n== run {i}")
        print(f"{'server':8} {'capacity':>8} {'cpu/GB@200':>10} {'cpu/GB@1000':>11} "
              f"{'KiB/player':>10} {'lat p50':>8} {'lat p95':>8} {'client cpu':>10}")
        for name, r in res.items():
            if "capacity" not in r and "latency" not in r:
                continue
            cap = r.get("capacity", {})
            steps = {s["n"]: s for s in cap.get("steps", [])}
            lat = r.get("latency", {})
            last = cap.get("steps", [{}])[-1] if cap.get("steps") else {}
            kib = next((steps[n]["rss_per_player_kib"] for n in (1000, 200) if n in steps),
                       last.get("rss_per_player_kib"))
            ccpu = max((s["client_cpu"] for s in cap.get("steps", [])), default=None)
            print(f"{name:8} {fmt(cap.get('capacity')):>8} "
                  f"{fmt(steps.get(200, {}).get('cpu_s_per_gb')):>10} "
                  f"{fmt(steps.get(1000, {}).get('cpu_s_per_gb')):>11} {fmt(kib):>10} "
                  f"{fmt(lat.get('latency_ms_p50')):>8} {fmt(lat.get('latency_ms_p95')):>8} "
                  f"{fmt(ccpu):>10}")
        for name, r in res.items():
            for s in r.get("capacity", {}).get("steps", []):
                print(f"  {name:6} N={s['n']:5} delivery {s['delivery']:.3f} (p5 "
                      f"{s['delivery_p5']:.3f}) {s['gbps']:6.2f} Gb/s cpu {s['server_cpu']:.2f} "
                      f"cpu/GB {fmt(s['cpu_s_per_gb'])} rss {s['rss_mib']} MiB "
                      f"client cpu {s['client_cpu']:.2f} dropped {s['dropped']}")
        for name, r in res.items():
            for k, v in r.get("ingest", {}).items():
                print(f"  {name:6} ingest, {k.replace('_', ' ')}: capacity {v['capacity']} publishers")
                for m in v["steps"]:
                    print(f"    N={m['publishers']:4} behind {m['behind']} stalled {m['stalled']} lag max "
                          f"{m['lag_max_s']} s {m['ingest_mbps']} Mb/s cpu {m['server_cpu']:.2f} "
                          f"cpu/GB {fmt(m['cpu_s_per_gb'])} rss {m['rss_mib']} MiB")
        print_hls(res)
        for n, m in res.get("srv", {}).get("llhls", {}).items():
            print(f"  srv llhls N={n}: behind live p50 {m['behind_p50']} s p95 {m['behind_p95']} s max "
                  f"{fmt(m['behind_max'])} s ({m['samples']} answers), after the part p50 "
                  f"{m['after_part_p50']} s p95 {m['after_part_p95']} s, publisher x{m['publisher_realtime']} "
                  f"real time, delivery {m['delivery']}, {m['cpu_ms_per_answer']} ms CPU per answer, "
                  f"cpu {m['server_cpu']} "
                  f"({m['core_pct_per_viewer']} % of a core per viewer), misses {m['misses']} errors {m['errors']}")
        for variant, steps in res.get("curve", {}).get("curve", {}).items():
            for m in steps:
                print(f"  curve {variant:12} N={m['n']:5} cpu/GB {fmt(m.get('cpu_s_per_gb'))} delivery "
                      f"{m['delivery']:.3f} cpu {m['server_cpu']:.2f} lat p50/p95/max "
                      f"{fmt(m.get('latency_ms_p50'))}/{fmt(m.get('latency_ms_p95'))}/"
                      f"{fmt(m.get('latency_ms_max'))} ms (kernel p95 {fmt(m.get('latency_ms_kernel_p95'))}; "
                      f"in the load client p50/p95 {fmt(m.get('latency_ms_inproc_p50'))}/"
                      f"{fmt(m.get('latency_ms_inproc_p95'))}, kernel p95 {fmt(m.get('latency_ms_inproc_kernel_p95'))}) "
                      f"sends/player/s {m.get('writes_per_player_s')} core0 {m['core0_busy']} "
                      f"client {m['client_cpu']}")
        srv = res.get("srv", {})
        for key in ("mw", "workers", "forward", "httpflv"):
            val = srv.get(key)
            if isinstance(val, dict):
                print(f"  srv {key}:")
                for k, m in val.items():
                    print(f"    {key}={k}: cpu/GB {fmt(m.get('cpu_s_per_gb'))} delivery "
                          f"{m['delivery']:.3f} cpu {m['server_cpu']:.2f} lat p50/p95 "
                          f"{fmt(m.get('latency_ms_p50'))}/{fmt(m.get('latency_ms_p95'))} ms")
            elif val:
                print(f"  srv {key}: {val}")
        for line in features.tables(res):
            print("  " + line)


def hls_rows(res: dict[str, Any]) -> list[str]:
    """Markdown rows: per server, HLS muxing cost and serving cost at each fetcher count."""
    rows = []
    for name, r in res.items():
        mux, serve = r.get("hls_muxing"), r.get("hls_serving")
        if not mux:
            continue
        cells = " | ".join(f"{fmt(m.get('cpu_s_per_gb'))} ({m['delivery']:.3f}, {m['gbps']} Gb/s; marginal "
                           f"{fmt(m.get('marginal_cpu_s_per_gb'))}, stream alone {fmt(m.get('stream_cpu'))})"
                           for m in (serve or {}).values())
        rows.append(f"| {name} | {mux['off']['cpu']} / {mux['on']['cpu']} | {mux['on']['published_mbps']} "
                    f"| {fmt(mux['core_pct_per_mbps'])} | {fmt(mux['core_pct_per_2mbps_stream'])} | {cells} |")
    return rows


def print_hls(res: dict[str, Any]) -> None:
    rows = hls_rows(res)
    if rows:
        steps = next(iter(r["hls_serving"] for r in res.values() if r.get("hls_serving")))
        print("  hls: server | CPU HLS off / on | published Mb/s | % core per Mb/s | % core per 2 Mb/s "
              "| " + " | ".join(f"CPU-s/GB (delivery, Gb/s; marginal CPU-s/GB, stream alone cores) @{n} fetchers"
                                 for n in steps))
        for row in rows:
            print("  " + row)


def markdown(runs: list[dict[str, Any]]) -> str:
    """The tables of docs/performance.md, from a results file (`scripts/bench --report F`)."""
    out: list[str] = []
    for i, res in enumerate(runs, 1):
        out += [f"\n**Run {i}**\n",
                "| server | capacity (players) | Gb/s at capacity | CPU-s/GB @200 | CPU-s/GB @1000 "
                "| RSS KiB/player | latency p50 / p95 ms (N=latency point) | load client CPU max |",
                "|---|---|---|---|---|---|---|---|"]
        for name, r in res.items():
            cap = r.get("capacity", {})
            steps = {s["n"]: s for s in cap.get("steps", [])}
            at = steps.get(cap.get("capacity"), {})
            lat = r.get("latency", {})
            kib = next((steps[n]["rss_per_player_kib"] for n in (1000, 500, 200) if n in steps), "-")
            ccpu = max((s["client_cpu"] for s in cap.get("steps", [])), default="-")
            out.append(
                f"| {name} | {fmt(cap.get('capacity'))} | {fmt(at.get('gbps'))} "
                f"| {fmt(steps.get(200, {}).get('cpu_s_per_gb'))} "
                f"| {fmt(steps.get(1000, {}).get('cpu_s_per_gb'))} | {kib} "
                f"| {fmt(lat.get('latency_ms_p50'))} / {fmt(lat.get('latency_ms_p95'))} "
                f"| {ccpu} |")
        out += ["", "| server | N | delivery (mean / min) | Gb/s | server CPU | CPU-s/GB | RSS MiB "
                "| client CPU |", "|---|---|---|---|---|---|---|---|"]
        for name, r in res.items():
            for st in r.get("capacity", {}).get("steps", []):
                out.append(f"| {name} | {st['n']} | {st['delivery']:.3f} / "
                           f"{st.get('delivery_min', 0):.3f} | {st['gbps']} | {st['server_cpu']} "
                           f"| {fmt(st['cpu_s_per_gb'])} | {st['rss_mib']} | {st['client_cpu']} |")
        srv = res.get("srv", {})
        rows = []
        for key in ("mw", "workers", "forward", "httpflv"):
            val = srv.get(key)
            if isinstance(val, dict):
                for k, m in val.items():
                    rows.append(f"| {key} = {k} | {m['n']} | {m['delivery']:.3f} | "
                                f"{m['server_cpu']} | {fmt(m.get('cpu_s_per_gb'))} | "
                                f"{fmt(m.get('latency_ms_p50'))} / {fmt(m.get('latency_ms_p95'))} |")
            elif val:
                rows.append(f"| {key} | - | {val} | | | |")
        if rows:
            out += ["", "| srv variant | N | delivery | server CPU | CPU-s/GB | latency p50 / p95 ms |",
                    "|---|---|---|---|---|---|", *rows]
        ingest_rows = [f"| {name} | {k.split('_')[1]} | {m['publishers']} | {m['ingest_mbps']} | {m['behind']} "
                       f"| {m['stalled']} | {m['lag_max_s']} | {m['server_cpu']} | {fmt(m['cpu_s_per_gb'])} "
                       f"| {m['rss_mib']} |"
                       for name, r in res.items() for k, v in r.get("ingest", {}).items() for m in v["steps"]]
        if ingest_rows:
            out += ["", "| server | players per stream | publishers | Mb/s ingested | behind | stalled | max lag s "
                    "| server CPU | CPU-s per ingested GB | RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|",
                    *ingest_rows]
        hls_table = hls_rows(res)
        if hls_table:
            steps = next(iter(r["hls_serving"] for r in res.values() if r.get("hls_serving")))
            out += ["", "| HLS | server CPU, HLS off / on (cores) | published Mb/s | % of a core per Mb/s "
                    "| % of a core per 2 Mb/s stream | "
                    + " | ".join(f"serving CPU-s/GB (delivery, Gb/s; marginal CPU-s/GB, stream alone cores) "
                                 f"@{n} fetchers" for n in steps) + " |",
                    "|---|---|---|---|---|" + "---|" * len(steps), *hls_table]
        out += features.tables(res)
    if len(runs) > 1:
        out += features.summary(runs)
    return "\n".join(out)


async def main_async(opts: argparse.Namespace) -> None:
    import signal

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    src = make_source()
    if opts.check:
        log(f"check: fan-out {opts.check_players} players, ingest {opts.check_publishers} publishers, "
            f"{opts.check_repeats} repeats, window {opts.window}s")
        got = await check.measure(sys.modules[__name__], opts, src)
        out = Path(opts.out) if opts.out else sv.BENCH_DIR / f"check-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(got, indent=1) + "\n")
        print(f"check results: {out}")
        opts.status = check.report(got, Path(opts.baseline), opts.tolerance, opts.save)
        return
    log(f"source media rate {src * 8 / 1e6:.3f} Mb/s; servers {opts.servers}; "
        f"scenarios {opts.scenarios}; steps {opts.steps}; window {opts.window}s")
    runs = []
    for i in range(opts.runs):
        log(f"run {i + 1}/{opts.runs}")
        runs.append(await run_once(opts, src))
    out = Path(opts.out) if opts.out else sv.BENCH_DIR / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "argv": sys.argv[1:], "rcvlowat": lc.COUNTING_RCVLOWAT, "source_mbps": src * 8 / 1e6, "window_s": opts.window,
        "load": os.getloadavg(), "runs": runs}, indent=1))
    print_tables(runs)
    print(f"\nresults: {out}")


def main() -> None:
    global SOURCE
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="all", help="srv|nginx|nms|all or a comma list")
    ap.add_argument("--scenario", default="",
                    help="comma list of capacity,latency,mw,workers,forward,httpflv,tls,dvr,hooks,edge,proxy,"
                         "ingest,ingest-profile,profile,hls,llhls,curve (default: all but dvr, ingest, "
                         "ingest-profile, profile, llhls, curve; --quick: capacity,latency)")
    ap.add_argument("--steps", default="", help="comma list of player counts")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--window", type=float, default=0, help="seconds measured per step")
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--point-n", type=int, default=0, help="N for latency/mw/workers/...")
    ap.add_argument("--quick", action="store_true", help="smoke run, under ~3 minutes")
    ap.add_argument("--rcvlowat", type=int, default=lc.COUNTING_RCVLOWAT,
                    help="SO_RCVLOWAT of counting players (0: read every segment, like a "
                         "real player; costs the load client far more CPU)")
    ap.add_argument("--ingest-steps", default="40,100,200,400", help="publisher counts for the ingest scenario")
    ap.add_argument("--ingest-players", default="0,1", help="players per stream in the ingest scenario (0, 1 or both)")
    ap.add_argument("--dvr-streams", default="1,20,100", help="published stream counts for the dvr scenario")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="print markdown tables and exit")
    ap.add_argument("--mw-latency", type=int, default=350, help="srv's mw_latency in the profile scenario")
    ap.add_argument("--min-latency", action="store_true", help="srv with min_latency on in the profile scenario")
    ap.add_argument("--curve", default="min,0,10,30,50,100,350",
                    help='srv variants of the curve scenario: mw_latency values in ms, "min" for min_latency on; '
                         'a "+nodelay" suffix (e.g. min+nodelay) adds tcp_nodelay on')
    ap.add_argument("--curve-steps", default="200,1000,3000", help="player counts of the curve scenario")
    ap.add_argument("--hls-publishers", type=int, default=4, help="publishers for the HLS muxing cost")
    ap.add_argument("--hls-steps", default="200,1000", help="HLS fetcher counts for the serving cost")
    ap.add_argument("--llhls-steps", default="100,1000", help="LL-HLS blocking-reload client counts")
    ap.add_argument("--source", default=str(SOURCE), help="the FLV every publisher loops (made if missing: "
                    f"{LOOP_SECONDS} s of 720p H.264 + AAC, ~2.16 Mb/s)")
    ap.add_argument("--out", help="write the results JSON here (default objs/bench/results-<stamp>.json)")
    ck = ap.add_argument_group("regression check (see scripts/bench_lib/check.py)")
    ck.add_argument("--check", action="store_true", help="quick fan-out + ingest run, srv / nginx-rtmp ratios "
                    "against the baseline; exit 1 on a regression")
    ck.add_argument("--save", action="store_true", help="with --check: write this run as the new baseline")
    ck.add_argument("--baseline", default=str(check.BASELINE), help="the baseline file (default: %(default)s)")
    ck.add_argument("--from", dest="from_", metavar="CHECK_JSON",
                    help="with --check: compare these saved check results instead of measuring")
    ck.add_argument("--tolerance", type=float, default=check.TOLERANCE,
                    help="a ratio this much above the baseline's is a regression (default %(default)s)")
    ck.add_argument("--check-repeats", type=int, default=2)
    ck.add_argument("--check-players", type=int, default=1000, help="players of the fan-out point")
    ck.add_argument("--check-publishers", type=int, default=40, help="publishers of the ingest points")
    opts = ap.parse_args()
    opts.hls_steps = [int(x) for x in opts.hls_steps.split(",")]
    opts.llhls_steps = [int(x) for x in opts.llhls_steps.split(",")]
    if opts.report:
        print(markdown(json.loads(Path(opts.report).read_text())["runs"]))
        return
    if opts.check and opts.from_:
        sys.exit(check.report(json.loads(Path(opts.from_).read_text()), Path(opts.baseline), opts.tolerance,
                              opts.save))
    opts.command = "scripts/bench " + " ".join(sys.argv[1:])
    opts.status = 0
    SOURCE = Path(opts.source)
    opts.servers = ["srv", "nginx", "nms"] if opts.server == "all" else opts.server.split(",")
    default_sc = ("capacity,latency" if opts.quick
                  else "capacity,latency,mw,workers,forward,httpflv,tls,hooks,edge,proxy,hls")
    opts.scenarios = (opts.scenario or default_sc).split(",")
    opts.dvr_streams = [int(x) for x in opts.dvr_streams.split(",")]
    opts.ingest_steps = [int(x) for x in opts.ingest_steps.split(",")]
    opts.curve = opts.curve.split(",")
    opts.curve_steps = [int(x) for x in opts.curve_steps.split(",")]
    opts.ingest_players = [int(x) for x in opts.ingest_players.split(",")]
    opts.steps = ([int(x) for x in opts.steps.split(",")] if opts.steps
                  else QUICK_STEPS if opts.quick else FULL_STEPS)
    opts.window = opts.window or (LOOP_SECONDS if opts.quick or opts.check else 2 * LOOP_SECONDS)
    opts.point_n = opts.point_n or (50 if opts.quick else 1000)
    if opts.quick or opts.check:
        opts.warmup = min(opts.warmup, 3)
    lc.COUNTING_RCVLOWAT = opts.rcvlowat
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # 12000 players need 12000 sockets here and in the server (which inherits this)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lc.install_uvloop()
    asyncio.run(main_async(opts))
    sys.exit(opts.status)


if __name__ == "__main__":
    main()
