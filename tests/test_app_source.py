"""LiveSource and Consumer without sockets: GOP cache, merged writes, slow players."""

from __future__ import annotations

import asyncio

from srv.app.packet import AUDIO, DATA, VIDEO, Packet
from srv.app.source import LiveSource
from srv.conf.model import PlayConfig, VhostConfig
from srv.rtmp import amf0
from srv.rtmp.chunk import encode_message

AVC_SH = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
AAC_SH = b"\xaf\x00\x12\x10"
META = amf0.encode("onMetaData", amf0.EcmaArray({"width": 320.0}))


def key(n: int) -> bytes:
    return b"\x17\x01\x00\x00\x00" + bytes([n % 256]) * 50


def inter(n: int) -> bytes:
    return b"\x27\x01\x00\x00\x00" + bytes([n % 256]) * 20


class FakeSink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.writes.extend(data)

    def on_unpublish(self) -> None:
        self.events.append("unpublish")

    def on_publish(self) -> None:
        self.events.append("publish")

    def close_slow(self, reason: str) -> None:
        self.events.append("slow:" + reason)

    def data(self) -> bytes:
        return b"".join(self.writes)


def source(**play: object) -> LiveSource:
    loop = asyncio.new_event_loop()
    return LiveSource("v/live/s", VhostConfig(name="v", play=PlayConfig(mw_latency=0, **play)), loop)  # type: ignore[arg-type]


def feed_gop(src: LiveSource, start_ts: int, frames: int = 5) -> None:
    src.on_message(VIDEO, start_ts, key(start_ts))
    for i in range(1, frames):
        src.on_message(VIDEO, start_ts + 40 * i, inter(start_ts + i))
        src.on_message(AUDIO, start_ts + 40 * i, b"\xaf\x01" + bytes(10))


def run_loop(src: LiveSource) -> None:
    src.loop.run_until_complete(asyncio.sleep(0))


FLV = 0


def test_new_player_gets_metadata_headers_then_gop_from_the_keyframe() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    src.on_message(DATA, 0, META)
    src.on_message(VIDEO, 0, AVC_SH)
    src.on_message(AUDIO, 0, AAC_SH)
    feed_gop(src, 0)
    feed_gop(src, 200)
    sink = FakeSink()
    c = src.add_consumer(sink, FLV)
    data = sink.data()
    # metadata, then both sequence headers, then the second GOP's keyframe first
    assert data.startswith(src.meta.flv() + src.video_sh.flv() + src.audio_sh.flv())  # type: ignore[union-attr]
    rest = data[len(src.meta.flv() + src.video_sh.flv() + src.audio_sh.flv()):]  # type: ignore[union-attr]
    assert rest.startswith(src.ring[src.gop_start - src.base].flv())  # type: ignore[operator]
    assert src.ring[src.gop_start - src.base].timestamp == 200  # type: ignore[operator]
    assert c.pos == src.end


def test_caught_up_players_share_one_bytes_object_per_flush() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    src.on_message(VIDEO, 0, AVC_SH)
    feed_gop(src, 0)
    a, b = FakeSink(), FakeSink()
    src.add_consumer(a, 4096)
    src.add_consumer(b, 4096)
    a.writes.clear()
    b.writes.clear()
    feed_gop(src, 200)
    run_loop(src)
    assert len(a.writes) == 1 and a.writes[0] is b.writes[0]


def test_gop_cache_off_starts_players_at_live_edge() -> None:
    src = source(gop_cache=False)
    src.on_publish(object(), origin=True)
    src.on_message(VIDEO, 0, AVC_SH)
    feed_gop(src, 0)
    sink = FakeSink()
    src.add_consumer(sink, FLV)
    assert sink.data() == src.video_sh.flv()  # type: ignore[union-attr]


def test_paused_player_far_behind_skips_whole_gops_keeping_headers() -> None:
    src = source(queue_length=1.0)
    src.on_publish(object(), origin=True)
    src.on_message(VIDEO, 0, AVC_SH)
    feed_gop(src, 0)
    sink = FakeSink()
    c = src.add_consumer(sink, FLV)
    c.pause()
    for t in range(200, 3000, 200):
        feed_gop(src, t)
        run_loop(src)
    c.resume()  # within the stall limit: it catches up, from a keyframe after the headers
    data = sink.data()
    sh = src.video_sh.flv()  # type: ignore[union-attr]
    assert c.dropped > 0 and c.pos == src.end
    assert data.count(sh) >= 2  # once on joining, again before the GOP it skipped to
    after_skip = data[data.rindex(sh) + len(sh):]
    assert after_skip[0] == VIDEO and after_skip[11:13] == b"\x17\x01"  # an FLV tag of a keyframe
    assert data.endswith(src.ring[-1].flv())
    assert not sink.events


def test_player_stalled_longer_than_queue_length_is_disconnected() -> None:
    src = source(queue_length=1.0)
    src.on_publish(object(), origin=True)
    feed_gop(src, 0)
    sink = FakeSink()
    c = src.add_consumer(sink, FLV)
    c.pause()
    c.paused_since -= 5
    feed_gop(src, 200)
    run_loop(src)
    assert any(e.startswith("slow:") for e in sink.events)


def test_unpublish_notifies_players_and_republish_continues_timestamps() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    feed_gop(src, 1000)
    sink = FakeSink()
    src.add_consumer(sink, FLV)
    src.on_unpublish()
    assert sink.events == ["unpublish"]
    assert src.ring == [] and src.video_sh is None
    src.on_publish(object(), origin=True)
    pkt = src.on_message(VIDEO, 0, key(0))
    assert pkt.timestamp > 1000  # players that stayed never see time go backwards


