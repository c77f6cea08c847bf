"""Vhost forward, master/slave: real servers, ffmpeg publishing, ffprobe/ffmpeg playing.

The master forwards every stream to its slaves; a slave dying or coming back, a reload adding a
destination, and full rtmp:// destinations with variables are checked from the players' side.
"""

from __future__ import annotations

import os
import signal
import time

from conftest import codecs, ffprobe, file_size, keeps_growing, record_flv, video_frames, wait_for

STREAM = "live/livestream"


def master_conf(*destinations: str, extra: str = "") -> str:
    return ("vhost __defaultVhost__ {\n"
            "    forward {\n"
            "        enabled on;\n"
            f"        destination {' '.join(destinations)};\n"
            "        backoff_initial 300; backoff_max 1000;\n"
            f"        {extra}\n"
            "    }\n"
            "}\n")


def plays(url: str) -> bool:
    try:
        c = codecs(ffprobe(url, timeout=5))
    except AssertionError:
        return False
    return "video" in c and "audio" in c


def test_master_forwards_to_two_slaves_and_survives_one_dying(srs_server, clients, tmp_path):
    s1 = srs_server(name="slave1")
    s2 = srs_server(name="slave2")
    master = srs_server(master_conf(f"127.0.0.1:{s1.port}", f"127.0.0.1:{s2.port}"), name="master")
    pub = clients.publish(f"{master.url}/{STREAM}")
    for s in (s1, s2):
        c = codecs(ffprobe(f"{s.url}/{STREAM}"))
        assert c["video"]["codec_name"] == "h264" and c["audio"]["codec_name"] == "aac"
    rec_master, rec_s2 = tmp_path / "master.flv", tmp_path / "s2.flv"
    record_flv(clients, f"{master.url}/{STREAM}", rec_master)
    record_flv(clients, f"{s2.url}/{STREAM}", rec_s2)
    wait_for(lambda: file_size(rec_master) > 50_000 and file_size(rec_s2) > 50_000, 15, what="recordings")

    os.kill(s1.master_pid, signal.SIGKILL)  # slave 1 dies mid-stream
    master.wait_log(f"-> 127.0.0.1:{s1.port}: error:", timeout=10)
    assert keeps_growing(rec_master) and keeps_growing(rec_s2), "master and slave 2 players must carry on"
    assert pub.poll() is None, "the publisher must not notice"

    s1.start()  # same config, same port
    master.wait_log(f"live/livestream -> 127.0.0.1:{s1.port}: publish started", count=2, timeout=10)
    frames = video_frames(f"{s1.url}/{STREAM}")
    assert frames and frames[0]["key_frame"] == 1, f"the restarted slave must start on a keyframe: {frames}"
    assert keeps_growing(rec_master) and keeps_growing(rec_s2) and pub.poll() is None
    log = master.log_text()
    assert f"-> 127.0.0.1:{s2.port}: error" not in log, "slave 2's forward never broke"
    assert log.count(f"-> 127.0.0.1:{s2.port}: publish started") == 1


def test_slave_plays_from_its_first_frame(srs_server, clients):
    s1 = srs_server(name="slave1")
    master = srs_server(master_conf(f"127.0.0.1:{s1.port}"), name="master")
    clients.publish(f"{master.url}/{STREAM}")
    master.wait_log("publish started", timeout=15)
    time.sleep(1.5)  # join mid-GOP on the master: the slave still starts at a keyframe
    frames = video_frames(f"{s1.url}/{STREAM}", count=10)
    assert len(frames) == 10 and frames[0]["key_frame"] == 1


def test_reload_adds_a_destination_and_keeps_the_other_connected(srs_server, clients):
    s1 = srs_server(name="slave1")
    s2 = srs_server(name="slave2")
    master = srs_server(master_conf(f"127.0.0.1:{s1.port}"), name="master")
    clients.publish(f"{master.url}/{STREAM}")
    assert plays(f"{s1.url}/{STREAM}")
    assert not plays(f"{s2.url}/{STREAM}")

    master.write_conf(master_conf(f"127.0.0.1:{s1.port}", f"127.0.0.1:{s2.port}"))
    os.kill(master.master_pid, signal.SIGHUP)
    master.wait_log(f"-> 127.0.0.1:{s2.port}: publish started", timeout=15)
    assert wait_for(lambda: plays(f"{s2.url}/{STREAM}"), 15, what="slave 2 plays")
    log = master.log_text()
    assert log.count(f"-> 127.0.0.1:{s1.port}: connecting") == 1, "slave 1's forward kept its connection"
    assert f"-> 127.0.0.1:{s1.port}: stopped" not in log
    assert plays(f"{s1.url}/{STREAM}")

    master.write_conf(master_conf(f"127.0.0.1:{s2.port}"))  # and removing one stops just that one
    os.kill(master.master_pid, signal.SIGHUP)
    master.wait_log(f"-> 127.0.0.1:{s1.port}: stopped", timeout=15)
    assert master.log_text().count(f"-> 127.0.0.1:{s2.port}: connecting") == 1


def test_rtmp_url_destination_with_variables_lands_under_its_name(srs_server, clients):
    s1 = srs_server(name="slave1")
    dest = f"rtmp://127.0.0.1:{s1.port}/mirror/[app]-[stream]?[param]&extra=1"
    master = srs_server(master_conf(dest), name="master")
    clients.publish(f"{master.url}/live/cam1?key=abc")
    master.wait_log("publish started", timeout=15)
    c = codecs(ffprobe(f"{s1.url}/mirror/live-cam1"))
    assert c["video"]["codec_name"] == "h264"
    assert "tcUrl=rtmp://127.0.0.1:" in s1.log_text()
    # query values are not logged; a third-party rtmp:// URL gets no srv_via (srv_via auto)
    assert f"forward live/cam1 -> rtmp://127.0.0.1:{s1.port}/mirror/[app]-[stream]?[param]&extra=***: " \
           f"publish started on rtmp://127.0.0.1:{s1.port}/mirror/live-cam1?key=***&extra=*** (" in master.log_text()


def test_per_pattern_forward_blocks(srs_server, clients):
    s1 = srs_server(name="slave1")
    s2 = srs_server(name="slave2")
    master = srs_server("vhost __defaultVhost__ {\n"
                        f"  forward live/game_* {{ enabled on; destination 127.0.0.1:{s1.port}; }}\n"
                        f"  forward * {{ enabled on; destination 127.0.0.1:{s2.port}; }}\n"
                        "}\n", name="master")
    clients.publish(f"{master.url}/live/game_1")
    clients.publish(f"{master.url}/live/news")
    assert wait_for(lambda: plays(f"{s1.url}/live/game_1"), 15, what="game on slave 1")
    assert plays(f"{s2.url}/live/game_1") and plays(f"{s2.url}/live/news")
    assert not plays(f"{s1.url}/live/news")
