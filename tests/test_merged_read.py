"""SRS's merged read (``publish { mr on; mr_latency; }``): a publisher's reads pause after a small one.

The directive in both spellings SRS reads (SRS 3+ ``publish { mr; mr_latency; }``, SRS 2's
vhost-level ``mr { enabled; latency; }``), what `MergedRead` does with a transport, and the real
server: a message sent while the publisher's reads are paused reaches a player only once the
pause is over; an ffmpeg publisher with it on is recorded whole and decodes cleanly.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import Clients
from rtmp_tools import RtmpTestClient, run
from test_rtmp_live import records_five_clean_seconds

from srv.conf.loader import load
from srv.net.flow import MR_SMALL_BYTES, MergedRead
from srv.rtmp.messages import Message

ROOT = Path(__file__).resolve().parents[1]


def test_mr_is_read_in_publish_and_in_the_srs2_vhost_block(tmp_path: Path) -> None:
    conf = tmp_path / "mr.conf"
    conf.write_text("listen 1935;\n"
                    "vhost __defaultVhost__ { }\n"
                    "vhost a { publish { mr on; mr_latency 100; } }\n"
                    "vhost b { mr { enabled on; latency 200; } }\n")
    config = load(str(conf), {})
    assert (config.vhosts["__defaultVhost__"].publish.mr, config.vhosts["__defaultVhost__"].publish.mr_latency) \
        == (False, 350)  # SRS's defaults
    assert (config.vhosts["a"].publish.mr, config.vhosts["a"].publish.mr_latency) == (True, 100)
    assert (config.vhosts["b"].publish.mr, config.vhosts["b"].publish.mr_latency) == (True, 200)
    assert any('"mr { }" in a vhost is SRS 2 syntax; read as publish { mr on; mr_latency 200; }' in w
               for w in config.warnings)
    assert not any("not supported" in w or "not implemented" in w for w in config.warnings)
    test = subprocess.run([str(ROOT / "objs" / "srs"), "-t", "-c", str(conf)], capture_output=True, text=True,
                          timeout=60)
    assert test.returncode == 0, test.stderr
    assert "test is successful" in test.stderr + test.stdout


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closing = False

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> Any:
        return None


def test_a_small_read_pauses_reading_for_mr_latency_and_a_large_one_does_not() -> None:
    async def go() -> list[tuple[float, list[str]]]:
        loop = asyncio.get_running_loop()
        t = FakeTransport()
        mr = MergedRead(t, loop)
        seen = []
        mr.after_read(MR_SMALL_BYTES, 50)  # what gathered during a pause: read on at once
        seen.append((0.0, list(t.calls)))
        t0 = time.monotonic()
        mr.after_read(300, 50)
        mr.after_read(200, 50)  # already paused: one timer
        seen.append((0.0, list(t.calls)))
        while t.calls[-1] != "resume":
            await asyncio.sleep(0.005)
        seen.append((time.monotonic() - t0, list(t.calls)))
        mr.after_read(10, 5000)
        mr.cancel()  # it stops publishing or closes: read at once again, no timer left
        seen.append((0.0, list(t.calls)))
        t.closing = True
        mr.after_read(10, 10)
        await asyncio.sleep(0.05)  # a closed transport is not resumed
        seen.append((0.0, list(t.calls)))
        return seen

    seen = run(go())
    assert seen[0][1] == []
    assert seen[1][1] == ["pause"]
    assert seen[2][0] >= 0.045 and seen[2][1] == ["pause", "resume"]
    assert seen[3][1] == ["pause", "resume", "pause", "resume"]
    assert seen[4][1] == ["pause", "resume", "pause", "resume", "pause"]


def audio(ts: int, marker: int) -> Message:
    return Message(8, 1, ts, bytes([0xAF, 0x01, marker]) + b"a" * 200)


async def arrival_after_a_pause(port: int) -> tuple[float, float]:
    """Publish message A, then B 0.1 s later; return when the player got A and B, counted from
    when A was sent."""
    pub = RtmpTestClient(port)
    await pub.open()
    assert (await pub.publish("s")).code == "NetStream.Publish.Start"
    player = RtmpTestClient(port)
    await player.open()
    await player.play("s")
    await asyncio.sleep(1.5)  # no read is paused now
    t0 = time.monotonic()
    pub.send(audio(0, 1))
    await asyncio.sleep(0.1)
    pub.send(audio(23, 2))
    got: dict[int, float] = {}
    deadline = time.monotonic() + 15
    while len(got) < 2 and time.monotonic() < deadline:
        for m in player.media:
            if m.type_id == 8 and len(m.payload) == 203 and m.payload[2] not in got:
                got[m.payload[2]] = time.monotonic() - t0
        await asyncio.sleep(0.01)
    await pub.close()
    await player.close()
    return got[1], got[2]


def test_a_message_sent_during_the_pause_reaches_players_when_it_ends(srs_server) -> None:
    # mw_latency 0: players get each message at once, so what is measured is the read pause
    s = srs_server("vhost __defaultVhost__ { play { mw_latency 0; } publish { mr on; mr_latency 1000; } }\n",
                   workers=1)
    first, second = run(arrival_after_a_pause(s.port))
    # B was written 0.1 s after A, but the read of A paused the publisher's reads for 1 s (without
    # mr it arrives ~0.1 s after A)
    assert first < second and second >= 1.0


def test_ffmpeg_publishing_with_mr_on_is_recorded_whole(srs_server, clients: Clients, tmp_path: Path) -> None:
    s = srs_server("vhost __defaultVhost__ { publish { mr on; mr_latency 350; } }\n", workers=2)
    records_five_clean_seconds(s, clients, tmp_path)