def test_republish_keeps_each_track_monotonic_whichever_track_ended_or_starts_first() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    src.on_message(AUDIO, 1057, b"\xaf\x01" + bytes(10))  # audio runs ahead of video...
    src.on_message(VIDEO, 1000, key(1))  # ...and the last message is an older video frame
    src.on_unpublish()
    src.on_publish(object(), origin=True)
    # the new encoder's first message is video at 40, its first audio at 0
    v = src.on_message(VIDEO, 40, key(2)).timestamp
    a = src.on_message(AUDIO, 0, b"\xaf\x01" + bytes(10)).timestamp
    v2 = src.on_message(VIDEO, 80, inter(3)).timestamp
    assert v > 1000 and a > 1057  # neither track steps back
    assert v2 > v and v2 - a == 80  # the video got a small gap; audio/video stay in sync after it


def test_ring_is_trimmed_to_the_gop_cache_without_players() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    for t in range(0, 20000, 200):
        feed_gop(src, t, frames=25)
    assert len(src.ring) < 200
    assert src.ring[0].timestamp >= 19000 - 200 * 0 - 1000


def test_audio_only_stream_is_cached_and_bounded() -> None:
    src = source(gop_cache_max_frames=50)
    src.on_publish(object(), origin=True)
    src.on_message(AUDIO, 0, AAC_SH)
    for i in range(120):
        src.on_message(AUDIO, i * 23, b"\xaf\x01" + bytes(10))
    sink = FakeSink()
    src.add_consumer(sink, FLV)
    assert sink.data().startswith(src.audio_sh.flv())  # type: ignore[union-attr]
    assert len(src.ring) <= 120


def test_stream_rates_are_measured_over_the_last_thirty_seconds() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    sink = FakeSink()
    src.add_consumer(sink, FLV)
    assert src.kbps() == (0, 0)
    t = 1000.0
    for second in range(60):
        # 125 000 bytes/s in (1000 kbit/s) for the first 30 s, then 250 000 bytes/s
        per_second = 125_000 if second < 30 else 250_000
        for _ in range(10):
            src.on_message(VIDEO, second * 1000, inter(second) + bytes(per_second // 10 - 26))
        run_loop(src)
        src.sample_rates(t + second)
    kbps_in, kbps_out = src.kbps()
    assert 1950 <= kbps_in <= 2050  # only the last 30 s count
    assert kbps_out > 1900  # the player got it all (FLV framing adds a little)
    assert len(src.rate_samples) <= 31


def test_a_pull_by_another_worker_is_not_counted_as_sent_to_players() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    src.add_consumer(FakeSink(), FLV, internal=True)
    feed_gop(src, 0)
    run_loop(src)
    assert src.bytes_out == 0


def test_gop_cache_is_bounded_in_bytes_dropping_the_whole_gop() -> None:
    """A publisher sending 1 MiB frames once pinned 600 MiB: the GOP cache is bounded in bytes."""
    mib = 2**20
    src = source(gop_cache_max_size=8 * mib)
    src.on_publish(object(), origin=True)
    src.on_message(VIDEO, 0, AVC_SH)
    src.on_message(VIDEO, 0, b"\x17\x01\x00\x00\x00" + bytes(mib))
    for i in range(1, 60):
        src.on_message(VIDEO, i * 40, b"\x27\x01\x00\x00\x00" + bytes(mib))
        assert sum(len(p.payload) for p in src.ring) <= 8 * mib + mib
    assert src.gop_start is None  # the GOP went over the bound: none is cached
    sink = FakeSink()
    src.remove_consumer(src.add_consumer(sink, FLV))
    assert sink.data() == src.video_sh.flv()  # type: ignore[union-attr]
    # the next keyframe starts a new GOP that fits: cached again, from that keyframe
    feed_gop(src, 4040)
    late = FakeSink()
    src.add_consumer(late, FLV)
    assert late.data()[len(src.video_sh.flv()):].startswith(src.ring[src.gop_start - src.base].flv())  # type: ignore[union-attr, operator]
    assert src.ring[src.gop_start - src.base].timestamp == 4040  # type: ignore[operator]


def test_a_packet_is_chunked_once_per_chunk_size() -> None:
    pkt = Packet(VIDEO, 40, key(1) * 100)
    first = {size: pkt.rtmp(size) for size in (4096, 128, 60000)}
    for size in (128, 60000, 4096, 128):
        assert pkt.rtmp(size) is first[size]
    assert pkt.encoded(FLV) is pkt.encoded(FLV)
    assert first[128] == encode_message(VIDEO, 1, 40, pkt.payload, 128, 6)


def test_frame_rate_is_measured_over_the_last_thirty_seconds_and_the_gop_between_keyframes() -> None:
    src = source()
    src.on_publish(object(), origin=True)
    assert src.fps() == 0.0 and src.gop == (0, 0)
    t, ts = 1000.0, 0
    for second in range(60):
        per_second = 10 if second < 30 else 25  # a keyframe each second: GOPs of 10, then 25 frames
        for i in range(per_second):
            src.on_message(VIDEO, ts, key(ts) if i == 0 else inter(ts))
            ts += 1000 // per_second
        src.sample_rates(t + second)
    assert src.fps() == 25.0  # only the last 30 s count
    assert src.gop == (25, 1000)  # frames and ms from the previous keyframe to the last one
