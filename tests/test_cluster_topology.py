"""scripts/origin-cluster-start and -stop: redis-server, two proxies, three origins on loopback
addresses of their own; a stream published through one proxy plays through the other."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import Clients, codecs, ffprobe, free_port, track_group, wait_for

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("proxy1", "proxy2", "origin1", "origin2", "origin3", "redis")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(420)  # a ceiling: five servers, each checked (-t) then started, on a loaded machine
def test_one_command_starts_the_cluster_and_one_stops_it(tmp_path: Path, clients: Clients) -> None:
    env = {**os.environ, "CLUSTER_DIR": str(tmp_path / "cluster"), "RTMP_PORT": str(free_port()),
           "HTTP_PORT": str(free_port()), "API_PORT": str(free_port()), "SYSTEM_API_PORT": str(free_port()),
           "REDIS_PORT": str(free_port())}
    pids = {}
    try:  # the stop script runs even when the start one times out: what it started is stopped
        started = subprocess.run([str(ROOT / "scripts" / "origin-cluster-start")], env=env, capture_output=True,
                                 text=True, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        pids = {n: int((tmp_path / "cluster" / f"{n}.pid").read_text()) for n in NAMES}
        for pid in pids.values():
            track_group(os.getpgid(pid))  # stopped at teardown whatever happens
        rtmp, http = env["RTMP_PORT"], env["HTTP_PORT"]
        redis_cli = ["redis-cli", "-h", "127.0.0.10", "-p", env["REDIS_PORT"]]
        wait_for(lambda: subprocess.run([*redis_cli, "ZCARD", "srv:cluster:origins"], capture_output=True,
                                        text=True).stdout.strip() == "3", 20, what="3 origins registered")
        clients.publish(f"rtmp://127.0.0.11:{rtmp}/live/livestream")
        probe = codecs(ffprobe(f"rtmp://127.0.0.12:{rtmp}/live/livestream"))
        assert probe["video"]["codec_name"] == "h264"
        flv = codecs(ffprobe(f"http://127.0.0.12:{http}/live/livestream.flv"))
        assert flv["audio"]["codec_name"] == "aac"
    finally:
        stopped = subprocess.run([str(ROOT / "scripts" / "origin-cluster-stop")], env=env, capture_output=True,
                                 text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not [n for n, pid in pids.items() if _alive(pid)]
