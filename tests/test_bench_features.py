"""scripts/bench's feature scenarios (bench_lib/features.py) run and produce their rows.

Each scenario runs for real at a tiny size (a few players, windows of a few seconds), srv side by
side with nginx-rtmp where nginx-rtmp has the feature, through the bench's own command line; the
results file must hold a row per server and variant, with the outcome each scenario exists to
show: the recordings are on disk, RTMPS players get TLS and the stream, every play asked the hook
server, the edge's players get the stream the origin has, the proxy relays it. Speed is never
asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import spawn_in_group

TOP = Path(__file__).resolve().parents[1]
TINY = ["--point-n", "5", "--window", "3", "--warmup", "1"]


def bench(tmp_path: Path, *args: str, timeout: float = 400) -> tuple[int, str, Path]:
    """`scripts/bench ARGS --out F` (without its install steps); (exit status, stdout, F)."""
    out = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=f"{TOP / 'scripts'}:{TOP}")
    proc = spawn_in_group([sys.executable, "-m", "bench_lib.run", *args, "--out", str(out)], cwd=TOP, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = stdout.decode()
    assert proc.returncode in (0, 1, 2), stderr.decode()[-3000:]
    return proc.returncode, text + stderr.decode()[-3000:], out


def run_scenario(tmp_path: Path, scenario: str, servers: str, *extra: str) -> dict[str, Any]:
    rc, text, out = bench(tmp_path, "--server", servers, "--scenario", scenario, *TINY, *extra)
    assert rc == 0, text
    runs: list[dict[str, Any]] = json.loads(out.read_text())["runs"]
    assert len(runs) == 1
    return runs[0]


def plays(m: dict[str, Any], n: int = 5) -> None:
    """Every player started and got the stream in the window (nginx-rtmp starts on a keyframe)."""
    assert m["players"] == n and m["dropped"] == 0, m
    assert m["delivery"] > 0.5 and m["cpu_s_per_gb"] is not None, m


@pytest.mark.timeout(420)
def test_dvr_scenario_records_on_srv_and_nginx_rtmp_and_rows_the_cost(tmp_path):
    res = run_scenario(tmp_path, "dvr", "srv,nginx", "--dvr-streams", "2")
    for name, formats in (("srv", ("flv", "mp4")), ("nginx", ("flv",))):
        row = res[name]["dvr"]["2"]
        assert set(row) == {"off", *formats}, row
        assert row["off"]["published_mbps"] > 2, row  # two 2.16 Mb/s streams
        for form in formats:
            m = row[form]
            assert m["recorded_mb"] > 0.5, (name, form, m)  # it did write the streams to disk
            assert {"cost_cpu_percent_per_stream", "cost_cpu_percent_per_mbps", "cost_cpu_s_per_gb"} <= set(m)


@pytest.mark.timeout(420)
def test_tls_scenario_serves_rtmps_from_srv_and_from_nginx_stream_tls_in_front_of_nginx_rtmp(tmp_path):
    res = run_scenario(tmp_path, "tls", "srv,nginx")
    for name in ("srv", "nginx"):
        rows = res[name]["tls"]
        assert set(rows) == {"rtmp", "rtmps"}
        for m in rows.values():
            plays(m)
        # both ends negotiated the same TLS: nginx 1.22 is told to offer 1.3 as srv does
        assert rows["rtmps"]["cipher"] == "TLSv1.3 TLS_AES_256_GCM_SHA384", rows["rtmps"]
        assert "cipher" not in rows["rtmp"]


@pytest.mark.timeout(420)
def test_hooks_scenario_asks_the_hook_server_for_every_play_on_srv_and_nginx_rtmp(tmp_path):
    res = run_scenario(tmp_path, "hooks", "srv,nginx")
    for name in ("srv", "nginx"):
        off, on = res[name]["hooks"]["off"], res[name]["hooks"]["on"]
        for m in (off, on):
            plays(m)
            assert m["started"] == 5 and m["play_start_ms_p95"] > 0, m
        assert "hook_calls" not in off
        # the publisher's publish and every play (the 5, and the bench's probe that waits for
        # the stream) went through the hook server
        assert on["hook_calls"]["on_publish"] >= 1, on
        assert on["hook_calls"]["on_play"] >= 6, on


@pytest.mark.timeout(420)
def test_edge_scenario_plays_through_an_srv_edge_and_an_nginx_rtmp_pull(tmp_path):
    res = run_scenario(tmp_path, "edge", "srv,nginx")
    for name in ("srv", "nginx"):
        m = res[name]["edge"]["5"]
        plays(m)
        # the probes timed the publisher -> origin -> edge -> player path
        assert m["latency_samples"] > 0 and m["latency_ms_p95"] is not None, m
        assert m["origin_cpu"] is not None and m["both_cpu_s_per_gb"] is not None, m


@pytest.mark.timeout(420)
def test_proxy_scenario_relays_through_an_srv_proxy_and_skips_nginx_rtmp(tmp_path):
    res = run_scenario(tmp_path, "proxy", "srv,nginx")
    assert "proxy" not in res.get("nginx", {})  # nginx-rtmp has no such role
    rows = res["srv"]["proxy"]
    for m in rows.values():
        plays(m)
        assert m["latency_samples"] > 0, m
    assert "origin_cpu" not in rows["direct"]
    assert rows["proxied"]["origin_cpu"] is not None and rows["proxied"]["origin_cpu_s_per_gb"] is not None
    # --report renders the rows as docs/performance.md's table
    env = dict(os.environ, PYTHONPATH=f"{TOP / 'scripts'}:{TOP}")
    got = subprocess.run([sys.executable, "-m", "bench_lib.run", "--report", str(tmp_path / "results.json")],
                         cwd=TOP, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "| proxy: server | path |" in got
    assert "| srv | direct | 5 |" in got and "| srv | proxied | 5 |" in got
    # over several runs it adds each figure's median [min, max]
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps({"runs": [res, res]}))
    got = subprocess.run([sys.executable, "-m", "bench_lib.run", "--report", str(twice)],
                         cwd=TOP, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "median [min, max] over 2 runs" in got
    cpu = float(f"{rows['proxied']['cpu_s_per_gb']:.3g}")
    assert "| srv | proxied | " in got and f"{cpu:g} [{cpu:g}, {cpu:g}]" in got, got
