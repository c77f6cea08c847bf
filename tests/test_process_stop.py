"""Stopping and log rotation: QUIT is graceful, TERM/INT fast (graceful with `force_grace_quit`),
USR1 reopens the log file in the master and in every worker.

Graceful timeline: keep accepting for `grace_start_wait`, then refuse new connections and let the
sessions run for up to `grace_final_wait`, then close them and exit 0, removing the pid file.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from conftest import SRS, codecs, ffprobe, player, refused, wait_for

GRACE = {"grace_start_wait": "500", "grace_final_wait": "2500"}



def _serving(srv, clients):  # type: ignore[no-untyped-def]
    """A publisher and a long-lived player, both connected."""
    pub = clients.publish(f"{srv.url}/live/g")
    assert "video" in codecs(ffprobe(f"{srv.url}/live/g"))
    watcher = player(clients, f"{srv.url}/live/g")
    wait_for(lambda: _client_plays(srv.log_text(), "live/g") >= 2, what="player connected")
    return pub, watcher


def _client_plays(log: str, stream: str) -> int:
    """RTMP clients that started playing `stream` (pulls between workers are not clients)."""
    return sum(1 for ln in log.splitlines() if f"{stream} play start" in ln and "worker pull" not in ln)


def test_quit_waits_for_sessions_up_to_grace_final_wait_then_exits_0(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(settings=GRACE)
    pub, watcher = _serving(srv, clients)
    started = time.monotonic()
    srv.send_signal(signal.SIGQUIT)
    srv.wait_log("SIGQUIT: graceful stop")
    # after grace_start_wait the listeners are closed: new connections are refused ...
    wait_for(lambda: refused(srv.port), timeout=5, what="connections refused")
    refused_after = time.monotonic() - started
    assert refused_after >= 0.4
    # ... while the sessions already there go on
    assert watcher.poll() is None and pub.poll() is None
    assert srv.proc is not None and srv.proc.poll() is None
    code = srv.proc.wait(15)
    took = time.monotonic() - started
    assert code == 0
    assert 2.8 <= took < 6, took  # grace_start_wait + grace_final_wait, then the sessions are closed
    assert "grace_final_wait over; closing" in srv.log_text()
    wait_for(lambda: watcher.poll() is not None, what="player disconnected")
    assert not srv.pid_file.exists()
    assert f"master pid {srv.proc.pid} exit(0)" in srv.log_text()


def test_quit_exits_as_soon_as_the_last_session_ends(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(settings={"grace_start_wait": "200", "grace_final_wait": "20000"})
    pub = clients.publish(f"{srv.url}/live/short", seconds=4)
    srv.wait_log("live/short publish")
    started = time.monotonic()
    srv.send_signal(signal.SIGQUIT)
    assert srv.proc is not None and srv.proc.wait(20) == 0
    assert pub.poll() is not None  # the publisher ended on its own, not cut
    assert time.monotonic() - started < 10
    assert "grace_final_wait over" not in srv.log_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_term_and_int_stop_fast_closing_sessions(srs_server, clients, sig: int) -> None:  # type: ignore[no-untyped-def]
    # grace waits far longer than a fast stop may take even on a loaded machine: exiting before
    # grace_start_wait is over shows that the stop waited for neither grace period
    srv = srs_server(settings={"grace_start_wait": "20000", "grace_final_wait": "60000"})
    _pub, watcher = _serving(srv, clients)
    started = time.monotonic()
    srv.send_signal(sig)
    assert srv.proc is not None and srv.proc.wait(19) == 0
    assert time.monotonic() - started < 19
    assert "graceful stop" not in srv.log_text()
    assert f"{signal.Signals(sig).name}: fast stop" in srv.log_text()
    wait_for(lambda: watcher.poll() is not None, what="player disconnected")
    assert not srv.pid_file.exists()


def test_force_grace_quit_makes_term_graceful(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(settings={**GRACE, "force_grace_quit": "on"})
    _pub, watcher = _serving(srv, clients)
    started = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    srv.wait_log("SIGTERM: graceful stop")
    time.sleep(1.0)  # past grace_start_wait, well before grace_final_wait
    assert watcher.poll() is None
    assert srv.proc is not None and srv.proc.wait(15) == 0
    assert time.monotonic() - started >= 2.8
    assert not srv.pid_file.exists()


def test_stop_command_stops_the_server_via_its_pid_file(srs_server) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=1)
    out = subprocess.run([str(SRS), "-s", "quit", "-c", str(srv.conf)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert f"sent SIGQUIT (quit) to master pid {srv.master_pid}" in out.stderr
    assert srv.proc is not None and srv.proc.wait(10) == 0
    again = subprocess.run([str(SRS), "-s", "stop", "-c", str(srv.conf)], capture_output=True, text=True, timeout=20)
    assert again.returncode == 1
    assert "srs: cannot stop" in again.stderr


def test_usr1_reopens_the_log_file_in_master_and_workers(srs_server) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2)
    rotated = srv.log.with_name("srs.log.1")
    srv.log.rename(rotated)
    out = subprocess.run([str(SRS), "-s", "reopen", "-c", str(srv.conf)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "sent SIGUSR1 (reopen)" in out.stderr
    for role in ("master", "w1", "w2"):
        srv.wait_log(f"[{role}][", timeout=10)
    fresh = srv.log_text()
    assert "[master]" in fresh and "SIGUSR1: log files reopened" in fresh
    assert "[w1][" in fresh and "[w2][" in fresh
    # later lines, from every process, keep landing in the new file only
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok")
    srv.wait_log("worker 1 applied the new config")
    srv.wait_log("worker 2 applied the new config")
    old = rotated.read_text()
    assert "reload ok" not in old and "applied the new config" not in old
    assert "SIGUSR1" not in old


def test_new_clients_are_served_during_grace_start_wait(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=1, settings={"grace_start_wait": "4000", "grace_final_wait": "1000"})
    pub = clients.publish(f"{srv.url}/live/g")
    assert "video" in codecs(ffprobe(f"{srv.url}/live/g"))
    srv.send_signal(signal.SIGQUIT)
    srv.wait_log("SIGQUIT: graceful stop")
    # the load balancer has not moved away yet: a new player must still be served
    assert codecs(ffprobe(f"{srv.url}/live/g", timeout=3))["video"]["codec_name"] == "h264"
    assert srv.proc is not None and srv.proc.wait(20) == 0
    assert "rejected: stopping" not in srv.log_text()
    assert pub.wait(10) is not None
