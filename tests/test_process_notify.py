"""systemd `Type=notify`: the messages the master sends to `NOTIFY_SOCKET`, received on a unix
datagram socket the test binds (what systemd does; conftest's `NotifySocket`, one per server).
"""

from __future__ import annotations

import signal
import socket
import time

from conftest import wait_for, worker_procs


def test_ready_reloading_and_stopping_are_notified(srs_server) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2, wait=False)
    notify = srv.notify
    i = notify.wait(lambda m: m.get("READY") == "1", what="READY=1")
    # READY=1 comes once the workers accept: an RTMP connect works right away
    socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    assert "2 workers" in notify.messages[i]["STATUS"]
    assert f"127.0.0.1:{srv.port}" in notify.messages[i]["STATUS"]
    # and names the workers that accept, slot:pid: what a respawn wait polls (conftest)
    workers = {slot: p.pid for slot, p in worker_procs(srv.master_pid).items()}
    assert notify.messages[i]["X_SRS_WORKERS"] == f"1:{workers[1]} 2:{workers[2]}"

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    srv.send_signal(signal.SIGHUP)
    r = notify.wait(lambda m: m.get("RELOADING") == "1", after=i + 1, what="RELOADING=1")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(notify.messages[r]["MONOTONIC_USEC"]) <= after
    ok = notify.wait(lambda m: m.get("READY") == "1", after=r + 1, what="READY=1 after reload")
    assert "workers" in notify.messages[ok]["STATUS"]

    # a failed reload: RELOADING, then READY again (still serving), with the reason in STATUS
    srv.conf.write_text(srv.conf.read_text() + "vhost broken {\n")
    srv.send_signal(signal.SIGHUP)
    r = notify.wait(lambda m: m.get("RELOADING") == "1", after=ok + 1, what="RELOADING=1")
    bad = notify.wait(lambda m: m.get("READY") == "1", after=r + 1, what="READY=1 after failed reload")
    status = notify.messages[bad]["STATUS"]
    assert status.startswith(f"reload failed: {srv.conf}:") and "old config" in status

    srv.send_signal(signal.SIGQUIT)
    s = notify.wait(lambda m: m.get("STOPPING") == "1", after=bad + 1, what="STOPPING=1")
    assert "STATUS" in notify.messages[s]
    assert srv.proc is not None and srv.proc.wait(10) == 0


def test_watchdog_is_pet_at_half_the_interval_when_systemd_asks(srs_server) -> None:  # type: ignore[no-untyped-def]
    notify = srs_server(workers=1, env={"WATCHDOG_USEC": "600000"}).notify
    first = notify.wait(lambda m: m.get("WATCHDOG") == "1", what="WATCHDOG=1")
    start = notify.times[first]
    wait_for(lambda: sum(1 for m in notify.poll() if m.get("WATCHDOG") == "1") >= 5, timeout=5,
             what="5 WATCHDOG=1")
    pets = [t for m, t in zip(notify.messages, notify.times, strict=True) if m.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip(pets, pets[1:], strict=False)]
    assert pets[0] == start
    assert max(gaps) < 0.6, gaps  # never lets the 0.6 s watchdog expire


def test_no_watchdog_without_watchdog_usec(srs_server) -> None:  # type: ignore[no-untyped-def]
    notify = srs_server(workers=1).notify
    notify.wait(lambda m: m.get("READY") == "1", what="READY=1")
    time.sleep(1.2)
    assert not any("WATCHDOG" in m for m in notify.poll())
