"""scripts/bench --check: did a change to the hot path make srv lose ground against nginx-rtmp?

A quick run (about 3-4 minutes with the defaults) of the fan-out and ingest scenarios, srv and
nginx-rtmp one after the other on the server core, `--check-repeats` times (the order swaps each
repeat). Each metric is srv's figure divided by nginx-rtmp's **from the same repeat**, so the
machine's load at that moment moves both sides; the metric's ratio is the median over repeats.
Absolute figures are kept in the file for reading but never compared.

  fanout_cpu_s_per_gb@N       CPU-s per delivered GB, N players of one 2.16 Mb/s stream
  ingest_cpu_s_per_gb@Kx0     CPU-s per ingested GB, K real-time publishers, no players
  ingest_cpu_s_per_gb@Kx1     the same with one player per stream

The run is compared with the committed baseline (docs/bench-results.json, written by
`--check --save`): a ratio more than `--tolerance` (default 25 %) above the baseline's is a
regression. Exit status: 0 no regression, 1 a regression (named on the last line), 2 nothing
could be compared (no baseline for these sizes, or a side measured no CPU).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench_lib import servers as sv

BASELINE = sv.TOP / "docs" / "bench-results.json"
TOLERANCE = 0.25
OK, REGRESSION, NOT_COMPARED = 0, 1, 2


def commit() -> str:
    got = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=sv.TOP, capture_output=True, text=True)
    return got.stdout.strip() or "unknown"


class Metrics:
    """Per metric: srv's and nginx-rtmp's figure in each repeat, and whether the run was sound."""

    def __init__(self) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}

    def add(self, key: str, what: str, name: str, value: float | None, sound: bool, note: str) -> None:
        m = self.by_key.setdefault(key, {"what": what, "srv": [], "nginx": [], "sound": True, "notes": []})
        m[name].append(value)
        if not sound:
            m["sound"] = False
            m["notes"].append(f"{name}: {note}")

    def result(self) -> dict[str, Any]:
        out = {}
        for key, m in self.by_key.items():
            pairs = zip(m["srv"], m["nginx"], strict=True)
            ratios = [round(s / n, 4) if s is not None and n else None for s, n in pairs]
            good = [r for r in ratios if r is not None]
            out[key] = {**m, "ratios": ratios, "ratio": round(statistics.median(good), 4) if good else None}
        return out


async def measure(bench: Any, opts: argparse.Namespace, src: float) -> dict[str, Any]:
    """The quick run: fan-out and ingest, srv then nginx-rtmp (swapped each repeat)."""
    n, k = opts.check_players, opts.check_publishers
    got = Metrics()
    for rep in range(opts.check_repeats):
        for name in ("srv", "nginx") if rep % 2 == 0 else ("nginx", "srv"):
            bench.log(f"check {rep + 1}/{opts.check_repeats}: {name} fan-out, {n} players")
            m = await bench.point(sv.make(name, core=bench.SERVER_CORE), opts, src, n, probes=0)
            got.add(f"fanout_cpu_s_per_gb@{n}", f"CPU-s per delivered GB, {n} players", name,
                    m["cpu_s_per_gb"], m["delivery"] >= 0.98, f"delivery {m['delivery']}")
            for players in (0, 1):
                bench.log(f"check {rep + 1}/{opts.check_repeats}: {name} ingest, {k} publishers x {players} player")
                m = await bench.ingest_step(sv.make(name, core=bench.SERVER_CORE), k, players, opts.window,
                                            opts.warmup)
                bench.log(f"  {m}")
                got.add(f"ingest_cpu_s_per_gb@{k}x{players}",
                        f"CPU-s per ingested GB, {k} publishers, {players} player(s) each", name,
                        m["cpu_s_per_gb"], not (m["behind"] or m["stalled"]),
                        f"{m['behind']} publishers behind, {m['stalled']} streams stalled")
    return {"format": 1, "about": "scripts/bench --check: srv / nginx-rtmp ratios from the same run (lower is "
            "better); see scripts/bench_lib/check.py", "command": opts.command, "commit": commit(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "load": [round(x, 2) for x in os.getloadavg()],
            "settings": {"players": n, "publishers": k, "window_s": opts.window, "warmup_s": opts.warmup,
                         "repeats": opts.check_repeats},
            "metrics": got.result()}


def compare(base: dict[str, Any] | None, cur: dict[str, Any], tolerance: float) -> tuple[list[str], int, str]:
    """Table lines, exit status and the verdict line for `cur` against `base`."""
    lines = [f"{'metric (srv / nginx-rtmp)':34} {'baseline':>9} {'this run':>9} {'change':>8}  verdict"]
    worse, compared, missing = [], 0, []
    for key, m in cur["metrics"].items():
        b = (base or {}).get("metrics", {}).get(key)
        ratio, was = m["ratio"], (b or {}).get("ratio")
        note = "" if m["sound"] else "  (" + "; ".join(m["notes"]) + ")"
        if ratio is None:
            missing.append(key)
            lines.append(f"{key:34} {was or '-':>9} {'-':>9} {'':>8}  not measured{note}")
            continue
        if not was:
            lines.append(f"{key:34} {'-':>9} {ratio:>9.3f} {'':>8}  no baseline{note}")
            continue
        compared += 1
        change = ratio / was - 1
        verdict = "REGRESSION" if change > tolerance else "better" if change < -tolerance else "ok"
        if verdict == "REGRESSION":
            worse.append(f"{key} {change:+.0%} ({was:.3f} -> {ratio:.3f})")
        lines.append(f"{key:34} {was:>9.3f} {ratio:>9.3f} {change:>+8.0%}  {verdict}{note}")
    if worse:
        return lines, REGRESSION, f"check: REGRESSION beyond {tolerance:.0%}: " + ", ".join(worse)
    if missing or not compared:
        why = f"not measured: {', '.join(missing)}" if missing else "no baseline for these metrics"
        return lines, NOT_COMPARED, f"check: NOT COMPARED ({why})"
    return lines, OK, f"check: OK (no srv / nginx-rtmp ratio worse than the baseline by more than {tolerance:.0%})"


def report(cur: dict[str, Any], baseline: Path, tolerance: float, save: bool) -> int:
    """Print the comparison; with `save`, write `cur` as the new baseline (status 0)."""
    base = json.loads(baseline.read_text()) if baseline.exists() else None
    where = (f"{baseline} (commit {base.get('commit')}, {base.get('date')}, load {base.get('load')})"
             if base else f"{baseline} (none yet)")
    print(f"\nsrv / nginx-rtmp, this run (commit {cur['commit']}, {cur['date']}, load {cur['load']}) "
          f"against {where}; lower is better")
    lines, status, verdict = compare(base, cur, tolerance)
    for line in lines:
        print("  " + line)
    if save:
        baseline.write_text(json.dumps(cur, indent=1) + "\n")
        print(f"check: saved as the baseline: {baseline}")
        return OK
    print(verdict)
    return status
