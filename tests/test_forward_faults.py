"""Vhost forward under faults: peers that never read, loops, the backend hook, nginx-rtmp slaves.

Every test runs real servers and real clients; the misbehaving peers are small Python socket
servers (one never reads at all, one takes the publish and then stops reading).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import Clients, codecs, ffprobe, free_port, video_frames, wait_for

from srv.rtmp import events as ev
from srv.rtmp.session import ServerSession

STREAM = "live/livestream"
HIGH_RATE = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
             "-pix_fmt", "yuv420p", "-b:v", "3M", "-minrate", "3M", "-maxrate", "3M",
             "-bufsize", "1M", "-x264-params", "nal-hrd=cbr:force-cfr=1"]


class SilentPeer:
    """Accepts TCP connections and never reads a byte (not even the handshake)."""

    def __init__(self, rcvbuf: int = 0) -> None:
        self.sock = socket.socket()
        if rcvbuf:  # on the listening socket, so accepted ones advertise a small window from SYN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.on_connection(conn)

    def on_connection(self, conn: socket.socket) -> None:
        """A silent peer does nothing with what it accepts."""

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


class StuckPeer(SilentPeer):
    """Answers the handshake, connect and publish like a server, then stops reading forever."""

    def __init__(self) -> None:
        self.published = threading.Event()
        super().__init__(rcvbuf=4096)

    def on_connection(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        session = ServerSession(out_chunk_size=4096)
        while not self.published.is_set():
            data = conn.recv(4096)
            if not data:
                return
            todo = session.receive_data(data)
            while todo:
                e = todo.pop(0)
                if isinstance(e, ev.ConnectRequest):
                    todo += session.accept_connect(e)
                elif isinstance(e, ev.PublishRequest):
                    session.accept_publish(e.stream_id, e.stream_name)
                    self.published.set()
            conn.sendall(session.data_to_send())
        # and now never read again


def record_frames(url: str, seconds: int, path: Path) -> tuple[int, float]:
    """Record `seconds` of `url`; return (video packets, wall time)."""
    t0 = time.monotonic()
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "10000000",
                    "-i", url, "-t", str(seconds), "-c", "copy", "-f", "flv", str(path)],
                   capture_output=True, timeout=seconds + 30, check=True)
    wall = time.monotonic() - t0
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-count_packets",
                          "-show_entries", "stream=nb_read_packets", "-of", "json", str(path)],
                         capture_output=True, check=True)
    return int(json.loads(out.stdout)["streams"][0]["nb_read_packets"]), wall


def test_destinations_that_never_read_slow_nothing(srs_server, clients: Clients, tmp_path: Path):
    silent, stuck = SilentPeer(), StuckPeer()
    s1 = srs_server(name="slave1")
    try:
        master = srs_server("vhost __defaultVhost__ { forward { enabled on; queue_length 2;\n"
                            f"  destination 127.0.0.1:{silent.port} 127.0.0.1:{stuck.port} "
                            f"127.0.0.1:{s1.port}; }} }}\n",
                            name="master")
        pub = clients.publish(f"{master.url}/{STREAM}", video=HIGH_RATE)
        assert stuck.published.wait(15), "the stuck peer got the publish"
        frames, wall = record_frames(f"{master.url}/{STREAM}", 8, tmp_path / "master.flv")
        assert frames >= 0.9 * 25 * 8, f"master players get the full frame rate ({frames} frames)"
        assert wall < 16, f"8 s of media took {wall:.1f}s to play"
        frames, wall = record_frames(f"{s1.url}/{STREAM}", 4, tmp_path / "slave.flv")
        assert frames >= 0.9 * 25 * 4, f"the healthy slave gets the full frame rate ({frames} frames)"
        assert pub.poll() is None
        log = master.log_text()
        assert f"live/livestream: slow forward destination 127.0.0.1:{stuck.port} skipped" in log
        assert f"-> 127.0.0.1:{silent.port}: error: timeout: not publishing" in log
        assert f"-> 127.0.0.1:{s1.port}: error" not in log
    finally:
        silent.close()
        stuck.close()


def test_forward_loop_is_detected_and_stopped(srs_server, clients: Clients):
    a = srs_server(name="a")
    b = srs_server(name="b")
    for me, other in ((a, b), (b, a)):
        me.write_conf("vhost __defaultVhost__ { forward { enabled on; backoff_initial 200; backoff_max 400;\n"
                      f"  destination 127.0.0.1:{other.port}; }} }}\n")
        os.kill(me.master_pid, signal.SIGHUP)
    for me in (a, b):
        me.wait_log("applied the new config", count=2)
    clients.publish(f"{a.url}/{STREAM}")
    assert wait_for(lambda: "video" in codecs(ffprobe(f"{b.url}/{STREAM}")), 15, what="B plays A's stream")
    a.wait_log("publish refused: forward loop", timeout=15)
    b.wait_log("giving up", timeout=10)
    time.sleep(3)  # no retries, no amplification
    assert a.log_text().count("publish refused: forward loop") == 1
    assert a.log_text().count("publish started") == 1  # A -> B, once
    assert b.log_text().count("publish started") == 0  # B -> A never started
    assert "video" in codecs(ffprobe(f"{a.url}/{STREAM}"))


class Backend:
    """A forward backend (SRS on_forward): records requests, answers with `answer`."""

    def __init__(self, answer: tuple[int, dict[str, Any]]) -> None:
        self.requests: list[dict[str, Any]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                backend.requests.append(json.loads(body))
                status, reply = answer
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/forward"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_backend_chooses_destinations(srs_server, clients: Clients):
    s1 = srs_server(name="slave1")
    backend = Backend((200, {"code": 0, "data": {"urls": [f"rtmp://127.0.0.1:{s1.port}/backup/[stream]-b"]}}))
    try:  # the slave is on loopback: a backend destination there needs allow_private (SSRF guard)
        master = srs_server("vhost __defaultVhost__ { forward { enabled on; allow_private 127.0.0.0/8;\n"
                            f"  backend {backend.url}; }} }}\n", name="master")
        clients.publish(f"{master.url}/live/show?token=t1")
        assert wait_for(lambda: backend.requests, 15, what="on_forward")
        req = backend.requests[0]
        assert req["action"] == "on_forward" and req["app"] == "live" and req["stream"] == "show"
        assert req["param"] == "?token=t1" and req["vhost"] == "__defaultVhost__"
        assert {"server_id", "client_id", "ip", "tcUrl"} <= set(req)
        master.wait_log("publish started", timeout=15)
        assert "video" in codecs(ffprobe(f"{s1.url}/backup/show-b"))
    finally:
        backend.close()


def test_failing_backend_rejects_the_publish(srs_server, clients: Clients):
    backend = Backend((500, {"code": 1}))
    try:
        master = srs_server("vhost __defaultVhost__ { forward { enabled on;\n"
                            f"  backend {backend.url}; }} }}\n", name="master")
        pub = clients.publish(f"{master.url}/{STREAM}")
        master.wait_log("publish refused: forward backend", timeout=15)
        assert pub.wait(15) != 0
    finally:
        backend.close()


NGINX_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def test_forward_to_an_nginx_rtmp_slave(srs_server, clients: Clients, tmp_path: Path):
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"load_module {NGINX_MODULE};\npid {tmp_path}/nginx.pid;\n"
                    f"error_log {tmp_path}/nginx-error.log info;\nevents {{ }}\n"
                    f"rtmp {{ server {{ listen 127.0.0.1:{port}; "
                    f"application live {{ live on; wait_key on; wait_video on; }} }} }}\n")
    nginx = clients.spawn(["nginx", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"])
    wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0 or nginx.poll() is not None,
             10, what="nginx listening")
    assert nginx.poll() is None, nginx.stderr.read().decode() if nginx.stderr else ""
    master = srs_server(f"vhost __defaultVhost__ {{ forward {{ enabled on; destination 127.0.0.1:{port}; }} }}\n",
                        name="master")
    clients.publish(f"{master.url}/{STREAM}")
    master.wait_log("publish started", timeout=15)
    c = codecs(ffprobe(f"rtmp://127.0.0.1:{port}/{STREAM}"))
    assert c["video"]["codec_name"] == "h264" and c["audio"]["codec_name"] == "aac"
    frames = video_frames(f"rtmp://127.0.0.1:{port}/{STREAM}")
    assert frames and frames[0]["key_frame"] == 1
