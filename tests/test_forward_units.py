"""Forward pieces without processes: destination URLs, loop checks, and the Forwarder itself as a
consumer of a real LiveSource, publishing to an in-process RTMP slave (GOP drops, stalls, backoff)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from types import SimpleNamespace
from typing import Any

from srv.app.forward_target import MAX_HOPS, loop_refusal, resolve, upstream_via
from srv.app.packet import AUDIO, DATA, VIDEO, Packet
from srv.app.source import LiveSource
from srv.conf.model import ForwardConfig, VhostConfig
from srv.net import forward
from srv.net.forward import Forwarder, ForwardState
from srv.rtmp import events as ev
from srv.rtmp.session import ServerSession

KEY = bytes([0x17, 0x01, 0, 0, 0]) + b"k"  # AVC keyframe NALU
INTER = bytes([0x27, 0x01, 0, 0, 0]) + b"p"
VSH = bytes([0x17, 0x00, 0, 0, 0]) + b"sh"
ASH = bytes([0xAF, 0x00, 0x12, 0x10])
AAC = bytes([0xAF, 0x01]) + b"a"


def test_host_port_destination_keeps_app_stream_and_query_as_srs_does():
    t = resolve("127.0.0.1:1936", "__defaultVhost__", "live", "s", {"key": "abc"}, ["m1"])
    assert (t.host, t.port, t.app) == ("127.0.0.1", 1936, "live")
    assert t.tc_url == "rtmp://127.0.0.1:1936/live"
    assert t.stream == "s?key=abc&srv_via=m1"


def test_non_default_vhost_goes_in_tcurl_host_and_query():
    t = resolve("10.0.0.2", "v.example.com", "live", "s", {}, ["m1"])
    assert t.port == 1935 and t.host == "10.0.0.2"
    assert t.tc_url == "rtmp://v.example.com:1935/live"
    assert t.stream == "s?vhost=v.example.com&srv_via=m1"


def test_ipv6_destination():
    t = resolve("[::1]:1936", "__defaultVhost__", "live", "s", {}, ["m"])
    assert (t.host, t.port) == ("::1", 1936) and t.tc_url == "rtmp://[::1]:1936/live"


def test_rtmp_url_destination_expands_variables():
    t = resolve("rtmp://cdn.example.com/push/[vhost]_[app]_[stream]?k=1&[param]", "__defaultVhost__",
                "live", "cam", {"token": "t", "srv_via": "up"}, ["up", "me"])
    assert (t.host, t.port, t.app) == ("cdn.example.com", 1935, "push")
    assert t.stream == "__defaultVhost___live_cam?k=1&token=t&srv_via=up%2Cme"
    assert t.url.startswith("rtmp://cdn.example.com:1935/push/__defaultVhost___live_cam?")


def test_rtmp_url_without_stream_uses_the_published_name():
    t = resolve("rtmp://h:1940/app2", "__defaultVhost__", "live", "cam", {}, ["me"])
    assert (t.port, t.app, t.stream) == (1940, "app2", "cam?srv_via=me")


def test_loop_refused_when_own_id_is_in_the_chain_or_too_many_hops():
    assert upstream_via({"srv_via": "a,b"}) == ["a", "b"]
    assert loop_refusal("c", {"srv_via": "a,b"}) is None
    assert loop_refusal("c", {}) is None
    why = loop_refusal("a", {"srv_via": "a,b"})
    assert why is not None and why.startswith("forward loop")
    many = ",".join(f"s{i}" for i in range(MAX_HOPS))
    assert (loop_refusal("x", {"srv_via": many}) or "").startswith("forward loop")


# ---- the forwarder as a sink of the source's consumer, against an in-process RTMP slave --------


class Slave(asyncio.Protocol):
    """An RTMP server that takes connect and publish and records every media message it gets."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.session = ServerSession(out_chunk_size=4096)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.rec.connections.append(self)
        self.media: list[tuple[int, int, bytes]] = []
        if self.rec.stuck:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        todo = self.session.receive_data(data)
        while todo:
            e = todo.pop(0)
            if isinstance(e, ev.ConnectRequest):
                todo += self.session.accept_connect(e)
            elif isinstance(e, ev.PublishRequest):
                self.rec.publishes.append(e)
                self.session.accept_publish(e.stream_id, e.stream_name)
                if self.rec.stop_reading_after_publish:
                    self.transport.pause_reading()
            elif isinstance(e, (ev.MediaMessage, ev.MetadataMessage)):
                m = e.message
                self.media.append((m.type_id, m.timestamp, m.payload))
        out = self.session.data_to_send()
        if out:
            self.transport.write(out)


