"""The Grafana dashboard and the Prometheus alerts work against a real Prometheus scraping srv.

A real srv (two workers, an on_publish/on_play hook server, a forward to a live slave and one to
a port that refuses) is scraped every second by Debian's `prometheus` (installed by
./scripts/test), which also loads conf/prometheus/srv-alerts.yml. With a stream published and
played, a worker killed and respawned, a brief publisher gone, a refused and a timed-out hook:
every PromQL expression of every panel of conf/grafana/srv.json (Grafana's variables replaced by
what "All" selects) must evaluate without error *and* return data, and the three alerts the
docs promise (publisher gone, forward in backoff, worker restarts) must have data for exactly
the stream, destination and server they are about. `promtool check rules` and `promtool test
rules` check the rule file and its unit tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Clients, Server, free_port, player, spawn_in_group, stop_group, wait_for, worker_procs
from hookserver import HookServer

DASHBOARD = REPO / "conf" / "grafana" / "srv.json"
RULES = REPO / "conf" / "prometheus" / "srv-alerts.yml"
RULE_TESTS = REPO / "conf" / "prometheus" / "srv-alerts.test.yml"
# what Grafana puts in place of its variables with "All" selected and a 1 s scrape interval
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$instance": ".*", "$vhost": ".*", "$app": ".*", "$stream": ".*"}


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, variables replaced."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, (panel["title"], expr)
            out.append((panel["title"], expr))
    return out


def alert_names() -> list[str]:
    return re.findall(r"(?m)^\s*- alert: (\w+)$", RULES.read_text())


class Prometheus:
    """Debian's prometheus on a free port, scraping one srv exporter every second."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        conf = tmp / "prometheus.yml"
        conf.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{json.dumps(str(RULES))}]\n"
            "scrape_configs:\n"
            f"  - job_name: srv\n    static_configs: [{{targets: [{json.dumps(target)}]}}]\n")
        self.proc = spawn_in_group(["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                    f"--web.listen-address=127.0.0.1:{self.port}"],
                                   stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "wb"))
        wait_for(self.ready, 30, interval=0.2, what="prometheus ready")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200  # type: ignore[no-any-return]
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # a bad query is a 400 with the error in the body
            body = json.loads(e.read())
        assert body["status"] == "success", (params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), (expr, data)
        return data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    def close(self) -> None:
        stop_group(self.proc.pid)


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.close()


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                          capture_output=True, text=True)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert panels and all(p.get("targets") for p in panels)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("streams", "players", "bandwidth", "forward state", "forward drops", "hook latency",
                  "cpu", "memory", "restarts", "reloads"):
        assert topic in titles, topic


def test_every_panel_and_alert_evaluates_with_data_in_a_real_prometheus(
        srs_server, clients: Clients, hooks: HookServer, tmp_path: Path) -> None:
    slave: Server = srs_server(name="slave", workers=1)
    dead = free_port()
    srv: Server = srs_server(
        "vhost __defaultVhost__ {\n"
        "  http_remux { enabled on; }\n"
        f"  http_hooks {{ enabled on; timeout 1; on_publish {hooks.url('on_publish')}; "
        f"on_play {hooks.url('on_play')}; }}\n"
        "  forward { enabled on; backoff_initial 200; backoff_max 500;\n"
        f"    destination 127.0.0.1:{slave.port} 127.0.0.1:{dead}; }}\n"
        "}\n", name="master", workers=2, http=True)
    prom = Prometheus(tmp_path, f"127.0.0.1:{srv.exporter_port}")
    try:
        wait_for(lambda: prom.query('srs_worker_restarts_total{job="srv"} == 0'), 30, what="a first scrape")
        # a worker dies and is respawned
        workers = worker_procs(srv.master_pid)
        os.kill(workers[2].pid, signal.SIGKILL)
        srv.wait_worker_ready(2, not_pid=workers[2].pid)
        wait_for(lambda: prom.query("srs_worker_restarts_total == 1"), 30, what="the restart scraped")
        # a stream published, played over RTMP and HTTP-FLV, forwarded; another one published briefly
        clients.publish(f"{srv.url}/live/cam")
        wait_for(lambda: prom.query('srs_stream_publishers{stream="cam"} == 1'), 30, what="cam published")
        player(clients, f"{srv.url}/live/cam")
        clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i",
                       f"http://127.0.0.1:{srv.http_port}/live/cam.flv", "-f", "null", "-"],
                      stdout=subprocess.DEVNULL)
        brief = clients.publish(f"{srv.url}/live/brief", seconds=3)
        wait_for(lambda: prom.query('srs_stream_publishers{stream="brief"} == 1'), 30, what="brief published")
        brief.wait(30)
        # a play the hook refuses, and one whose hook times out
        for name in ("v_code1", "v_hang"):
            subprocess.run(["ffprobe", "-v", "quiet", "-rw_timeout", "5000000", f"{srv.url}/live/{name}"],
                           capture_output=True, timeout=30)
        wait_for(lambda: prom.query(f'srs_forward_up{{destination=~".*:{slave.port}.*"}} == 1'), 30,
                 what="the forward to the slave connected")

        queries = panel_queries()

        def empty() -> list[tuple[str, str]]:
            return [(title, expr) for title, expr in queries if not prom.query(expr)]

        try:
            wait_for(lambda: not empty(), 40, interval=1, what="every panel's data")
        except AssertionError:
            assert empty() == []  # names the panels without data

        # Prometheus itself loaded the rule file (every alert in it) and evaluates it
        loaded = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        rules = {r["name"]: r["query"] for r in loaded}
        assert sorted(rules) == sorted(alert_names()) and len(rules) >= 3
        assert all(r["health"] == "ok" for r in loaded), loaded
        for expr in rules.values():
            prom.query(expr)  # each evaluates without error
        wait_for(lambda: prom.query(rules["SrsPublisherGone"]), 30, what="publisher gone alert data")
        gone = prom.query(rules["SrsPublisherGone"])
        assert {s["metric"]["stream"] for s in gone} == {"brief"}, gone
        backoff = prom.query(rules["SrsForwardBackoff"])
        assert [s["metric"]["destination"] for s in backoff] == [f"127.0.0.1:{dead}"], backoff
        restarts = prom.query(rules["SrsWorkerRestarts"])
        assert len(restarts) == 1 and float(restarts[0]["value"][1]) >= 1, restarts
        wait_for(lambda: any(a["labels"]["alertname"] == "SrsWorkerRestarts" and a["state"] == "firing"
                             for a in prom.api("alerts")["alerts"]), 20, what="SrsWorkerRestarts firing")
        pending = {a["labels"]["alertname"]: a for a in prom.api("alerts")["alerts"]}
        assert pending["SrsForwardBackoff"]["labels"]["destination"] == f"127.0.0.1:{dead}"
        assert re.fullmatch(r"pending|firing", pending["SrsForwardBackoff"]["state"])
    finally:
        prom.close()
