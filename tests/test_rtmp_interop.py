"""What real RTMP players and publishers see and what the log says about them.

- A republish does not end ffmpeg/ffplay/rtmpdump players: NetStream.Play.UnpublishNotify (on
  which they stop) is sent only with `play { publish_notify on; }`, as nginx-rtmp does
  (`test_rtmp_live.py::test_player_keeps_waiting_across_publishers` checks it is sent then).
- Ordinary exits are logged as such, in the user's words, never as errors.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from pathlib import Path

from conftest import Clients
from rtmp_tools import RtmpTestClient, run
from test_rtmp_live import duration, publishing, record

from srv.rtmp import events as ev


def test_ffmpeg_player_keeps_playing_across_a_republish(srs_server, clients: Clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = srs_server(workers=1)
    first = clients.publish(f"{s.url}/live/s", seconds=4)
    publishing(s)
    out = tmp_path / "across.flv"
    player = record(clients, f"{s.url}/live/s", out, 7)
    s.wait_log("play start")
    assert first.wait(30) == 0
    clients.publish(f"{s.url}/live/s")  # the publisher is back within a second
    publishing(s, count=2)
    assert player.wait(40) == 0
    assert duration(out) >= 6.5  # it went on with the second publisher's frames
    assert "UnpublishNotify" not in s.log_text()


def test_ordinary_exits_are_logged_in_plain_words(srs_server, clients: Clients) -> None:  # type: ignore[no-untyped-def]
    s = srs_server(workers=1)
    pub = clients.publish(f"{s.url}/live/s", seconds=3)  # ends with FCUnpublish, deleteStream
    publishing(s)

    async def players() -> None:
        calm = RtmpTestClient(s.port)
        await calm.open()
        await calm.play("s")
        await calm.expect(ev.MediaMessage, timeout=20)
        await calm.close()
        rude = RtmpTestClient(s.port)
        await rude.open()
        await rude.play("s")
        await rude.expect(ev.MediaMessage, timeout=20)
        sock = rude.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        await rude.close()

    run(players())
    assert pub.wait(30) == 0
    # ffmpeg closes right after deleteStream: with our answer still unread in its socket, its
    # close is a reset, so either "client left," or "client left (connection reset)," is right
    s.wait_log("closed (publisher, after unpublishing), client left")
    s.wait_log("closed (player), client left (connection reset),")
    s.wait_log("closed (player), client left,")
    time.sleep(0.3)
    log = s.log_text()
    assert "Connection reset by peer" not in log
    assert "error:" not in log and "[Error]" not in log
    assert "no stream" not in log
    assert not re.search(r"\[Warn\].*closed \(", log)
