"""Starting the server: the pid file lock, busy ports, `daemon on`.

A second instance on the same pid file and a port that another process holds are refused with a
clear message and exit status 1 — also with `daemon on`, whose checks run before it detaches.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
from conftest import SRS, STARTUP_TIMEOUT, Server, codecs, ffprobe, free_port, track_group, wait_for, worker_procs


def _run(conf: Path, *args: str, timeout: float = STARTUP_TIMEOUT,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SRS), *args, "-c", str(conf)], capture_output=True, text=True,
                          timeout=timeout, cwd=conf.parent, env=env)


def _second_conf(srv: Server, tmp_path: Path, daemon: bool) -> Path:
    """Same pid file as `srv`, but its own port and log."""
    conf = tmp_path / "second.conf"
    conf.write_text(f"listen 127.0.0.1:{free_port()};\npid {srv.pid_file};\n"
                    f"daemon {'on' if daemon else 'off'};\nsrs_log_tank file;\n"
                    f"srs_log_file {tmp_path / 'second.log'};\nworkers 1;\nvhost __defaultVhost__ {{ }}\n")
    return conf


@pytest.mark.parametrize("daemon", [False, True], ids=["foreground", "daemon"])
def test_second_instance_on_the_same_pid_file_is_refused(srs_server, tmp_path: Path, daemon: bool) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=1)
    out = _run(_second_conf(srv, tmp_path, daemon))
    assert out.returncode == 1
    assert f"pid file {srv.pid_file} is locked by pid {srv.master_pid}" in out.stderr
    # the first instance is untouched: same pid file content, still serving
    assert int(srv.pid_file.read_text()) == srv.master_pid
    assert srv.proc is not None and srv.proc.poll() is None
    assert [p.cmdline()[0] for p in psutil.Process(srv.master_pid).children()] == ["srs: worker process 1"]


def test_daemon_on_detaches_and_is_stopped_through_the_pid_file(tmp_path: Path, clients) -> None:  # type: ignore[no-untyped-def]
    srv = Server(tmp_path, "vhost __defaultVhost__ { }\n", 2, settings={"daemon": "on"})
    launched = _run(srv.conf, env=srv.environ())
    master = 0
    try:
        assert launched.returncode == 0, launched.stderr
        # the launcher returns once the master wrote its own pid: a script can read it at once
        master = int(srv.pid_file.read_text())
        track_group(os.getsid(master))  # its own session: the session-end check watches it too
        assert psutil.Process(master).cmdline()[0] == f"srs: master process -c {srv.conf}"
        srv.wait_ready()
        assert f"master pid {master}," in srv.log_text()  # the daemon's own pid, not the launcher's
        proc = psutil.Process(master)
        assert proc.cmdline()[0] == f"srs: master process -c {srv.conf}"
        assert proc.ppid() == 1 or proc.parent().name() != "srs"  # detached from the launcher
        assert os.getsid(master) != os.getsid(0)  # out of the launching shell's session
        assert sorted(worker_procs(master)) == [1, 2]
        clients.publish(f"{srv.url}/live/d")
        assert "video" in codecs(ffprobe(f"{srv.url}/live/d"))
        stopped = _run(srv.conf, "-s", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert f"sent SIGTERM (stop) to master pid {master}" in stopped.stderr
        wait_for(lambda: not psutil.pid_exists(master), what="daemon exit")
        assert not srv.pid_file.exists()
    finally:
        if master and psutil.pid_exists(master):
            for p in psutil.Process(master).children():
                p.kill()
            os.kill(master, signal.SIGKILL)


def _holder(reuseport: bool, port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    return s


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "reuseport"])
@pytest.mark.parametrize("daemon", [False, True], ids=["foreground", "daemon"])
def test_port_held_by_another_process_is_refused(tmp_path: Path, reuseport: bool, daemon: bool) -> None:
    srv = Server(tmp_path, "vhost __defaultVhost__ { }\n", 1, settings={"daemon": "on" if daemon else "off"})
    with _holder(reuseport, srv.port):
        out = _run(srv.conf)
    assert out.returncode == 1
    assert f"listen 127.0.0.1:{srv.port}: address already in use by another process" in out.stderr
    assert not srv.pid_file.exists()  # released on the way out


def test_port_held_for_the_http_api_is_refused(tmp_path: Path) -> None:
    srv = Server(tmp_path, "vhost __defaultVhost__ { }\n", 1, http=True)
    with _holder(False, srv.api_port):
        out = _run(srv.conf)
    assert out.returncode == 1
    assert f"127.0.0.1:{srv.api_port}: address already in use" in out.stderr
    # refused up front, before any worker (not after a wait: that took 10 s at load 30 on 2 cores,
    # so the wall clock proved nothing)
    assert "spawned" not in srv.log_text() and not srv.pid_file.exists()
