"""`scripts/bench --check` judges srv / nginx-rtmp ratios against a saved baseline.

One real quick run at a tiny size saves a baseline (`--check --save`); the same results then
compared (`--check --from`) with that baseline pass, with a baseline whose ratio is better by
more than the tolerance fail with exit status 1 and the metric named, within the tolerance or
against a worse baseline pass, and against a baseline of other sizes are not compared (status 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_bench_features import bench

FANOUT, INGEST0, INGEST1 = "fanout_cpu_s_per_gb@30", "ingest_cpu_s_per_gb@10x0", "ingest_cpu_s_per_gb@10x1"


def compare(tmp_path: Path, results: Path, baseline: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "baseline-variant.json"
    path.write_text(json.dumps(baseline))
    rc, text, _ = bench(tmp_path, "--check", "--from", str(results), "--baseline", str(path), timeout=60)
    return rc, text


def scaled(base: dict[str, Any], key: str, factor: float) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    out["metrics"][key]["ratio"] = round(out["metrics"][key]["ratio"] * factor, 4)
    return out


@pytest.mark.timeout(600)
def test_check_saves_a_baseline_passes_on_it_and_flags_an_injected_regression(tmp_path):
    saved = tmp_path / "bench-results.json"
    rc, text, results = bench(tmp_path, "--check", "--save", "--baseline", str(saved), "--check-players", "30",
                              "--check-publishers", "10", "--check-repeats", "1", "--window", "5", "--warmup", "1")
    assert rc == 0 and "check: saved as the baseline" in text, text
    base = json.loads(saved.read_text())
    assert base == json.loads(results.read_text())
    assert set(base["metrics"]) == {FANOUT, INGEST0, INGEST1}
    for m in base["metrics"].values():
        # one figure per server from the same run, and their ratio
        assert len(m["srv"]) == len(m["nginx"]) == 1 and m["srv"][0] > 0 and m["nginx"][0] > 0, m
        assert m["ratio"] == pytest.approx(m["srv"][0] / m["nginx"][0], rel=1e-3), m

    rc, text = compare(tmp_path, results, base)
    assert rc == 0 and "check: OK" in text, text

    # the baseline's srv was relatively cheaper by 1.5x: this run is a regression, named
    rc, text = compare(tmp_path, results, scaled(base, INGEST0, 1 / 1.5))
    assert rc == 1, text
    verdict = text.strip().splitlines()[-1]
    assert verdict.startswith("check: REGRESSION") and INGEST0 in verdict and FANOUT not in verdict, text

    rc, text = compare(tmp_path, results, scaled(base, FANOUT, 1 / 1.5))
    assert rc == 1 and FANOUT in text.strip().splitlines()[-1], text

    # within the 25 % tolerance, or the baseline worse than this run: no regression
    rc, text = compare(tmp_path, results, scaled(base, FANOUT, 1 / 1.1))
    assert rc == 0 and "check: OK" in text, text
    rc, text = compare(tmp_path, results, scaled(base, INGEST1, 2.0))
    assert rc == 0 and "better" in text, text

    # a baseline taken at other sizes has nothing to compare
    other = json.loads(json.dumps(base))
    other["metrics"] = {k.replace("@30", "@1000").replace("@10x", "@40x"): v for k, v in base["metrics"].items()}
    rc, text = compare(tmp_path, results, other)
    assert rc == 2 and "NOT COMPARED" in text, text