class Recorder:
    def __init__(self, stop_reading_after_publish: bool = False) -> None:
        self.stop_reading_after_publish = stop_reading_after_publish
        self.stuck = False
        self.connections: list[Slave] = []
        self.publishes: list[ev.PublishRequest] = []

    async def start(self) -> int:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once when not read
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        self.server = await asyncio.get_running_loop().create_server(lambda: Slave(self), sock=sock)
        return int(sock.getsockname()[1])


def kinds(media: list[tuple[int, int, bytes]]) -> list[str]:
    """Each message as m(etadata) v(ideo header) a(udio header) K(eyframe) p(frame) s(ound)."""
    out = []
    for type_id, _, payload in media:
        p = Packet(type_id, 0, payload)
        out.append({DATA: "m", VIDEO: "v" if p.is_header else "K" if p.is_keyframe else "p",
                    AUDIO: "a" if p.is_header else "s"}[type_id])
    return out


def frame(n: int, size: int = 100) -> tuple[int, bytes]:
    """Video n of a 25 fps stream with a keyframe every 10 frames."""
    head = KEY if n % 10 == 0 else INTER
    return VIDEO, head + bytes(size)


async def until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def publishing_source(loop: asyncio.AbstractEventLoop) -> LiveSource:
    src = LiveSource("__defaultVhost__/live/s", VhostConfig(name="__defaultVhost__", min_latency=True), loop)
    src.on_publish(SimpleNamespace(params={"key": "k1"}), origin=True)
    src.on_message(DATA, 0, b"\x02\x00\x0aonMetaData")
    src.on_message(VIDEO, 0, VSH)
    src.on_message(AUDIO, 0, ASH)
    return src


def context(loop: asyncio.AbstractEventLoop) -> Any:
    return SimpleNamespace(loop=loop, server_id="me-1",
                           config=SimpleNamespace(chunk_size=4096, pithy_print_ms=10000))


def test_forwarder_is_a_consumer_of_the_source_sharing_the_players_bytes():
    async def run() -> None:
        loop = asyncio.get_running_loop()
        rec = Recorder()
        port = await rec.start()
        src = publishing_source(loop)
        for n in range(15):  # GOP 1 (frames 0-9), GOP 2 starts at frame 10
            src.on_message(VIDEO, n * 40, frame(n)[1])
        player = SimpleNamespace(write=lambda d: None, writelines=lambda d: None, on_unpublish=lambda: None)
        src.add_consumer(player, 4096)  # type: ignore[arg-type]
        f = Forwarder(context(loop), src, f"127.0.0.1:{port}", ForwardConfig(backoff_initial=100))
        src.forwarders.append(f)  # as the hub does
        await until(lambda: f.state is ForwardState.CONNECTED)
        assert f.consumer is not None and f.consumer.internal and f.consumer in src.consumers()
        assert list(src.groups) == [4096], "the forwarder shares the players' encoding and batches"
        await until(lambda: len(rec.connections[0].media) >= 8)
        for n in range(15, 21):  # live
            src.on_message(VIDEO, n * 40, frame(n)[1])
        await until(lambda: len(rec.connections[0].media) >= 14)
        got = rec.connections[0].media
        # metadata and sequence headers, the GOP cache from its keyframe, then live
        assert "".join(kinds(got)) == "mva" + "".join("K" if n % 10 == 0 else "p" for n in range(10, 21))
        assert [ts for t, ts, p in got if t == VIDEO][1:] == [n * 40 for n in range(10, 21)]
        assert rec.publishes[0].params == {"key": "k1", "srv_via": "me-1"}
        assert f.stats()["messages_sent"] == 11 and f.stats()["queue"] == 0
        src.on_unpublish()
        assert f.state is ForwardState.STOPPED and f.consumer is None and f.stats()["messages_sent"] == 11
        assert [c.sink for c in src.consumers()] == [player], "only the player is left"

    asyncio.run(run())


