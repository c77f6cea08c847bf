"""Reload (SIGHUP, `-s reload`): a good config is applied in place without dropping anyone; a bad
one leaves the server running on the old config and says why, with `path:line:col`.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from conftest import SRS, codecs, ffprobe, player, refused, wait_for, worker_procs

FIRST = "vhost first { }\n"


def _probe_fails(url: str) -> str:
    with pytest.raises(AssertionError) as e:
        ffprobe(url, timeout=5)
    return str(e.value)


def test_hup_adds_a_vhost_while_a_publisher_and_a_player_stay_connected(srs_server, clients, tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(FIRST, workers=2)
    pub = clients.publish(f"{srv.url}/live?vhost=first/s")
    assert "video" in codecs(ffprobe(f"{srv.url}/live?vhost=first/s"))
    watcher = player(clients, f"{srv.url}/live?vhost=first/s")
    wait_for(lambda: sum(1 for ln in srv.log_text().splitlines()
                         if "first/live/s play start" in ln and "worker pull" not in ln) >= 2,
             what="player connected")
    # before: vhost "new" is unknown, so the connect is rejected
    _probe_fails(f"{srv.url}/live?vhost=new/s")
    srv.wait_log("connect rejected")  # logged just after the answer ffprobe exits on

    srv.write_conf(FIRST + "vhost new { }\n")
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok: vhosts added: new")
    srv.wait_log("worker 1 applied the new config")
    srv.wait_log("worker 2 applied the new config")
    clients.publish(f"{srv.url}/live?vhost=new/t")
    assert set(codecs(ffprobe(f"{srv.url}/live?vhost=new/t"))) == {"video", "audio"}
    # nobody was dropped: the first publisher and its player still run, and it still plays
    assert pub.poll() is None and watcher.poll() is None
    assert "video" in codecs(ffprobe(f"{srv.url}/live?vhost=first/s"))
    assert "first/live/s closed (rtmp-publish)" not in srv.log_text()


def test_hup_with_a_new_workers_count_changes_the_workers_in_place(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2)
    pub = clients.publish(f"{srv.url}/live/w")
    assert "video" in codecs(ffprobe(f"{srv.url}/live/w"))
    before = worker_procs(srv.master_pid)
    srv.header = srv.header.replace("workers 2;", "workers 3;")
    srv.write_conf("vhost __defaultVhost__ { }\n")
    srv.send_signal(signal.SIGHUP)
    after = wait_for(lambda: len(w := worker_procs(srv.master_pid)) == 3 and w, what="3 workers")
    assert {s: p.pid for s, p in after.items() if s in before} == {s: p.pid for s, p in before.items()}
    assert srv.wait_worker_ready(3) == after[3].pid
    assert pub.poll() is None
    assert "video" in codecs(ffprobe(f"{srv.url}/live/w"))


def test_bad_reload_keeps_the_server_on_the_old_config_and_logs_where(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(FIRST, workers=2)
    pub = clients.publish(f"{srv.url}/live?vhost=first/s")
    good = srv.conf.read_text()
    srv.conf.write_text(good + "vhost new {\n    play {\n")  # unclosed blocks: a syntax error
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload failed: ")
    line = next(ln for ln in srv.log_text().splitlines() if "reload failed: " in ln)
    assert "[Error][master]" in line
    assert f"reload failed: {srv.conf}:" in line
    loc = line.split(f"reload failed: {srv.conf}:", 1)[1].split(":")
    assert loc[0].isdigit() and loc[1].isdigit(), line
    # still up, on the old config: vhost first serves, vhost new does not exist
    assert srv.proc is not None and srv.proc.poll() is None
    assert "video" in codecs(ffprobe(f"{srv.url}/live?vhost=first/s"))
    _probe_fails(f"{srv.url}/live?vhost=new/s")
    assert pub.poll() is None
    assert len(worker_procs(srv.master_pid)) == 2
    # a later good reload still works
    srv.conf.write_text(good + "vhost new { }\n")
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok: vhosts added: new")


def test_reload_command_with_a_bad_config_prints_the_error_and_exits_1(srs_server) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=1)
    good = srv.conf.read_text()
    srv.conf.write_text(good + "vhost x { lisen 1; }\n")
    out = subprocess.run([str(SRS), "-s", "reload", "-c", str(srv.conf)], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 1
    assert f"{srv.conf}:" in out.stderr and "lisen" in out.stderr
    assert "reload" in out.stderr
    time.sleep(0.3)
    assert "SIGHUP" not in srv.log_text()  # nothing was sent
    srv.conf.write_text(good)
    out = subprocess.run([str(SRS), "-s", "reload", "-c", str(srv.conf)], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    srv.wait_log("reload ok")


def test_hup_moves_rtmp_to_a_new_port_without_restarting_workers(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    from conftest import free_port

    srv = srs_server(workers=2)
    old_port, new_port = srv.port, free_port()
    workers = {s: p.pid for s, p in worker_procs(srv.master_pid).items()}
    srv.header = srv.header.replace(f"listen 127.0.0.1:{old_port};", f"listen 127.0.0.1:{new_port};")
    srv.write_conf("vhost __defaultVhost__ { }\n")
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok: listen changed")
    srv.wait_log(f"worker 1 now listens on rtmp://127.0.0.1:{new_port}")
    srv.wait_log(f"worker 2 now listens on rtmp://127.0.0.1:{new_port}")
    url = f"rtmp://127.0.0.1:{new_port}/live/moved"
    for i in range(3):
        clients.publish(f"{url}{i}")
        assert "video" in codecs(ffprobe(f"{url}{i}"))
    wait_for(lambda: refused(old_port), what="old port closed")
    assert {s: p.pid for s, p in worker_procs(srv.master_pid).items()} == workers

