"""RTMPS and HTTPS with real clients: ffmpeg/ffprobe over rtmps:// and https://, Python's ssl for
the API and for reading the certificate a handshake gets, forwarding over TLS to a second srv,
certificates reloaded on SIGHUP, and bad input on the TLS ports (garbage, a half handshake,
plain RTMP) that costs only its own connection.

Certificates are made in each test with the openssl command line (tests/tls_certs.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import codecs, ffprobe, file_size, free_port, keeps_growing, record_flv, wait_for
from tls_certs import Authority, peer_certificate

STREAM = "live/livestream"


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "pki")


def tls_files(authority: Authority, server: str = "server", serial: int = 1) -> tuple[str, str]:
    cert, key = authority.issue(server, serial)
    return str(cert), str(key)


def rtmps_block(port: int, cert: str, key: str) -> str:
    return f"rtmps {{ enabled on; listen 127.0.0.1:{port}; key {key}; cert {cert}; }}\n"


def both_tracks(url: str, extra: list[str] | None = None) -> bool:
    c = codecs(ffprobe(url, extra=extra))
    return "video" in c and "audio" in c


# ---- RTMPS ------------------------------------------------------------------------------------


def test_rtmps_publish_and_play_with_ffmpeg(srs_server, clients, authority):
    cert, key = tls_files(authority)
    port = free_port()
    s = srs_server(rtmps_block(port, cert, key) + "vhost __defaultVhost__ { }\n", workers=2)
    clients.publish(f"rtmps://127.0.0.1:{port}/{STREAM}")
    wait_for(lambda: both_tracks(f"rtmps://127.0.0.1:{port}/{STREAM}"), 20, what="play over rtmps")
    # the same stream over plain RTMP, whichever worker the player lands on
    assert both_tracks(f"{s.url}/{STREAM}")
    assert "rtmps://127.0.0.1:" in s.log_text()


def test_rtmps_and_https_refuse_to_start_without_their_certificate(srs_server, tmp_path):
    port = free_port()
    missing = tmp_path / "nope.crt"
    s = srs_server(rtmps_block(port, str(missing), str(tmp_path / "nope.key")) + "vhost __defaultVhost__ { }\n",
                   wait=False)
    assert s.proc is not None
    assert s.proc.wait(20) == 1
    out = s.proc.stdout.read().decode() if s.proc.stdout else ""
    assert f"listen rtmps://127.0.0.1:{port}: cannot load certificate {missing}" in out
    assert "No such file or directory" in out


# ---- HTTPS: HTTP-FLV, files and the API ---------------------------------------------------------


def test_https_serves_http_flv_files_and_the_api(srs_server, clients, authority, tmp_path):
    cert, key = tls_files(authority)
    flv_port, api_port, plain_api = free_port(), free_port(), free_port()
    body = (f"http_server {{ enabled on; listen 127.0.0.1:{free_port()}; dir {tmp_path / 'srs'};\n"
            f"    https {{ enabled on; listen 127.0.0.1:{flv_port}; key {key}; cert {cert}; }} }}\n"
            f"http_api {{ enabled on; listen 127.0.0.1:{plain_api};\n"
            f"    https {{ enabled on; listen 127.0.0.1:{api_port}; key {key}; cert {cert}; }} }}\n"
            "vhost __defaultVhost__ { http_remux { enabled on; } }\n")
    s = srs_server(body)
    (s.dir / "hello.txt").write_text("hello over tls\n")
    clients.publish(f"{s.url}/{STREAM}")
    flv = f"https://127.0.0.1:{flv_port}/{STREAM}.flv"
    wait_for(lambda: both_tracks(flv, ["-tls_verify", "0"]), 20, what="HTTP-FLV over https")
    ctx = ssl.create_default_context(cafile=str(authority.ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{flv_port}/hello.txt", context=ctx, timeout=10) as r:
        assert r.read() == b"hello over tls\n"
    with urllib.request.urlopen(f"https://127.0.0.1:{api_port}/api/v1/streams/", context=ctx, timeout=10) as r:
        streams = json.loads(r.read())["streams"]
    assert [st["name"] for st in streams] == ["livestream"]
    # a player that came in over https is listed (and told to hooks) with an https:// tcUrl
    with urllib.request.urlopen(flv, context=ctx, timeout=10) as player:
        assert player.read(13)[:3] == b"FLV"

        def listed() -> list[str]:
            with urllib.request.urlopen(f"https://127.0.0.1:{api_port}/api/v1/clients/", context=ctx,
                                        timeout=10) as r:
                return [c["tcUrl"] for c in json.loads(r.read())["clients"] if c["type"] == "flv-play"]
        wait_for(lambda: listed() == [f"https://127.0.0.1:{flv_port}/live"], 10, what="the https player's tcUrl")
    # the plain ports go on as before
    with urllib.request.urlopen(f"http://127.0.0.1:{plain_api}/api/v1/versions", timeout=10) as r:
        assert json.loads(r.read())["code"] == 0


def test_api_and_http_server_may_share_one_https_port(srs_server, authority):
    cert, key = tls_files(authority)
    port = free_port()
    https = f"https {{ enabled on; listen 127.0.0.1:{port}; key {key}; cert {cert}; }}"
    s = srs_server(f"http_server {{ enabled on; listen 127.0.0.1:{free_port()}; {https} }}\n"
                   f"http_api {{ enabled on; listen 127.0.0.1:{free_port()}; {https} }}\n"
                   "vhost __defaultVhost__ { }\n")
    ctx = ssl.create_default_context(cafile=str(authority.ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/v1/versions", context=ctx, timeout=10) as r:
        assert json.loads(r.read())["code"] == 0
    assert f"https(api+server)://127.0.0.1:{port}" in s.log_text()


# ---- forward over TLS ---------------------------------------------------------------------------


def test_forward_over_rtmps_to_a_second_srv(srs_server, clients, authority):
    cert, key = tls_files(authority)
    slave_tls = free_port()
    slave = srs_server(rtmps_block(slave_tls, cert, key) + "vhost __defaultVhost__ { }\n", name="slave")
    master = srs_server(
        "vhost __defaultVhost__ {\n"
        # SRS 7's spelling (its forward.master.rtmps.conf): host:port dialed over TLS
        f"    forward live/livestream {{ enabled on; rtmps on; tls_ca {authority.ca}; "
        f"destination 127.0.0.1:{slave_tls}; }}\n"
        # an rtmps:// URL, another name on the slave
        f"    forward live/livestream {{ enabled on; tls_ca {authority.ca}; "
        f"destination rtmps://localhost:{slave_tls}/copy/[stream]; }}\n"
        "}\n", name="master")
    clients.publish(f"{master.url}/{STREAM}")
    for name in (STREAM, "copy/livestream"):
        wait_for(lambda n=name: both_tracks(f"{slave.url}/{n}"), 25, what=f"{name} forwarded over rtmps")
    log = master.log_text()
    assert f"tcUrl rtmps://127.0.0.1:{slave_tls}/live" in log
    assert f"tcUrl rtmps://localhost:{slave_tls}/copy" in log


def test_forward_refuses_a_certificate_it_cannot_verify(srs_server, clients, authority):
    cert, key = tls_files(authority)
    slave_tls = free_port()
    slave = srs_server(rtmps_block(slave_tls, cert, key) + "vhost __defaultVhost__ { }\n", name="slave")
    master = srs_server(  # no tls_ca: the system's CAs do not know the test CA
        "vhost __defaultVhost__ {\n"
        f"    forward {{ enabled on; rtmps on; destination 127.0.0.1:{slave_tls}; backoff_initial 300; }}\n"
        "}\n", name="master")
    clients.publish(f"{master.url}/{STREAM}")
    master.wait_log(f"TLS handshake with 127.0.0.1:{slave_tls} failed: unable to get local issuer certificate",
                    timeout=20)
    slave.wait_log("TLS handshake failed on rtmps://", timeout=10)


# ---- certificates reloaded on SIGHUP ------------------------------------------------------------


def test_sighup_reloads_the_certificate_and_keeps_sessions(srs_server, clients, authority, tmp_path):
    cert1, key1 = tls_files(authority, "one", serial=1001)
    cert2, key2 = tls_files(authority, "two", serial=2002)
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(cert1, live_cert)
    shutil.copy(key1, live_key)
    port = free_port()
    s = srs_server(rtmps_block(port, str(live_cert), str(live_key)) + "vhost __defaultVhost__ { }\n", workers=2)
    assert peer_certificate(port, authority.ca)["serialNumber"] == "03E9"  # 1001
    clients.publish(f"rtmps://127.0.0.1:{port}/{STREAM}")
    out = tmp_path / "player.flv"
    record_flv(clients, f"rtmps://127.0.0.1:{port}/{STREAM}", out)
    wait_for(lambda: file_size(out) > 50_000, 20, what="the rtmps player receiving")

    # renewal in place (same paths, new files), then SIGHUP
    shutil.copy(cert2, live_cert)
    shutil.copy(key2, live_key)
    s.send_signal(signal.SIGHUP)
    s.wait_log("applied the new config", count=2)
    # several handshakes: every worker serves the new certificate
    assert {peer_certificate(port, authority.ca)["serialNumber"] for _ in range(8)} == {"07D2"}  # 2002
    assert keeps_growing(out), "the session started before the reload stopped"


def test_a_reload_with_a_broken_certificate_fails_and_keeps_the_old_one(srs_server, authority, tmp_path):
    cert1, key1 = tls_files(authority, "one", serial=1001)
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(cert1, live_cert)
    shutil.copy(key1, live_key)
    port = free_port()
    s = srs_server(rtmps_block(port, str(live_cert), str(live_key)) + "vhost __defaultVhost__ { }\n")
    live_cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    s.send_signal(signal.SIGHUP)
    s.wait_log("reload failed: listen rtmps://")
    assert f"cannot load certificate {live_cert}" in s.log_text()
    assert peer_certificate(port, authority.ca)["serialNumber"] == "03E9"


# ---- bad input on a TLS port --------------------------------------------------------------------


def client_hello() -> bytes:
    """The first flight of a real TLS client."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_bad_tls_input_disturbs_no_one_and_is_bounded(srs_server, clients, authority, tmp_path):
    cert, key = tls_files(authority)
    port = free_port()
    s = srs_server(rtmps_block(port, cert, key) + "vhost __defaultVhost__ { }\n", workers=1,
                   settings={"handshake_timeout": "1500"})
    clients.publish(f"rtmps://127.0.0.1:{port}/{STREAM}")
    out = tmp_path / "player.flv"
    record_flv(clients, f"rtmps://127.0.0.1:{port}/{STREAM}", out)
    wait_for(lambda: file_size(out) > 50_000, 20, what="the rtmps player receiving")

    # garbage where a ClientHello should be
    garbage = socket.create_connection(("127.0.0.1", port), timeout=10)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert garbage.recv(100) == b""
    garbage_client = f"127.0.0.1:{garbage.getsockname()[1]}"
    garbage.close()
    # plain RTMP on the TLS port: ffmpeg fails, the server names it
    plain = subprocess.run(["ffprobe", "-v", "error", "-rw_timeout", "5000000", f"rtmp://127.0.0.1:{port}/{STREAM}"],
                           capture_output=True, timeout=30)
    assert plain.returncode != 0
    # half a handshake, then silence: closed by handshake_timeout
    hello = client_hello()[:60]
    started = time.monotonic()  # before the connect: the server's clock starts at its accept, later
    half = socket.create_connection(("127.0.0.1", port), timeout=15)
    half.sendall(hello)
    half_client = f"127.0.0.1:{half.getsockname()[1]}"
    assert half.recv(100) == b""
    waited = time.monotonic() - started
    half.close()
    assert 1.4 < waited < 12, waited  # the server closed it, by its 1.5 s bound (not ours, 15 s)

    s.wait_log(f"{half_client} TLS handshake failed on rtmps://127.0.0.1:{port}: "
               "handshake not completed in time; closing")
    log = s.log_text()
    assert f"{garbage_client} TLS handshake failed on rtmps://127.0.0.1:{port}: TLS error HTTP_REQUEST; closing" in log
    assert f"TLS handshake failed on rtmps://127.0.0.1:{port}: TLS error WRONG_VERSION_NUMBER; closing" in log  # RTMP
    assert log.count("TLS handshake failed") >= 3
    assert keeps_growing(out), "the rtmps player stopped"
    os.kill(s.master_pid, 0)
