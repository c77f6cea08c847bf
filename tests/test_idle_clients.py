"""Clients that never publish nor play cannot hold the server: handshake and identify timeouts,
a bounded wait for a stream nobody publishes (RTMP and HTTP-FLV), and refusals logged at most
about once a second however many arrive.

Timeouts are shortened in the configs so the tests run in seconds; the assertions are on what
the server does (closes, logs, serves the next client), never on how fast.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from typing import Any

from conftest import Clients, codecs, ffprobe, wait_for
from rtmp_tools import RtmpTestClient, run
from test_rtmp_live import publishing
from test_rtmp_robustness import closed_by_server, handshaken

from srv.rtmp import amf0
from srv.rtmp import events as ev
from srv.rtmp.chunk import encode_message
from srv.rtmp.messages import Message

SHORT = "handshake_timeout 1000;\nidentify_timeout 1000;\n"


def connected(port: int) -> socket.socket:
    """A handshake and a `connect` to app live, then silence."""
    s = handshaken(port)
    obj = {"app": "live", "tcUrl": f"rtmp://127.0.0.1:{port}/live"}
    s.sendall(encode_message(20, 0, 0, amf0.encode("connect", 1.0, obj), 128, 3))
    s.settimeout(5)
    assert s.recv(65536), "no answer to connect"
    return s


def test_sockets_that_stop_at_each_stage_are_closed_with_a_log_line(srs_server) -> None:  # type: ignore[no-untyped-def]
    s = srs_server(workers=1, body=SHORT + "vhost __defaultVhost__ { }\n")
    stages = {
        "nothing": socket.create_connection(("127.0.0.1", s.port)),
        "half a handshake": socket.create_connection(("127.0.0.1", s.port)),
        "only a handshake": handshaken(s.port),
        "only a connect": connected(s.port),
    }
    stages["half a handshake"].sendall(b"\x03" + os.urandom(700))
    for name, sock in stages.items():
        assert closed_by_server(sock, 15), f"{name}: still open"
    log = s.log_text()
    assert len(re.findall(r"\[Warn\].* 127\.0\.0\.1:\d+ handshake not completed within 1s "
                          r"\(handshake_timeout\); closing", log)) == 2
    assert len(re.findall(r"\[Warn\].* 127\.0\.0\.1:\d+ no publish or play within 1s "
                          r"\(identify_timeout\); closing", log)) == 2


def test_publishers_and_players_are_not_touched_by_the_identify_timeout(srs_server, clients: Clients) -> None:  # type: ignore[no-untyped-def]
    s = srs_server(workers=1, body=SHORT + "vhost __defaultVhost__ { }\n")
    clients.publish(f"{s.url}/live/s")
    publishing(s)

    async def play() -> None:
        c = RtmpTestClient(s.port)
        await c.open()
        await c.play("s")
        await asyncio.sleep(2.5)  # past both timeouts
        c.media.clear()
        await c.expect(ev.MediaMessage)
        assert not c.closed.is_set()
        await c.close()

    run(play())
    assert "timeout); closing" not in s.log_text()


def test_idle_sockets_filling_max_connections_no_longer_lock_clients_out(srs_server, clients: Clients) -> None:  # type: ignore[no-untyped-def]
    s = srs_server(workers=1, body=SHORT + "max_connections 4;\nvhost __defaultVhost__ { }\n")
    idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(2)] + \
        [handshaken(s.port), connected(s.port)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", s.port))
    assert closed_by_server(extra, 5)  # the server is full
    s.wait_log("rejected: max_connections")
    for sock in idle:
        assert closed_by_server(sock, 15)
    clients.publish(f"{s.url}/live/s")
    publishing(s)
    assert codecs(ffprobe(f"{s.url}/live/s"))["video"]["codec_name"] == "h264"


def test_refused_connections_are_summed_up_once_a_second(srs_server) -> None:  # type: ignore[no-untyped-def]
    s = srs_server(workers=1, body="max_connections 1;\nvhost __defaultVhost__ { }\n")
    holder = socket.create_connection(("127.0.0.1", s.port))
    time.sleep(0.2)
    attempts = 300
    started = time.monotonic()
    for _ in range(attempts):
        c = socket.create_connection(("127.0.0.1", s.port))
        c.settimeout(5)
        try:
            c.recv(1)  # wait for the refusal, so every attempt reached the server
        except OSError:
            pass
        c.close()
    elapsed = time.monotonic() - started

    def counted() -> tuple[int, list[int]]:
        log = s.log_text()
        full = len(re.findall(r"127\.0\.0\.1:\d+ rejected: max_connections \(1 clients\)", log))
        summed = [int(n) for n in re.findall(
            r"rejected (\d+) more connections? in the last 1s \(max_connections \1\)", log)]
        return full, summed

    wait_for(lambda: sum(map(int, [counted()[0], *counted()[1]])) >= attempts, 10, what="every refusal counted")
    time.sleep(1.5)  # a further second: nothing left to report, nothing reported twice
    full, summed = counted()
    assert full + sum(summed) == attempts
    assert summed, "no summary line"
    seconds = elapsed + 2.5
    assert full + len(summed) <= 2 * (seconds + 1), (full, len(summed), seconds)
    holder.close()


def _flv_get(port: int, stream: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(f"GET /live/{stream}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def _read_until_closed(s: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sent, and whether it closed the connection within `timeout`."""
    deadline = time.monotonic() + timeout
    out = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                return out, True
            out += chunk
    except TimeoutError:
        pass
    except ConnectionResetError:
        return out, True
    return out, False


