"""The test harness itself (conftest.py): reserved ports, process groups, readiness by sd_notify.

These guard the suite's own reliability: a port two xdist workers both think is free, a forked
child that outlives its test, a server judged ready by the wording of a log line.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    PORT_LOCKS,
    REPO,
    Clients,
    _port_range,
    codecs,
    ffprobe,
    free_port,
    group_members,
    wait_for,
)


def test_a_reserved_port_is_locked_for_every_other_run_until_the_test_ends() -> None:
    port = free_port()
    low, high = _port_range()
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert low <= port <= high < ephemeral_low  # no outgoing connection can be given it
    fd = os.open(PORT_LOCKS / str(port), os.O_RDWR)  # what another xdist worker or run would do
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert free_port() != port


def test_a_client_that_forks_is_stopped_with_its_whole_group(tmp_path: Path) -> None:
    clients = Clients(tmp_path)
    # like nginx: the parent forks a child that keeps running; SIGKILL of the parent alone leaves it
    parent = clients.spawn(["sh", "-c", "sleep 300 & echo $!; wait"])
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert [pid for pid, _ in group_members([parent.pid])] != []
    clients.close()
    wait_for(lambda: not any(pid == child for pid, _ in group_members([parent.pid])), 5,
             what="the forked child gone")
    assert parent.poll() is not None


def test_a_session_that_leaves_a_process_running_fails(tmp_path: Path) -> None:
    (tmp_path / "test_leaks.py").write_text(
        "from conftest import spawn_in_group\n"
        "import sys\n"
        "def test_leak(tmp_path):\n"
        "    # Popen returns once the child has exec'd, so the pid printed is already 'sleep 300'\n"
        "    # (sh's '&' child keeps sh's command line until it execs: the check could see that first)\n"
        "    p = spawn_in_group([sys.executable, '-c', 'import subprocess; '\n"
        "                        'print(subprocess.Popen([\"sleep\", \"300\"]).pid, flush=True)'], stdout=-1)\n"
        "    (tmp_path.parent.parent / 'leaked').write_text(p.stdout.readline().decode())\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "conftest",
                          "-p", "no:randomly", "-q", "--basetemp", str(tmp_path / "t"),
                          str(tmp_path / "test_leaks.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": f"{REPO / 'tests'}:{REPO}"})
    assert out.returncode != 0, out.stdout
    assert "processes the tests started are still running" in out.stdout
    leaked = int((tmp_path / "leaked").read_text())
    assert f"pid {leaked}: sleep 300" in out.stdout
    deadline = time.monotonic() + 5  # and the check stopped it
    while Path(f"/proc/{leaked}").exists() and "Z" not in Path(f"/proc/{leaked}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the leaked process was left running"
        time.sleep(0.05)


def test_a_server_is_ready_when_it_says_so_whatever_it_logs(srs_server, clients: Clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2, settings={"srs_log_level": "error"})  # no "ready" line in the log
    assert "ready" not in srv.log_text()
    clients.publish(f"{srv.url}/live/s")
    assert codecs(ffprobe(f"{srv.url}/live/s"))["video"]["codec_name"] == "h264"


def test_a_process_group_id_reused_by_another_process_is_never_signalled() -> None:
    """pids wrap: a tracked group that ended may have its id given to another test's server."""
    import conftest

    p = subprocess.Popen(["sleep", "30"], process_group=0)
    conftest.track_group(p.pid)
    try:
        assert conftest.group_members([p.pid]) and not conftest._reused(p.pid)
        conftest._leader_start[p.pid] -= 1  # as if the id now named a newer process than the tracked one
        assert conftest._reused(p.pid) and conftest.group_members([p.pid]) == []
        conftest.stop_groups([p.pid], grace=0.5)
        assert p.poll() is None
    finally:
        conftest._leader_start[p.pid] += 1
        conftest.stop_groups([p.pid], grace=2.0)
    assert p.wait(5) is not None
