"""A slow event loop is told from a stuck one (srv/net/pulse.py, issue 18).

The worker heart-beats the master from a timer, which runs only between turns of the loop. On a
starved core one turn (every ready socket's callback) can outlast `worker_timeout` although each
callback returns; the callbacks such a turn is made of now send heartbeats from inside it. A loop
held inside one call sends none, so the master still kills a stuck worker
(tests/test_process_workers.py::test_worker_that_stops_heartbeating_is_killed_and_replaced).

The long turns here are made with `time.sleep` inside callbacks (a starved core: wall time passes
while each callback runs); what is asserted is which heartbeats went out and what was logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from test_rtmp_robustness import FakeTransport

from srv.app.hub import StreamHub
from srv.conf import load
from srv.net import pulse
from srv.net.rtmp_server import RtmpServerProtocol
from srv.process import messages as m
from srv.rtmp.client import ClientSession
from srv.worker import Worker
from srv.worker_context import WorkerContext


@pytest.fixture(autouse=True)
def unbound() -> Any:
    yield
    pulse.bind(None)


class FakeChannel:
    """The worker's end of the master channel: what was sent, and when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, m.Message]] = []

    def send(self, msg: m.Message) -> None:
        self.sent.append((time.monotonic(), msg))

    def beats(self) -> list[float]:
        return [t for t, msg in self.sent if isinstance(msg, m.Heartbeat)]


def test_beats_from_inside_a_turn_go_at_most_once_per_interval_and_only_when_due(monkeypatch: Any) -> None:
    now = [1000.0]
    monkeypatch.setattr(pulse.time, "monotonic", lambda: now[0])
    sent: list[float] = []
    pulse.beat()  # not bound (outside a worker): nothing, no error
    pulse.bind(lambda: sent.append(now[0]))
    for _ in range(1100):  # 11 s of callbacks, 10 ms apart, in one turn: no timer ran
        now[0] += 0.01
        pulse.beat()
    assert len(sent) == 5  # every INTERVAL (2 s), not per callback
    assert all(b - a >= pulse.INTERVAL - 1e-9 for a, b in zip(sent, sent[1:], strict=False))
    assert pulse.timer_beat() == 5  # the timer's heartbeat hears how many went from inside
    sent.clear()
    for _ in range(10):  # a loop that turns: the timer beats every second, callbacks in between
        for _ in range(100):
            now[0] += 0.01
            pulse.beat()
        assert pulse.timer_beat() == 0
    assert sent == []  # the timer's heartbeats suffice: none from inside


def _worker(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> tuple[Worker, FakeChannel, RtmpServerProtocol]:
    conf = tmp_path / "x.conf"
    conf.write_text("listen 1935;\nvhost __defaultVhost__ { }\n")
    config = load(str(conf), {})
    worker = Worker(1, config, {}, None, 0)  # type: ignore[arg-type]
    worker.hub = StreamHub(config, 1, registry=None, loop=loop)  # type: ignore[arg-type]
    worker.ctx = WorkerContext(1, config, worker.hub, loop, None)  # type: ignore[arg-type]
    channel = FakeChannel()
    worker.channel = channel  # type: ignore[assignment]
    conn = RtmpServerProtocol(worker.ctx)
    conn.connection_made(FakeTransport())
    return worker, channel, conn


def _held_turn(tmp_path: Path, callbacks: int, caplog: Any) -> tuple[float, str]:
    """A worker's heartbeat running, then one turn of the loop `callbacks` callbacks long (all
    scheduled at once, so they run in the same turn; each an RTMP connection's read), 3 s in
    all; returns the longest the master went without a heartbeat, and the held-loop log line."""
    loop = asyncio.new_event_loop()
    worker, channel, conn = _worker(tmp_path, loop)
    client = ClientSession("live", "rtmp://127.0.0.1/live")
    client.start()
    hello = client.data_to_send()

    def one(i: int) -> None:
        time.sleep(3.0 / callbacks)  # a starved core: each callback takes long
        conn.data_received(hello[i:i + 1])

    async def go() -> None:
        beat = loop.create_task(worker.heartbeat())
        await asyncio.sleep(1.2)  # the timer's heartbeats go out as usual first
        for i in range(callbacks):
            loop.call_soon(one, i)
        await asyncio.sleep(0)
        await asyncio.sleep(1.5)  # the timer's next heartbeat, after the turn
        beat.cancel()

    try:
        with caplog.at_level(logging.WARNING, logger="srv.worker"):
            loop.run_until_complete(go())
    finally:
        loop.close()
    beats = channel.beats()
    held = [r.getMessage() for r in caplog.records if "event loop held for" in r.getMessage()]
    assert len(held) == 1 and len(beats) >= 3, (held, beats)
    return max(b - a for a, b in zip(beats, beats[1:], strict=False)), held[0]


def test_a_slow_turn_of_many_callbacks_heart_beats_from_inside_it(tmp_path: Path, caplog: Any) -> None:
    gap, line = _held_turn(tmp_path, 300, caplog)
    # the 3 s turn beat the master from inside: it never went much more than INTERVAL without one
    assert gap <= pulse.INTERVAL + 0.5, gap
    assert "heartbeats sent from inside the long turn: slow, not stuck" in line


def test_a_turn_held_in_one_call_sends_no_heartbeat_while_held(tmp_path: Path, caplog: Any) -> None:
    gap, _ = _held_turn(tmp_path, 1, caplog)
    assert gap >= 3.0  # nothing while the call held the loop: the master sees the silence
