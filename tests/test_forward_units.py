"""Forward pieces without processes: destination URLs, loop checks, backoff, dropping GOPs."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import Any

from srv.app.forward_target import MAX_HOPS, loop_refusal, resolve, upstream_via
from srv.app.packet import AUDIO, DATA, VIDEO, Packet
from srv.conf.model import ForwardConfig
from srv.net.forward import Forwarder

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


def bare_forwarder(config: ForwardConfig) -> Any:
    f: Any = Forwarder.__new__(Forwarder)
    f.config = config
    f.attempt = 0
    f.queue = deque()
    f.messages_dropped = 0
    f.need_keyframe = False
    f.name = "live/s -> test"
    f.source = SimpleNamespace(video_sh=object(), video_seen=True)
    return f


def test_backoff_grows_with_jitter_within_bounds():
    f = bare_forwarder(ForwardConfig(backoff_initial=100, backoff_max=1600))
    delays = [f._backoff() for _ in range(8)]
    assert all(0.1 <= d <= 1.6 for d in delays)
    assert delays[0] == 0.1 and max(delays[4:]) > 0.8
    f = bare_forwarder(ForwardConfig())  # SRS's fixed 3 s
    assert {f._backoff() for _ in range(5)} == {3.0}


def test_overflow_drops_a_whole_gop_and_keeps_headers():
    f = bare_forwarder(ForwardConfig())
    meta, vsh, ash = Packet(DATA, 0, b"\x02meta"), Packet(VIDEO, 0, VSH), Packet(AUDIO, 0, ASH)
    gop1 = [Packet(VIDEO, 0, KEY), Packet(AUDIO, 10, AAC), Packet(VIDEO, 40, INTER)]
    gop2 = [Packet(VIDEO, 1000, KEY), Packet(VIDEO, 1040, INTER)]
    f.queue.extend([meta, vsh, ash, *gop1, *gop2])
    f._drop_gop()
    assert list(f.queue) == [meta, vsh, ash, *gop2]
    assert f.messages_dropped == 3 and not f.need_keyframe
    f._drop_gop()  # nothing but the headers left: wait for the next keyframe
    assert list(f.queue) == [meta, vsh, ash] and f.need_keyframe
