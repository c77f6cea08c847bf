"""Bad input on the wire and codecs beyond H.264: the server closes only the offending
connection, with a log line naming the client and the reason, while a stream keeps playing.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Clients, codecs, ffprobe
from rtmp_tools import RtmpTestClient, run
from test_media_ffmpeg import hevc_access_units, hevc_type, hvcc
from test_rtmp_live import decode_errors, duration, publishing, record

from srv.media.codec import parse_video
from srv.rtmp import events as ev
from srv.rtmp.chunk import encode_message
from srv.rtmp.client import ClientSession
from srv.rtmp.handshake import ClientHandshake
from srv.rtmp.messages import Message


def handshaken(port: int) -> socket.socket:
    """A TCP connection that completed a real client handshake, ready for chunk bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    hs = ClientHandshake()
    hs.start()
    s.sendall(hs.data_to_send())
    while not hs.done:
        data = s.recv(65536)
        assert data, "server closed during the handshake"
        hs.receive_data(data)
    s.sendall(hs.data_to_send())
    return s


def closed_by_server(s: socket.socket, timeout: float = 10) -> bool:
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    finally:
        s.close()


def attacks(port: int) -> list[tuple[str, socket.socket]]:
    out = []
    rng = random.Random(7)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out.append(("http request", s))
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(bytes([3]) + bytes(rng.getrandbits(8) for _ in range(5000)))
    out.append(("garbage after C0", s))
    s = handshaken(port)
    s.sendall(bytes(rng.getrandbits(8) for _ in range(20000)))
    out.append(("garbage after the handshake", s))
    s = handshaken(port)  # Set Chunk Size 0
    s.sendall(encode_message(1, 0, 0, struct.pack(">I", 0), 128, 2))
    out.append(("chunk size 0", s))
    s = handshaken(port)  # Set Chunk Size above 16 MiB
    s.sendall(encode_message(1, 0, 0, struct.pack(">I", 0x7FFFFFFF), 128, 2))
    out.append(("huge chunk size", s))
    s = handshaken(port)  # a fmt 0 header announcing a 16 MiB+ message
    s.sendall(bytes([3]) + b"\x00\x00\x00" + b"\xff\xff\xff" + bytes([20]) + b"\x00\x00\x00\x00")
    out.append(("huge message length", s))
    s = handshaken(port)  # malformed AMF in a command
    bad_amf = b"\x02\x00\x07connect\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\x03\x00\x03app\x02\xff\xff"
    s.sendall(encode_message(20, 0, 0, bad_amf, 128, 3))
    out.append(("malformed AMF", s))
    s = handshaken(port)  # publish before connect
    from srv.rtmp import amf0
    s.sendall(encode_message(20, 1, 0, amf0.encode("publish", 0.0, None, "x", "live"), 128, 3))
    out.append(("publish before connect", s))
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(bytes([3]) + os.urandom(700))  # a truncated C1, then the client goes away
    s.shutdown(socket.SHUT_WR)
    out.append(("truncated handshake", s))
    return out


def test_bad_bytes_close_only_their_connection_while_a_stream_plays(
        srs_server, clients: Clients, tmp_path: Path) -> None:
    s = srs_server(workers=2)
    pub = clients.publish(f"{s.url}/live/s")
    publishing(s)
    out = tmp_path / "rec.flv"
    player = record(clients, f"{s.url}/live/s", out, 6)
    time.sleep(1)
    for name, sock in attacks(s.port):
        assert closed_by_server(sock), f"{name}: connection not closed"
    assert player.wait(30) == 0
    assert duration(out) >= 5.5
    assert decode_errors(out) == ""
    assert pub.poll() is None
    log = s.log_text()
    assert len(re.findall(r"\[Warn\]\[w\d\]\[\d+\]\[[\d-]+\] 127\.0\.0\.1:\d+ .*protocol error: .+; closing", log)) >= 7
    for needle in ("not RTMP: HTTP?", "chunk size 0", "publish before connect"):
        assert needle in log, needle
    assert "Traceback" not in log
    # every worker is still the one that started: nothing crashed
    assert "respawning" not in log
    assert codecs(ffprobe(f"{s.url}/live/s"))["video"]["codec_name"] == "h264"


def hevc_tags(tmp_path: Path) -> list[tuple[int, bytes]]:
    """HEVC from x265 as Enhanced RTMP video tags (what OBS >= 29.1 / ffmpeg >= 6.1 send)."""
    raw = tmp_path / "x.hevc"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "6", "-pix_fmt", "yuv420p", "-c:v", "libx265", "-x265-params",
                    "keyint=50:min-keyint=50:open-gop=0:aud=1:log-level=error", "-f", "hevc", str(raw)],
                   check=True, timeout=120)
    units = hevc_access_units(raw.read_bytes())
    params = {hevc_type(n): n for n in units[0] if hevc_type(n) in (32, 33, 34)}
    tags = [(0, b"\x90hvc1" + hvcc(params[32], params[33], params[34]))]
    for i, unit in enumerate(units):
        irap = any(16 <= hevc_type(n) <= 23 for n in unit)
        body = b"".join(struct.pack(">I", len(n)) + n for n in unit if hevc_type(n) < 32)
        tags.append((i * 40, bytes((0x80 | (1 if irap else 2) << 4 | 3,)) + b"hvc1" + body))
    return tags


