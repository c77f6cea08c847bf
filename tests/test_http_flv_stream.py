"""What an HTTP-FLV player receives, read byte by byte: the FLV header's track flags for
audio-only and video-only streams (real ffmpeg publishing, ffprobe and a raw reader playing).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import urllib.request
from typing import Any

from srv.media.flv import TAG_AUDIO, TAG_VIDEO, FlvHeader, FlvReader, FlvTag
from srv.rtmp.messages import Message
from tests.conftest import Clients, Server, codecs, ffprobe, wait_for
from tests.rtmp_tools import RtmpTestClient

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


def api(srv: Server, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}{path}", timeout=10) as r:
        return json.load(r)


def publishing(srv: Server) -> bool:
    return any(s["publish"]["active"] for s in api(srv, "/api/v1/streams")["streams"])


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


AAC_SH, AVC_SH = b"\xaf\x00\x12\x10", b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x00\x01\x00\x00"


def encoder_session(until: int) -> list[Message]:
    """What an encoder such as OBS sends: sequence headers, then audio (every 23 ms) running up
    to 57 ms ahead of video (every 40 ms), so the last message can be a video frame older than
    the last audio frame already sent."""
    out = [Message(9, 1, 0, AVC_SH), Message(8, 1, 0, AAC_SH)]
    audio = 0
    for video in range(0, until + 1, 40):
        while audio <= video + 57:
            out.append(Message(8, 1, audio, b"\xaf\x01" + bytes(40)))
            audio += 23
        out.append(Message(9, 1, video, (b"\x17" if video % 1000 == 0 else b"\x27") + b"\x01\x00\x00\x00" + bytes(60)))
    return out


def test_timestamps_stay_monotonic_per_track_across_a_republish(srs_server: Any) -> None:
    srv = srs_server(REMUX, workers=1, http=True)
    player = FlvPlay(srv.http_port, "/live/s.flv")
    wait_for(lambda: any(c["type"] == "flv-play" for c in api(srv, "/api/v1/clients")["clients"]), 10,
             interval=0.1, what="the player waiting")  # so it gets every frame from the first

    async def publish_once(last: int) -> None:
        c = RtmpTestClient(srv.port)
        await c.open()
        status = await c.publish("s")
        assert status.code == "NetStream.Publish.Start", status
        for msg in encoder_session(last):
            c.send(msg)
        await c.drain()
        await asyncio.get_running_loop().run_in_executor(None, lambda: wait_for(
            lambda: len(player.frames(TAG_VIDEO)) >= expected, 20, what="this publisher's video"))
        await c.close()

    expected = 0
    for last in (2000, 1000, 3000):  # the player stays across two republishes
        expected += last // 40 + 2  # frames and the sequence header
        asyncio.run(publish_once(last))
        wait_for(lambda: not publishing(srv), 15, interval=0.1, what="the publisher gone")
    player.close()
    for kind in (TAG_AUDIO, TAG_VIDEO):
        ts = [t.timestamp for t in player.frames(kind)]
        back = [(i, a, b) for i, (a, b) in enumerate(zip(ts, ts[1:], strict=False)) if b < a]
        assert not back, (kind, back[:5])
    assert len(player.frames(TAG_VIDEO)) == expected  # every publisher's frames, nothing twice
