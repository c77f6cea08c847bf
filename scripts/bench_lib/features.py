"""scripts/bench's feature scenarios: srv side by side with nginx-rtmp wherever nginx-rtmp has the feature.

  dvr    K streams published by this process, no players, on a server recording nothing, then
         recording everything: srv `dvr` (FLV and MP4, session plan), nginx-rtmp `record all`
         (FLV). The extra CPU per stream, per published Mb/s and per recorded GB; the bytes on
         disk show that it did record.
  tls    N RTMP players, then N RTMPS players on a fresh server: srv's `rtmps { }` listener;
         nginx-rtmp has no RTMPS, so nginx's own `stream { ssl }` module terminates TLS in front
         of its rtmp listener, in the same nginx process (one worker). CPU-s per delivered GB,
         RSS per player, seconds to connect them, the negotiated cipher.
  hooks  N players joining (50 at a time, each batch waited for) with on_publish/on_play calling
         a local hook server (bench_lib/hookserver.py, on the client core), and without hooks:
         server CPU per joining player, seconds from TCP connect to Play.Start (p50/p95), and the
         hook server's count of calls (every play must have asked it).
  edge   N players on an edge that pulls the stream from an origin (srv `cluster { mode remote; }`,
         nginx-rtmp `pull`), both pinned to the server core, the publisher on the origin: the
         edge's CPU-s per delivered GB, the origin's CPU, RSS per player, latency probes across
         publisher -> origin -> edge -> player.
  proxy  srv only (nginx-rtmp has no such role): N players straight to an origin, then through
         an srv origin-cluster proxy in front of one; the proxy's and the origin's CPU per GB,
         latency probes through each path.

Each scenario stores its rows under the server's name in the run's results (`res[name][key]`);
`tables()` renders them as markdown for stdout and `--report`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import loadclient as lc

from bench_lib import servers as sv
from bench_lib.hookserver import HookServer

SCENARIOS = ("dvr", "tls", "hooks", "edge", "proxy")
#: which servers each scenario runs (nginx-rtmp has no proxy role)
HAS = {"dvr": ("srv", "nginx"), "tls": ("srv", "nginx"), "hooks": ("srv", "nginx"),
       "edge": ("srv", "nginx"), "proxy": ("srv",)}


def fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def kind(name: str) -> str:
    """The software a server name runs: `srv@<dir>` (another tree's srv, for A/B runs) is srv."""
    return "srv" if name.startswith("srv@") else name


def make(name: str, core: str, **kw: Any) -> sv.Server:
    return sv.make(name, core=core, **kw)


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


async def publishing(bench: Any, server: sv.Server, streams: int, window: float, warmup: float) -> dict[str, Any]:
    """`streams` publishers of the source on one server: the server's CPU over `window` s."""
    loop = asyncio.get_running_loop()
    server.start()
    pubs: list[Any] = []
    try:
        for i in range(streams):
            url = lc.RtmpUrl.parse(server.rtmp_url(f"s{i}"))
            _, pub = await loop.create_connection(lambda url=url: lc.Publisher(url, str(bench.SOURCE)),
                                                  url.host, url.port)
            pubs.append(pub)
            await asyncio.wait_for(pub.started, 10)
        await asyncio.sleep(warmup)
        a, t0 = server.sample(), time.monotonic()
        sent0 = sum(p.bytes_sent for p in pubs)
        await asyncio.sleep(window)
        b, t1 = server.sample(), time.monotonic()
        sent = sum(p.bytes_sent for p in pubs) - sent0
        return {"cpu_percent": round((b["cpu"] - a["cpu"]) / (t1 - t0) * 100, 2),
                "published_mbps": round(sent * 8 / (t1 - t0) / 1e6, 2), "rss_mib": round(b["rss"] / 2**20, 1)}
    finally:
        for pub in pubs:
            pub.close()
        server.stop()


async def dvr(bench: Any, opts: argparse.Namespace, src: float, name: str) -> dict[str, Any]:
    """Server CPU with N published streams, recording off, then on (each format the server has)."""
    formats = ("flv", "mp4") if kind(name) == "srv" else ("flv",)
    out: dict[str, Any] = {}
    for n in opts.dvr_streams:
        row: dict[str, Any] = {}
        for form in ("", *formats):
            bench.log(f"{name}: {n} streams, recording {form or 'off'}")
            kw: dict[str, Any] = ({"dvr": form} if kind(name) == "srv" else {"record": bool(form)})
            server = make(name, bench.SERVER_CORE, **kw)
            row[form or "off"] = m = await publishing(bench, server, n, opts.window, opts.warmup)
            if form:
                m["recorded_mb"] = round(disk_bytes(server.workdir / "dvr") / 1e6, 1)
            bench.log(f"  {m}")
        for form in formats:
            extra = row[form]["cpu_percent"] - row["off"]["cpu_percent"]
            mbps = row[form]["published_mbps"] or 1.0
            row[form]["cost_cpu_percent_per_stream"] = round(extra / n, 3)
            row[form]["cost_cpu_percent_per_mbps"] = round(extra / mbps, 3)
            # extra CPU-seconds per second / recorded GB per second
            row[form]["cost_cpu_s_per_gb"] = round((extra / 100) / (mbps / 8000), 3)
        out[str(n)] = row
    return out


def cipher(client: lc.LoadClient) -> str | None:
    for p in client.players:
        got = p.transport.get_extra_info("cipher") if p.transport else None
        if got:
            return f"{got[1]} {got[0]}"
    return None


async def tls(bench: Any, opts: argparse.Namespace, src: float, name: str) -> dict[str, Any]:
    """N plain RTMP players, then (a new server) N RTMPS players: what TLS costs per GB and per player."""
    out: dict[str, Any] = {}
    for proto in ("rtmp", "rtmps"):
        bench.log(f"{name}: {opts.point_n} {proto} players")
        server = make(name, bench.SERVER_CORE, tls=True)
        async with bench.Session(server, opts, src) as sess:
            assert sess.client is not None
            sess.client.rtmps_url = server.rtmps_url()  # type: ignore[attr-defined]
            await asyncio.sleep(2)
            base = server.sample()
            t0 = time.monotonic()
            await bench.grow(sess, opts.point_n, proto)
            connect = time.monotonic() - t0
            await asyncio.sleep(opts.warmup)
            m = await sess.measure(opts.window)
            m.update(n=opts.point_n, protocol=proto, connect_seconds=round(connect, 2),
                     rss_per_player_kib=round((m["rss_mib"] * 2**20 - base["rss"]) / opts.point_n / 1024, 1))
            if proto == "rtmps":
                m["cipher"] = cipher(sess.client)
            bench.log(f"  {name} {proto}: {m}")
            out[proto] = m
    return out


async def join_timed(client: lc.LoadClient, n: int, batch: int = 50) -> list[float]:
    """Open n players `batch` at a time, each batch waited for; seconds from the batch's TCP
    connects to each player's Play.Start."""
    loop = asyncio.get_running_loop()
    took: list[float] = []
    for i in range(0, n, batch):
        t0 = time.monotonic()
        opened = await asyncio.gather(*(client._open(loop, "rtmp") for _ in range(min(batch, n - i))),
                                      return_exceptions=True)
        players = [p for p in opened if isinstance(p, lc.Player)]
        client.players.extend(players)
        if players:
            await asyncio.wait([asyncio.ensure_future(p.ready) for p in players], timeout=30)
        took += [p.started_at - t0 for p in players if p.counting]
    return took


async def hooks(bench: Any, opts: argparse.Namespace, src: float, name: str) -> dict[str, Any]:
    """N players joining without hooks, then with on_publish/on_play to a local hook server."""
    out: dict[str, Any] = {}
    for on in (False, True):
        bench.log(f"{name}: {opts.point_n} players joining, hooks {'on' if on else 'off'}")
        hook = HookServer(bench.CLIENT_CORE) if on else None
        try:
            server = make(name, bench.SERVER_CORE, hooks=hook.base if hook else "")
            async with bench.Session(server, opts, src) as sess:
                assert sess.client is not None
                await asyncio.sleep(2)
                s0, t0 = server.sample(), time.monotonic()
                took = await join_timed(sess.client, opts.point_n)
                s1, connect = server.sample(), time.monotonic() - t0
                await asyncio.sleep(opts.warmup)
                m = await sess.measure(opts.window)
                m.update(n=opts.point_n, hooks=on, started=len(took), connect_seconds=round(connect, 2),
                         play_start_ms_p50=round(1000 * (quantile(took, 0.5) or 0), 1),
                         play_start_ms_p95=round(1000 * (quantile(took, 0.95) or 0), 1),
                         cpu_ms_per_join=round(1000 * (s1["cpu"] - s0["cpu"]) / opts.point_n, 3))
                if hook:
                    calls = hook.stats()
                    m["hook_calls"] = {"on_publish": calls.get("/on_publish", 0), "on_play": calls.get("/on_play", 0)}
            bench.log(f"  {name} hooks {'on' if on else 'off'}: {m}")
            out["on" if on else "off"] = m
        finally:
            if hook:
                hook.stop()
    return out


async def edge(bench: Any, opts: argparse.Namespace, src: float, name: str) -> dict[str, Any]:
    """N players on an edge pulling from an origin (the same software, the same core)."""
    bench.log(f"{name}: {opts.point_n} players on an edge of an origin")
    pair = sv.EdgePair(name=f"{name}-edge", kind=name, core=bench.SERVER_CORE)
    m = await bench.point(pair, opts, src, opts.point_n)
    with_origin(m, pair, opts.window)
    return {str(opts.point_n): m}


def with_origin(m: dict[str, Any], pair: sv.OriginBehind, window: float) -> None:
    """Add the origin's CPU over the measured window beside the front server's."""
    gb_per_s = m["gbps"] / 8
    origin_cpu = pair.origin_cpu() / window
    m["origin_cpu"] = round(origin_cpu, 3)
    m["origin_cpu_s_per_gb"] = round(origin_cpu / gb_per_s, 3) if gb_per_s > 0 else None
    m["both_cpu_s_per_gb"] = round((m["server_cpu"] + origin_cpu) / gb_per_s, 3) if gb_per_s > 0 else None


async def proxy(bench: Any, opts: argparse.Namespace, src: float, name: str) -> dict[str, Any]:
    """N players on an origin directly, then N players through a proxy in front of one: what the
    relay costs per GB it moves (the proxy's CPU), and what the origin spends meanwhile."""
    bench.log(f"srv: {opts.point_n} players straight to the origin")
    direct = await bench.point(sv.SrvServer(core=bench.SERVER_CORE), opts, src, opts.point_n)
    bench.log(f"srv: {opts.point_n} players through a proxy")
    front = sv.SrvProxy(core=bench.SERVER_CORE)
    relayed = await bench.point(front, opts, src, opts.point_n)
    with_origin(relayed, front, opts.window)
    return {"direct": direct, "proxied": relayed}


RUNNERS = {"dvr": dvr, "tls": tls, "hooks": hooks, "edge": edge, "proxy": proxy}


async def run(bench: Any, opts: argparse.Namespace, src: float, res: dict[str, Any]) -> None:
    """Every requested feature scenario, for each requested server that has the feature."""
    for key in SCENARIOS:
        if key not in opts.scenarios:
            continue
        for name in [n for n in opts.servers if kind(n) in HAS[key]]:
            res.setdefault(name, {})[key] = await RUNNERS[key](bench, opts, src, name)


def _dvr_rows(res: dict[str, Any]) -> list[str]:
    rows = []
    for name, r in res.items():
        for n, row in r.get("dvr", {}).items():
            for form, m in row.items():
                if form == "off":
                    continue
                rows.append(f"| {name} | {n} | {m['published_mbps']} | {row['off']['cpu_percent']} | {form} "
                            f"| {m['cpu_percent']} | {m['cost_cpu_percent_per_stream']} "
                            f"| {m['cost_cpu_percent_per_mbps']} | {m['cost_cpu_s_per_gb']} | {m['recorded_mb']} "
                            f"| {row['off']['rss_mib']} / {m['rss_mib']} |")
    return (["| DVR: server | streams | published Mb/s | CPU %, off | recording | CPU %, on | extra % per stream "
             "| extra % per Mb/s | extra CPU-s per recorded GB | recorded MB | RSS MiB off / on |",
             "|---|---|---|---|---|---|---|---|---|---|---|", *rows] if rows else [])


def _tls_rows(res: dict[str, Any]) -> list[str]:
    rows = [f"| {name} | {m['n']} | {proto} | {m['delivery']:.3f} | {m['server_cpu']} | {fmt(m['cpu_s_per_gb'])} "
            f"| {m['rss_per_player_kib']} | {m['connect_seconds']} | {fmt(m.get('cipher'))} |"
            for name, r in res.items() for proto, m in r.get("tls", {}).items()]
    return (["| TLS: server | N | protocol | delivery | server CPU | CPU-s/GB | RSS KiB/player | connect s "
             "| cipher |", "|---|---|---|---|---|---|---|---|---|", *rows] if rows else [])


def _hooks_rows(res: dict[str, Any]) -> list[str]:
    rows = []
    for name, r in res.items():
        for key, m in r.get("hooks", {}).items():
            calls = m.get("hook_calls")
            rows.append(f"| {name} | {key} | {m['n']} | {m['started']} | {m['connect_seconds']} "
                        f"| {m['play_start_ms_p50']} / {m['play_start_ms_p95']} | {m['cpu_ms_per_join']} "
                        f"| {fmt(m['cpu_s_per_gb'])} | "
                        + (f"{calls['on_publish']} / {calls['on_play']} |" if calls else "- |"))
    return (["| hooks: server | hooks | N | players started | seconds to join all | Play.Start ms p50 / p95 "
             "| server CPU ms per join | CPU-s/GB after | hook calls on_publish / on_play |",
             "|---|---|---|---|---|---|---|---|---|", *rows] if rows else [])


def _relay_rows(res: dict[str, Any], key: str) -> list[str]:
    rows = [f"| {name} | {label} | {m['n']} | {m['delivery']:.3f} | {m['server_cpu']} | {fmt(m['cpu_s_per_gb'])} "
            f"| {fmt(m.get('origin_cpu'))} | {fmt(m.get('origin_cpu_s_per_gb'))} | {fmt(m.get('both_cpu_s_per_gb'))} "
            f"| {fmt(m.get('rss_per_player_kib'))} | {fmt(m.get('latency_ms_p50'))} / {fmt(m.get('latency_ms_p95'))} |"
            for name, r in res.items() for label, m in r.get(key, {}).items()]
    # the front is the server the players connect to: the edge, the proxy, or (direct) the origin
    return ([f"| {key}: server | {'N' if key == 'edge' else 'path'} | players | delivery | front CPU "
             "| front CPU-s/GB | origin CPU | origin CPU-s/GB | both CPU-s/GB | front RSS KiB/player "
             "| latency p50 / p95 ms |", "|---|---|---|---|---|---|---|---|---|---|---|", *rows] if rows else [])


def tables(res: dict[str, Any]) -> list[str]:
    """Markdown tables of every feature scenario in one run's results (blank line between)."""
    out: list[str] = []
    for table in (_dvr_rows(res), _tls_rows(res), _hooks_rows(res), _relay_rows(res, "edge"),
                  _relay_rows(res, "proxy")):
        if table:
            out += ["", *table]
    return out


#: per scenario, the figures `summary()` gives as median (range) over runs
SUMMARY_FIELDS: dict[str, list[tuple[str, str]]] = {
    "dvr": [("cpu_percent", "CPU % (off: without recording)"), ("cost_cpu_percent_per_stream", "extra % per stream"),
            ("cost_cpu_s_per_gb", "extra CPU-s per recorded GB"), ("rss_mib", "RSS MiB")],
    "tls": [("delivery", "delivery"), ("cpu_s_per_gb", "CPU-s/GB"), ("rss_per_player_kib", "RSS KiB/player"),
            ("connect_seconds", "connect s")],
    "hooks": [("play_start_ms_p50", "Play.Start ms p50"), ("play_start_ms_p95", "Play.Start ms p95"),
              ("cpu_ms_per_join", "server CPU ms per join"), ("connect_seconds", "seconds to join all")],
    "edge": [("delivery", "delivery"), ("cpu_s_per_gb", "front CPU-s/GB"), ("origin_cpu", "origin CPU"),
             ("both_cpu_s_per_gb", "both CPU-s/GB"), ("rss_per_player_kib", "front RSS KiB/player"),
             ("latency_ms_p50", "latency ms p50"), ("latency_ms_p95", "latency ms p95")],
}
SUMMARY_FIELDS["proxy"] = SUMMARY_FIELDS["edge"]


def _variants(key: str, got: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A scenario's rows by a label (dvr: "<streams> <format>")."""
    if key == "dvr":
        return {f"{n} {form}": m for n, row in got.items() for form, m in row.items()}
    return dict(got)


def _spread(xs: list[float]) -> str:
    """`median [min, max]`, three significant digits."""
    def g(x: float) -> str:
        return f"{float(f'{x:.3g}'):g}"

    return g(statistics.median(xs)) if len(xs) == 1 else f"{g(statistics.median(xs))} [{g(min(xs))}, {g(max(xs))}]"


def summary(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown: each feature figure as its median [min, max] over the runs."""
    out: list[str] = []
    for key, fields in SUMMARY_FIELDS.items():
        rows = []
        for name, r in runs[0].items():
            for label in _variants(key, r.get(key, {})):
                cells = []
                for field_name, _ in fields:
                    xs = [m[field_name] for run in runs
                          if (m := _variants(key, run.get(name, {}).get(key, {})).get(label)) is not None
                          and m.get(field_name) is not None]
                    cells.append(_spread(xs) if xs else "-")
                rows.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
        if rows:
            out += ["", f"| {key}: server | variant | " + " | ".join(h for _, h in fields) + " |",
                    "|---|---|" + "---|" * len(fields), *rows]
    if out:
        out = ["", f"**Feature scenarios, median [min, max] over {len(runs)} runs**", *out]
    return out
