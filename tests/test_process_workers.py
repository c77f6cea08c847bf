"""The master supervises its workers: titles, count, respawn after a crash or a hang, TTIN/TTOU.

Every test runs the real `./objs/srs` and drives it with real signals; processes are found by
their titles through psutil.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil
from conftest import codecs, ffprobe, wait_for, worker_procs


def _publish_and_probe(srv, clients, stream: str) -> None:  # type: ignore[no-untyped-def]
    pub = clients.publish(f"{srv.url}/live/{stream}")
    probe = ffprobe(f"{srv.url}/live/{stream}")
    assert set(codecs(probe)) == {"video", "audio"}
    assert pub.poll() is None


def test_master_forks_the_configured_workers_with_their_titles(srs_server) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=3)
    master = psutil.Process(srv.master_pid)
    assert master.cmdline()[0] == f"srs: master process -c {srv.conf}"
    workers = wait_for(lambda: len(worker_procs(srv.master_pid)) == 3 and worker_procs(srv.master_pid),
                       what="3 workers")
    assert sorted(workers) == [1, 2, 3]
    for slot, proc in workers.items():
        assert proc.cmdline()[0] == f"srs: worker process {slot}"
        assert proc.ppid() == srv.master_pid
    assert int(srv.pid_file.read_text()) == srv.master_pid


def test_killed_worker_is_respawned_in_its_slot_and_the_server_still_serves(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2)
    before = worker_procs(srv.master_pid)
    victim = before[1].pid
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: (w := worker_procs(srv.master_pid)).get(1) and w[1].pid != victim and w,
                     what="worker 1 respawned")
    assert sorted(after) == [1, 2]
    assert after[2].pid == before[2].pid  # the other slot is untouched
    srv.wait_log(f"worker 1 (pid {victim}) killed by SIGKILL; respawning")
    # the respawned worker reports ready; every RTMP connection is served (both slots)
    assert srv.wait_worker_ready(1, not_pid=victim) == after[1].pid
    for i in range(3):
        _publish_and_probe(srv, clients, f"after-kill-{i}")


def test_worker_that_stops_heartbeating_is_killed_and_replaced(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2, settings={"worker_timeout": "5"})
    hung = worker_procs(srv.master_pid)[2]
    started = time.monotonic()
    hung.send_signal(signal.SIGSTOP)
    try:
        srv.wait_log(f"worker 2 (pid {hung.pid}) no heartbeat for", timeout=20)
        replaced = wait_for(lambda: (w := worker_procs(srv.master_pid)).get(2) and w[2].pid != hung.pid and w[2],
                            timeout=5, what="worker 2 replaced")
    finally:
        if hung.is_running():
            hung.send_signal(signal.SIGCONT)
    assert 4 < time.monotonic() - started < 15  # worker_timeout 5: not before, not much after
    assert not psutil.pid_exists(hung.pid) or hung.status() == psutil.STATUS_ZOMBIE
    assert replaced.cmdline()[0] == "srs: worker process 2"
    srv.wait_log("killed by SIGKILL (no heartbeat for")
    assert srv.wait_worker_ready(2, not_pid=hung.pid) == replaced.pid
    _publish_and_probe(srv, clients, "after-hang")


def test_worker_held_below_worker_timeout_says_so_and_is_kept(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=1)
    (held,) = worker_procs(srv.master_pid).values()
    held.send_signal(signal.SIGSTOP)  # its loop makes no turn: as a long callback would hold it
    time.sleep(3)
    held.send_signal(signal.SIGCONT)
    srv.wait_log("worker 1: event loop held for", timeout=10)
    line = next(ln for ln in srv.log_text().splitlines() if "event loop held for" in ln)
    assert "[Warn]" in line and float(line.split("held for ")[1].split("s")[0]) >= 2.0
    assert worker_procs(srv.master_pid)[1].pid == held.pid  # 3 s < worker_timeout: not replaced
    _publish_and_probe(srv, clients, "after-hold")


def test_a_held_worker_does_not_blame_its_publisher_for_the_silence(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server("vhost __defaultVhost__ { publish { normal_timeout 1500; } }\n", workers=1)
    pub = clients.publish(f"{srv.url}/live/s")
    srv.wait_log("publish start", timeout=20)
    time.sleep(1)
    (held,) = worker_procs(srv.master_pid).values()
    held.send_signal(signal.SIGSTOP)  # longer than normal_timeout; the publisher goes on sending
    time.sleep(4)
    held.send_signal(signal.SIGCONT)
    srv.wait_log("worker 1: event loop held for", timeout=10)
    time.sleep(3)  # a few timeout checks after the hold
    assert "publisher sent nothing" not in srv.log_text()
    assert pub.poll() is None
    assert set(codecs(ffprobe(f"{srv.url}/live/s"))) == {"video", "audio"}


def test_ttin_adds_a_worker_and_ttou_retires_the_last_one(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2)
    srv.send_signal(signal.SIGTTIN)
    workers = wait_for(lambda: len(w := worker_procs(srv.master_pid)) == 3 and w, what="3 workers")
    assert sorted(workers) == [1, 2, 3]
    assert srv.wait_worker_ready(3) == workers[3].pid
    # signals of one kind sent back to back may merge into one (POSIX): one at a time
    srv.send_signal(signal.SIGTTOU)
    srv.wait_log("SIGTTOU: workers 2")
    srv.send_signal(signal.SIGTTOU)
    workers = wait_for(lambda: len(w := worker_procs(srv.master_pid)) == 1 and w, what="1 worker")
    assert sorted(workers) == [1]
    # the last worker is never retired
    srv.wait_log("SIGTTOU: workers 1")
    srv.send_signal(signal.SIGTTOU)
    srv.wait_log("SIGTTOU: workers 1", count=2)
    assert sorted(worker_procs(srv.master_pid)) == [1]
    _publish_and_probe(srv, clients, "one-worker")
    assert "[Error]" not in srv.log_text()


def _hold_pull_address(master_pid: int, slot: int) -> socket.socket:
    """Take the abstract unix name the worker of `slot` serves pulls on: its next boot fails."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(f"\0srv-{master_pid}-{slot}")
    s.listen(1)
    return s


