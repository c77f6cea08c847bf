"""When LiveSource flushes its players (issue 18): `min_latency on` sends one batch per video
frame, and the `mw_latency` window's flushes are spread over phase buckets.

Everything here is judged by message order and by what is queued or scheduled, never by how
fast anything ran.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_app_source import AAC_SH, AVC_SH, FLV, META, FakeSink, inter, key, run_loop

from srv.app import source as source_module
from srv.app.packet import AUDIO, DATA, VIDEO
from srv.app.source import MIN_LATENCY_WAIT, Consumer, LiveSource
from srv.conf import load
from srv.conf.model import PlayConfig, VhostConfig


def source(min_latency: bool = False, **play: object) -> LiveSource:
    loop = asyncio.new_event_loop()
    vhost = VhostConfig(name="v", min_latency=min_latency, play=PlayConfig(**play))  # type: ignore[arg-type]
    return LiveSource("v/live/s", vhost, loop)


def started(src: LiveSource) -> None:
    src.on_publish(object(), origin=True)  # type: ignore[arg-type]
    src.on_message(DATA, 0, META)
    src.on_message(VIDEO, 0, AVC_SH)
    src.on_message(AUDIO, 0, AAC_SH)
    src.on_message(VIDEO, 0, key(0))


def audio(n: int) -> bytes:
    return b"\xaf\x01" + bytes([n % 256]) * 12


def test_min_latency_sends_each_video_frame_at_once_with_the_audio_that_waited_for_it() -> None:
    src = source(min_latency=True)  # mw_latency stays at its default, 350
    started(src)
    sink = FakeSink()
    src.add_consumer(sink, FLV)
    run_loop(src)
    sink.writes.clear()
    sent = []
    for i in range(1, 51):
        ts = 40 * i
        a1 = src.on_message(AUDIO, ts - 17, audio(2 * i))
        run_loop(src)
        a2 = src.on_message(AUDIO, ts - 1, audio(2 * i + 1))
        run_loop(src)
        assert len(sink.writes) == i - 1, "audio waits for the next video frame"
        (g,) = src.groups[FLV]
        assert g.timed and g.handle is not None  # ... but not longer than MIN_LATENCY_WAIT
        assert g.handle.when() - src.loop.time() <= MIN_LATENCY_WAIT  # type: ignore[union-attr]
        v = src.on_message(VIDEO, ts, inter(i))
        run_loop(src)
        # the frame went out in this loop iteration, in one write, after the audio queued before it
        assert len(sink.writes) == i
        assert sink.writes[-1] == a1.flv() + a2.flv() + v.flv()
        sent.append(sink.writes[-1])
    assert b"".join(sent) == b"".join(p.flv() for p in src.ring[-150:])


def test_min_latency_audio_only_waits_at_most_min_latency_wait_then_goes_out() -> None:
    src = source(min_latency=True)
    src.on_publish(object(), origin=True)  # type: ignore[arg-type]
    src.on_message(AUDIO, 0, AAC_SH)
    sink = FakeSink()
    src.add_consumer(sink, FLV)
    src.on_message(AUDIO, 0, audio(0))  # nothing was waiting for it: it goes out at once
    run_loop(src)
    assert sink.writes[-1] == src.ring[-1].flv()
    sink.writes.clear()
    pkts = [src.on_message(AUDIO, 23 * i, audio(i)) for i in range(1, 4)]
    (g,) = src.groups[FLV]
    assert g.timed and g.handle is not None
    assert 0 < g.handle.when() - src.loop.time() <= MIN_LATENCY_WAIT  # type: ignore[union-attr]
    assert sink.writes == []
    src.loop.run_until_complete(asyncio.sleep(MIN_LATENCY_WAIT * 2))
    assert sink.writes == [b"".join(p.flv() for p in pkts)]


def test_min_latency_with_mw_latency_0_sends_what_arrived_in_each_loop_iteration() -> None:
    src = source(min_latency=True, mw_latency=0)
    started(src)
    sink = FakeSink()
    src.add_consumer(sink, FLV)
    run_loop(src)
    sink.writes.clear()
    a = src.on_message(AUDIO, 10, audio(1))
    b = src.on_message(AUDIO, 33, audio(2))  # the same read of the publisher: one batch
    run_loop(src)
    assert sink.writes == [a.flv() + b.flv()]
    c = src.on_message(AUDIO, 56, audio(3))
    run_loop(src)
    assert sink.writes[-1] == c.flv() and len(sink.writes) == 2


@pytest.fixture
def spread_at_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new phase opens at 2 players instead of SPREAD_AT (100): many phases, few sinks."""
    monkeypatch.setattr(source_module, "SPREAD_AT", 2)