def test_enhanced_rtmp_hevc_reaches_a_late_joiner_on_another_worker(srs_server, tmp_path: Path) -> None:
    s = srs_server(workers=2)
    tags = hevc_tags(tmp_path)

    async def go() -> None:
        pub = RtmpTestClient(s.port)
        await pub.open()
        status = await pub.publish("hevc")
        assert status.code == "NetStream.Publish.Start"
        start = time.monotonic()
        players: list[RtmpTestClient] = []
        for ts, payload in tags:
            pub.send(Message(9, pub.session.stream_id or 1, ts, payload))
            await pub.drain()
            delay = start + ts / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if ts == 1200 or ts == 1240:  # join mid-GOP (keyframes every 2 s), twice: both workers
                for _ in range(3):
                    p = RtmpTestClient(s.port)
                    await p.open()
                    await p.play("hevc")
                    players.append(p)
        await asyncio.sleep(1)
        for p in players:
            video = [m for m in p.media if m.type_id == 9]
            assert video, "no video reached the player"
            first = parse_video(video[0].payload)
            assert first is not None and first.codec == "HEVC" and first.is_sequence_header
            second = parse_video(video[1].payload)
            assert second is not None and second.is_keyframe and not second.is_sequence_header
            assert len(video) > 50
            await p.close()
        await pub.close()

    run(go())
    assert "pull __defaultVhost__/live/hevc from worker" in s.log_text()


def test_aggregate_messages_are_split_for_players(srs_server) -> None:
    """An aggregate (type 22) from a publisher reaches players as its individual tags."""
    s = srs_server(workers=1)
    from srv.media.flv import encode_tag

    async def go() -> None:
        pub = RtmpTestClient(s.port)
        await pub.open()
        await pub.publish("agg")
        player = RtmpTestClient(s.port)
        await player.open()
        await player.play("agg")
        sh = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x04\x67\x64\x00\x1f\x01\x00\x04\x68\xee\x3c\x80"
        frames = [encode_tag(9, 0, sh)] + [encode_tag(9, 40 * i, b"\x27\x01\x00\x00\x00" + bytes(100))
                                             for i in range(1, 6)]
        pub.send(Message(22, pub.session.stream_id or 1, 0, b"".join(frames)))
        await player.expect(ev.MediaMessage, timeout=5)
        deadline = time.monotonic() + 5
        while len([m for m in player.media if m.type_id == 9]) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        video = [m for m in player.media if m.type_id == 9]
        assert [m.timestamp for m in video] == [0, 40, 80, 120, 160, 200]
        await player.close()
        await pub.close()

    run(go())



class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def writelines(self, data: list[bytes]) -> None:
        self.out.extend(bytes(d) for d in data)

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


def attach_client(conn: Any) -> tuple[FakeTransport, ClientSession, Callable[[], None]]:
    """A ClientSession wired to a server connection over a FakeTransport; `exchange()` passes
    what the client has to send to the server and the server's answer back."""
    transport = FakeTransport()
    conn.connection_made(transport)
    client = ClientSession("live", "rtmp://127.0.0.1/live")
    client.start()

    def exchange() -> None:
        conn.data_received(client.data_to_send())
        client.receive_data(b"".join(transport.out))
        transport.out.clear()

    return transport, client, exchange


def test_an_internal_error_costs_only_that_connection(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A bug hit while handling one client's bytes (here: the hub raising on play) is logged
    with its traceback and closes that connection; nothing escapes into the event loop."""
    from srv.app.hub import StreamHub
    from srv.conf.loader import load
    from srv.net.rtmp_server import RtmpServerProtocol
    from srv.worker_context import WorkerContext

    conf = tmp_path / "x.conf"
    conf.write_text("listen 1935;\nvhost __defaultVhost__ { }\n")
    config = load(str(conf), {})
    loop = asyncio.new_event_loop()
    try:
        hub = StreamHub(config, 1, registry=None, loop=loop)  # type: ignore[arg-type]

        def broken_play(*args: object, **kw: object) -> None:
            raise RuntimeError("simulated bug")

        hub.play = broken_play  # type: ignore[method-assign]
        ctx = WorkerContext(1, config, hub, loop, None)
        conn = RtmpServerProtocol(ctx)
        transport = FakeTransport()
        conn.connection_made(transport)
        client = ClientSession("live", "rtmp://127.0.0.1/live")
        client.start()

        def exchange() -> list[ev.Event]:
            conn.data_received(client.data_to_send())  # must never raise
            got = client.receive_data(b"".join(transport.out))
            transport.out.clear()
            return got

        events = []
        for _ in range(4):
            events += exchange()
        assert any(isinstance(e, ev.Connected) for e in events)
        client.create_stream()
        events = exchange()
        assert any(isinstance(e, ev.StreamCreated) for e in events)
        client.play("s")
        exchange()
        assert transport.aborted and conn.closed
        assert "internal error" in caplog.text and "simulated bug" in caplog.text
        assert ctx.counters["clients_errs_total"] == 1
    finally:
        loop.close()