def test_worker_that_fails_to_boot_is_not_respawned_and_the_rest_serve(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2)
    before = worker_procs(srv.master_pid)
    # the pull address is taken once the old worker 2 is gone: kill it, then hold its name
    before[2].kill()
    before[2].wait(5)
    with _hold_pull_address(srv.master_pid, 2):
        srv.wait_log("worker 2 (pid", count=1)
        srv.wait_log("failed to boot; not respawning it", timeout=15)
    workers = wait_for(lambda: (w := worker_procs(srv.master_pid)) and sorted(w) == [1] and w, 10,
                       what="the failed worker gone")
    assert workers[1].pid == before[1].pid
    assert srv.proc is not None and srv.proc.poll() is None
    for i in range(3):  # every connection is served: none lands on the dead slot's socket
        _publish_and_probe(srv, clients, f"one-left-{i}")
    assert sorted(worker_procs(srv.master_pid)) == [1], "the slot that failed to boot was respawned"
    # a reload gives the failed slot another chance
    srv.send_signal(signal.SIGHUP)
    pid = srv.wait_worker_ready(2, not_pid=before[2].pid)
    assert sorted(worker_procs(srv.master_pid)) == [1, 2]
    assert worker_procs(srv.master_pid)[2].pid == pid
    _publish_and_probe(srv, clients, "two-again")


def test_master_exits_1_when_every_worker_fails_to_boot(srs_server) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=1)
    w = worker_procs(srv.master_pid)[1]
    w.kill()
    w.wait(5)
    with _hold_pull_address(srv.master_pid, 1):
        assert srv.proc is not None and srv.proc.wait(15) == 1
    assert "every worker failed to boot; master exits" in srv.log_text()
    assert not srv.pid_file.exists()


def test_workers_exit_when_the_master_is_killed_and_a_new_start_takes_over(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2)
    workers = list(worker_procs(srv.master_pid).values())
    srv.send_signal(signal.SIGKILL)
    assert srv.proc is not None and srv.proc.wait(5) == -signal.SIGKILL
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    assert srv.pid_file.exists()  # stale: nobody holds its lock any more
    srv.start()  # same pid file, same ports
    assert int(srv.pid_file.read_text()) == srv.master_pid
    _publish_and_probe(srv, clients, "restarted")