def test_a_small_audience_shares_one_phase_and_one_batch() -> None:
    src = source(mw_latency=350)
    started(src)
    sinks = [FakeSink() for _ in range(source_module.SPREAD_AT)]
    for s in sinks:
        src.add_consumer(s, FLV)
    assert len(src.groups[FLV]) == 1
    src.add_consumer(FakeSink(), FLV)  # one more than a phase holds: the second phase opens
    assert [len(g.consumers) for g in src.groups[FLV]] == [source_module.SPREAD_AT, 1]
    for s in sinks:
        s.writes.clear()
    src.on_message(VIDEO, 40, inter(1))
    src.loop.run_until_complete(asyncio.sleep(0.4))
    assert len(sinks[0].writes) == 1 and all(s.writes[0] is sinks[0].writes[0] for s in sinks)


def test_merge_window_flushes_are_spread_over_phases_each_player_once_per_window(spread_at_2: None) -> None:
    src = source(mw_latency=350)
    started(src)
    assert src.phases == 14
    sinks = [FakeSink() for _ in range(28)]
    cs = [src.add_consumer(s, FLV) for s in sinks]
    run_loop(src)
    assert [len(g.consumers) for g in src.groups[FLV]] == [2] * 14
    for s in sinks:
        s.writes.clear()
    now = src.loop.time()
    pkt = src.on_message(VIDEO, 40, inter(1))
    dues = sorted(g.handle.when() for g in src.groups[FLV])  # type: ignore[union-attr]
    # every bucket flushes within one window, each on its own tick, 25 ms apart
    assert all(now < d <= now + 0.35 + 1e-6 for d in dues)
    gaps = [b - a for a, b in zip(dues, dues[1:], strict=False)]
    assert len(set(round(d, 6) for d in dues)) == 14 and max(gaps) < 0.025 + 1e-6
    src.loop.run_until_complete(asyncio.sleep(0.4))
    assert all(s.writes == [pkt.flv()] for s in sinks)  # each player exactly once, same bytes
    assert all(c.pos == src.end for c in cs)
    assert src.bytes_out >= 28 * len(pkt.flv())


def in_two_phases(src: LiveSource, a: FakeSink, b: FakeSink) -> tuple[Consumer, Consumer]:
    """Consumers of a and b in two different phases (with SPREAD_AT 2: a filler fills the first)."""
    ca = src.add_consumer(a, FLV)
    src.add_consumer(FakeSink(), FLV)
    cb = src.add_consumer(b, FLV)
    assert ca.group is not cb.group
    return ca, cb


def test_a_paused_player_in_its_phase_bucket_is_still_dropped_by_the_queue_rules(spread_at_2: None) -> None:
    src = source(mw_latency=350, queue_length=1.0)
    started(src)
    slow, ok = FakeSink(), FakeSink()
    c, _ = in_two_phases(src, slow, ok)
    c.pause()
    c.paused_since -= 5  # paused longer than queue_length (1 s) ago
    src.on_message(VIDEO, 40, inter(1))
    src.loop.run_until_complete(asyncio.sleep(0.4))
    assert any(e.startswith("slow:player stalled") for e in slow.events)
    assert not ok.events and ok.writes[-1].endswith(src.ring[-1].flv())


def test_a_bucket_left_empty_neither_holds_the_ring_nor_replays_old_packets(spread_at_2: None) -> None:
    src = source(mw_latency=50)  # two phases
    started(src)
    _, cb = in_two_phases(src, FakeSink(), FakeSink())
    src.remove_consumer(cb)
    for t in range(1, 400):
        src.on_message(VIDEO, 40 * t, key(t) if t % 50 == 0 else inter(t))
        src.loop.run_until_complete(asyncio.sleep(0.001))
    src.loop.run_until_complete(asyncio.sleep(0.1))
    assert len(src.ring) < 150  # trimmed to the GOP cache (50 frames) plus the trim slack
    late = FakeSink()
    cl = src.add_consumer(late, FLV)
    assert cl.group is cb.group  # the empty bucket is reused, from the live edge
    data = late.data()
    assert data.count(key(350)) == 1 and key(300) not in data  # metadata, headers, the last GOP