WAIT = ("vhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } "
        "play { wait_timeout 1500; } }\n")


def test_players_of_a_stream_that_never_appears_are_closed_after_wait_timeout(srs_server: Any) -> None:
    s = srs_server(workers=1, http=True, body=WAIT)
    flv = _flv_get(s.http_port, "never")

    async def rtmp_player() -> bool:
        c = RtmpTestClient(s.port)
        await c.open()
        await c.play("never")
        await asyncio.wait_for(c.closed.wait(), 15)
        return True

    assert run(rtmp_player())
    out, closed = _read_until_closed(flv, 15)
    assert closed
    assert out.startswith(b"HTTP/1.1 200 ")  # SRS answers at once, then waits
    log = s.log_text()
    assert re.search(r"flv-play __defaultVhost__/live/never closed \(no publisher for 1\.5s \(wait_timeout\)\)", log)
    assert re.search(r"live/never closed \(player\), no publisher for 1\.5s \(wait_timeout\)", log)


def test_a_waiting_player_that_gets_a_publisher_in_time_keeps_playing(srs_server: Any) -> None:
    s = srs_server(workers=1, http=True, body=WAIT.replace("1500", "3000"))

    async def go() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.http_port)
        writer.write(b"GET /live/s.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(65536), 10)).startswith(b"HTTP/1.1 200 ")  # waiting
        received = [0]

        async def drain() -> None:
            while chunk := await reader.read(65536):
                received[0] += len(chunk)

        flv = asyncio.ensure_future(drain())
        pub = RtmpTestClient(s.port)  # a publisher that arrives well within wait_timeout
        await pub.open()
        assert (await pub.publish("s")).code == "NetStream.Publish.Start"
        ts, until = 0, time.monotonic() + 5  # publish past wait_timeout
        while time.monotonic() < until:
            pub.send(Message(9, pub.session.stream_id or 1, ts, b"\x17\x01\x00\x00\x00" + bytes(200)))
            ts += 40
            await asyncio.sleep(0.04)
        assert not flv.done(), "the waiting player was closed although its publisher came"
        assert received[0] > 10_000
        flv.cancel()
        writer.close()
        await pub.close()

    run(go())
    assert "wait_timeout" not in s.log_text()