def test_slow_destination_skips_whole_gops_keeps_headers_and_resumes_on_a_keyframe():
    async def run() -> None:
        loop = asyncio.get_running_loop()
        rec = Recorder(stop_reading_after_publish=True)
        port = await rec.start()
        src = publishing_source(loop)
        f = Forwarder(context(loop), src, f"127.0.0.1:{port}", ForwardConfig(queue_length=1.0))
        await until(lambda: f.state is ForwardState.CONNECTED)
        n = 0
        while f.consumer is not None and not f.consumer.paused:  # until the socket pushes back
            assert n < 20000, "the destination never pushed back"
            src.on_message(VIDEO, n * 40, frame(n, 20_000)[1])
            n += 1
            if n % 10 == 0:
                await asyncio.sleep(0.01)
        for _ in range(100):  # 4 s more media than the destination takes: past queue_length
            src.on_message(VIDEO, n * 40, frame(n, 20_000)[1])
            n += 1
            await asyncio.sleep(0)
        assert f.messages_dropped > 0 and f.state is ForwardState.CONNECTED
        assert src.base > 0, "the ring is trimmed behind the paused forwarder (bounded memory)"
        slave = rec.connections[0]
        slave.transport.resume_reading()
        await until(lambda: f.consumer is not None and not f.consumer.paused, 10)
        src.on_message(VIDEO, n * 40, frame(n)[1])
        await until(lambda: slave.media[-1][1] == n * 40, 10)  # the last frame arrived
        seq = "".join(kinds(slave.media))
        assert seq.startswith("mvaK")
        # the skip: the headers once more, then a keyframe (never a frame without its GOP)
        frames = [i for i in range(len(seq)) if seq[i] in "Kp"]
        skips = [(i, j) for i, j in itertools.pairwise(frames) if slave.media[j][1] - slave.media[i][1] != 40]
        assert len(skips) == 1, seq
        i, j = skips[0]
        assert seq[i + 1:j + 1] == "mvaK" and seq.count("mva") == 2, seq
        assert slave.media[j][1] - slave.media[i][1] > 1000, "more than queue_length was skipped"
        assert f.messages_sent + f.messages_dropped == n + 1, "every frame was either sent or dropped"
        f.stop()

    asyncio.run(run())


def test_stalled_destination_is_reconnected_after_a_backoff_and_starts_with_headers(monkeypatch):
    monkeypatch.setattr(forward, "STALL_TIMEOUT", 0.5)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        rec = Recorder(stop_reading_after_publish=True)
        port = await rec.start()
        src = publishing_source(loop)
        f = Forwarder(context(loop), src, f"127.0.0.1:{port}",
                      ForwardConfig(backoff_initial=100, backoff_max=200, queue_length=30))
        await until(lambda: f.state is ForwardState.CONNECTED)
        n = 0
        deadline = time.monotonic() + 20
        while f.state is ForwardState.CONNECTED:  # the destination stops reading; its consumer stalls
            assert time.monotonic() < deadline, "a stalled destination must be dropped"
            src.on_message(VIDEO, n * 40, frame(n, 20_000)[1])
            n += 1
            await asyncio.sleep(0.005 if n % 10 == 0 else 0)
        assert f.state is ForwardState.BACKOFF and "stalled for" in f.last_error
        assert f.consumer is None and not src.consumers(), "a disconnected forwarder leaves the source"
        rec.stop_reading_after_publish = False
        await until(lambda: f.state is ForwardState.CONNECTED and len(rec.connections) == 2, 5)
        src.on_message(VIDEO, n * 40, frame(n)[1])
        await until(lambda: len(rec.connections[1].media) >= 4)
        assert "".join(kinds(rec.connections[1].media)).startswith("mvaK"), "headers, then the GOP cache"
        assert f.reconnects == 1 and 0.1 <= f._backoff() <= 0.2
        f.stop()

    asyncio.run(run())


def test_backoff_grows_with_jitter_within_bounds():
    async def run() -> None:
        loop = asyncio.get_running_loop()
        src = publishing_source(loop)
        for config, check in [(ForwardConfig(backoff_initial=100, backoff_max=1600), "grows"),
                              (ForwardConfig(), "fixed")]:
            f = Forwarder(context(loop), src, "127.0.0.1:9", config)
            delays = [f._backoff() for _ in range(8)]
            if check == "grows":
                assert all(0.1 <= d <= 1.6 for d in delays)
                assert delays[0] == 0.1 and max(delays[4:]) > 0.8
            else:  # SRS's fixed 3 s
                assert set(delays) == {3.0}
            f.stop()

    asyncio.run(run())


def test_forward_connection_and_stop_states_are_enums_whose_values_the_api_shows() -> None:
    from srv.net.rtmp_server import Role
    from srv.process import Stop

    assert [s.value for s in ForwardState] == ["connecting", "connected", "backoff", "error", "stopped"]
    assert [r.value for r in Role] == ["rtmp-connect", "fmle-publish", "rtmp-play"]
    assert [s.value for s in Stop] == ["graceful", "fast"]