def test_the_window_and_phases_follow_min_latency_and_mw_latency() -> None:
    assert (source().mw_latency, source().phases) == (0.35, 14)
    assert (source(mw_latency=100).mw_latency, source(mw_latency=100).phases) == (0.1, 4)
    assert source(mw_latency=10).phases == 1 and source(mw_latency=0).phases == 1
    low = source(min_latency=True)
    assert (low.mw_latency, low.phases) == (MIN_LATENCY_WAIT, 1)
    assert source(min_latency=True, mw_latency=20).mw_latency == 0.02
    assert source(min_latency=True, mw_latency=0).mw_latency == 0


def test_min_latency_and_mw_latency_from_a_config_file_set_the_sources_window(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("""
        listen 1935;
        vhost __defaultVhost__ { min_latency on; }
        vhost low.mw { min_latency on; play { mw_latency 20; } }
        vhost spread { play { mw_latency 100; } }
        vhost vod.nomw { play { mw_latency 0; } }
    """)
    config = load(str(path), {})
    loop = asyncio.new_event_loop()

    def src(name: str) -> LiveSource:
        vhost = config.vhost(name)
        assert vhost is not None
        return LiveSource(f"{name}/live/s", vhost, loop)

    assert (src("__defaultVhost__").mw_latency, src("__defaultVhost__").phases) == (MIN_LATENCY_WAIT, 1)
    assert src("low.mw").mw_latency == 0.02
    assert (src("spread").mw_latency, src("spread").phases) == (0.1, 4)
    assert (src("vod.nomw").mw_latency, src("vod.nomw").phases) == (0, 1)
    loop.close()


def test_a_prompt_consumer_gets_each_message_at_once_in_its_own_bucket_players_keep_merging() -> None:
    src = source(mw_latency=350)
    started(src)
    player, writer = FakeSink(), FakeSink()
    cp = src.add_consumer(player, FLV)
    cw = src.add_consumer(writer, FLV, internal=True, prompt=True)  # the LL-HLS writer
    assert cw.group is not cp.group and cw.group is not None and cw.group.prompt
    run_loop(src)
    player.writes.clear()
    writer.writes.clear()
    a = src.on_message(AUDIO, 10, audio(1))
    run_loop(src)
    assert writer.writes == [a.flv()] and player.writes == []  # the player waits for its tick
    assert cp.group is not None and cp.group.timed
    b = src.on_message(AUDIO, 33, audio(2))
    run_loop(src)
    assert writer.writes == [a.flv(), b.flv()] and player.writes == []
    src.loop.run_until_complete(asyncio.sleep(0.4))
    assert player.writes == [a.flv() + b.flv()]
    other = src.add_consumer(FakeSink(), FLV, internal=True, prompt=True)
    assert other.group is cw.group  # one prompt bucket per encoding


class PushingBackSink(FakeSink):
    """A transport with a buffer: it pauses its consumer once `limit` bytes wait in it, as
    uvloop calls `pause_writing` inside the write that passes its high-water mark."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.buffered = 0
        self.consumer: Consumer | None = None

    def writelines(self, data: list[bytes]) -> None:
        super().writelines(data)
        self.buffered += sum(map(len, data))
        if self.buffered > self.limit and self.consumer is not None:
            self.consumer.pause()

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def drain(self) -> None:
        self.buffered = 0
        assert self.consumer is not None
        self.consumer.resume()


def test_a_resumed_player_gets_what_it_missed_a_chunk_at_a_time_until_its_transport_pushes_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "CATCH_UP_CHUNK", 300)
    src = source(mw_latency=0)
    started(src)
    sink = PushingBackSink(limit=500)
    c = src.add_consumer(sink, FLV)
    sink.consumer = c
    run_loop(src)
    c.pause()
    missed = [src.on_message(VIDEO, 40 * i, inter(i)) for i in range(1, 201)]  # ~7 KB while paused
    run_loop(src)
    sink.writes.clear()
    sink.drain()
    # one resume writes until the transport pushes back, not the whole backlog into its buffer
    first = sum(map(len, sink.writes))
    assert 500 < first <= 500 + 300 + len(missed[0].flv()) and c.paused and c.pos < src.end
    resumes = 1
    while c.pos < src.end:
        sink.drain()
        resumes += 1
    assert resumes > 5
    # nothing lost, nothing twice, in order
    assert sink.data() == b"".join(p.flv() for p in missed)
    assert not sink.events and c.dropped == 0


def test_a_player_that_keeps_up_gets_its_whole_backlog_in_one_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "CATCH_UP_CHUNK", 300)
    src = source(mw_latency=0)
    started(src)
    pkts = [src.on_message(VIDEO, 40 * i, inter(i)) for i in range(1, 41)]
    sink = FakeSink()  # never pushes back: joining, it gets the GOP from its keyframe, in pieces
    c = src.add_consumer(sink, FLV)
    assert c.pos == src.end and len(sink.writes) > 3
    assert sink.data().endswith(b"".join(p.flv() for p in pkts))


class LoggingSink(FakeSink):
    """A FakeSink that also appends (name, bytes) to a log shared by several sinks: the order in
    which the loop wrote to them."""

    def __init__(self, name: str, log: list[tuple[str, bytes]]) -> None:
        super().__init__()
        self.name = name
        self.log = log

    def write(self, data: bytes) -> None:
        super().write(data)
        self.log.append((self.name, data))

    def writelines(self, data: list[bytes]) -> None:
        super().writelines(data)
        self.log.extend((self.name, d) for d in data)


@pytest.fixture
def slice_of_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush writes 3 consumers per callback instead of FLUSH_SLICE."""
    monkeypatch.setattr(source_module, "FLUSH_SLICE", 3)


def test_a_big_buckets_flush_lets_another_streams_frame_out_between_its_slices(slice_of_3: None) -> None:
    big = source(min_latency=True)
    small = LiveSource("v/live/small", big.vhost, big.loop)
    started(big)
    started(small)
    log: list[tuple[str, bytes]] = []
    for i in range(10):
        big.add_consumer(LoggingSink(f"big{i}", log), FLV)
    small.add_consumer(LoggingSink("small", log), FLV)
    run_loop(big)
    log.clear()
    # both frames arrive in the same turn of the loop (the big stream's first)
    fb = big.on_message(VIDEO, 40, inter(1))
    fs = small.on_message(VIDEO, 40, inter(2))
    for _ in range(6):
        run_loop(big)
    order = [name for name, _ in log]
    assert sorted(order) == sorted([f"big{i}" for i in range(10)] + ["small"])  # one write each
    # the small stream's frame went out after the big one's first slice, not after all 10 players
    assert order.index("small") == 3, order
    assert all(data == fb.flv() for name, data in log if name != "small")
    assert dict(log)["small"] == fs.flv()


def test_messages_arriving_during_a_sliced_flush_reach_every_player_once_in_order(slice_of_3: None) -> None:
    src = source(min_latency=True)
    started(src)
    sinks = [FakeSink() for _ in range(10)]
    cs = [src.add_consumer(s, FLV) for s in sinks]
    src.loop.run_until_complete(asyncio.sleep(0.01))
    for s in sinks:
        s.writes.clear()
    sent = []
    late: FakeSink | None = None
    for i in range(1, 40):
        # audio and video come while the previous frame's flush is still going through its slices
        sent.append(src.on_message(AUDIO, 40 * i - 20, audio(i)))
        sent.append(src.on_message(VIDEO, 40 * i, inter(i)))
        run_loop(src)
        if i == 10:
            src.remove_consumer(cs[9])  # leaves mid-flush
            gone = len(sinks[9].writes)
        if i == 20:
            late = FakeSink()  # joins mid-flush
            cl = src.add_consumer(late, FLV)
            late_from = cl.pos
    src.loop.run_until_complete(asyncio.sleep(0.2))
    everything = b"".join(p.flv() for p in sent)
    for s in sinks[:9]:
        assert s.data() == everything  # nothing lost, nothing twice, in order
        assert len(s.writes) < 40  # merged: frames that came during a flush share the next batch
    assert len(sinks[9].writes) == gone
    assert late is not None and late.data().endswith(b"".join(p.flv() for p in src.ring[late_from - src.base:]))
    assert all(c.pos == src.end for c in cs[:9])


def test_unpublish_during_a_sliced_flush_gives_every_player_the_whole_batch_first(slice_of_3: None) -> None:
    src = source(mw_latency=0)
    started(src)
    log: list[tuple[str, bytes]] = []
    sinks = [LoggingSink(f"p{i}", log) for i in range(30)]
    for s in sinks:
        src.add_consumer(s, FLV)
    run_loop(src)
    for s in sinks:
        s.writes.clear()
    pkt = src.on_message(VIDEO, 40, inter(1))
    run_loop(src)
    assert 0 < sum(1 for s in sinks if s.writes) < 30  # some slices so far, not all
    src.on_unpublish()
    assert all(s.writes == [pkt.flv()] and s.events == ["unpublish"] for s in sinks)
    src.loop.run_until_complete(asyncio.sleep(0.05))
    assert all(s.writes == [pkt.flv()] for s in sinks)  # and nothing again afterwards
