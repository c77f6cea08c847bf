"""What an HTTP-FLV player receives, read byte by byte: the FLV header's track flags for
audio-only and video-only streams (real ffmpeg publishing, ffprobe and a raw reader playing).
"""

from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any

from srv.media.flv import FlvHeader, FlvReader, FlvTag
from tests.conftest import Clients, Server, codecs, ffprobe, wait_for

REMUX = "vhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }\n"
AUDIO_ONLY = ["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
              "-c:a", "aac", "-b:a", "64k", "-f", "flv"]
VIDEO_ONLY = ["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-c:v", "libx264",
              "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p", "-f", "flv"]


class FlvPlay:
    """A raw HTTP/1.0 HTTP-FLV player (no chunked framing) parsing every tag it receives."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.reader = FlvReader()
        self.tags: list[FlvTag] = []
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.split(b" ", 2)[1] == b"200", head
            self.tags += self.reader.feed(body)
            while chunk := self.sock.recv(65536):
                self.tags += self.reader.feed(chunk)
        except OSError:
            pass  # closed by the test
        except Exception as e:  # surfaced by the test
            self.error = e

    @property
    def header(self) -> FlvHeader | None:
        return self.reader.header

    def wait_tags(self, count: int, what: str, timeout: float = 20) -> None:
        wait_for(lambda: len(self.tags) >= count or self.error is not None, timeout, what=what)
        assert self.error is None, self.error

    def frames(self, tag_type: int) -> list[FlvTag]:
        return [t for t in self.tags if t.tag_type == tag_type]

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)
        assert self.error is None, self.error


def publish(clients: Clients, srv: Server, args: list[str], stream: str = "s") -> subprocess.Popen[bytes]:
    return clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args,
                          f"{srv.url}/live/{stream}"], stdout=subprocess.DEVNULL)


def test_audio_only_and_video_only_streams_announce_only_their_track(srs_server: Any,
                                                                     clients: Clients) -> None:
    srv = srs_server(REMUX, workers=1, http=True)
    for stream, args, audio, video in (("a", AUDIO_ONLY, True, False), ("v", VIDEO_ONLY, False, True)):
        early = FlvPlay(srv.http_port, f"/live/{stream}.flv")  # waits for the publisher
        publish(clients, srv, args, stream)
        early.wait_tags(10, f"{stream}: tags to the waiting player")
        late = FlvPlay(srv.http_port, f"/live/{stream}.flv")  # joins the stream's GOP cache
        late.wait_tags(5, f"{stream}: tags to the joining player")
        for p in (early, late):
            assert p.header is not None
            assert (p.header.has_audio, p.header.has_video) == (audio, video), stream
            p.close()
        # ffprobe finds the one track without waiting for the other: its own limit is a
        # failure here, where an announced but missing track made it wait ~90 s
        probe = codecs(ffprobe(f"http://127.0.0.1:{srv.http_port}/live/{stream}.flv", timeout=20))
        assert set(probe) == ({"audio"} if audio else {"video"}), probe
    assert "Traceback" not in srv.log_text()


def test_without_guessing_the_header_follows_has_audio_and_has_video(srs_server: Any, clients: Clients) -> None:
    body = ("vhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; "
            "guess_has_av off; has_audio off; has_video on; } }\n")
    srv = srs_server(body, workers=1, http=True)
    p = FlvPlay(srv.http_port, "/live/s.flv")  # nobody publishes: the header is sent at once
    wait_for(lambda: p.header is not None, 10, what="FLV header")
    assert p.header is not None and (p.header.has_audio, p.header.has_video) == (False, True)
    p.close()
