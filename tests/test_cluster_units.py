"""Pieces of the origin-cluster proxy: register bodies, request paths, the chunk boundary a relay
splits at, and the balancers' ownership rules (the Redis one against a real redis-server)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_cluster_proxy import Redis

from srv.cluster.balancer import (
    BalancerError,
    MemoryBalancer,
    Origin,
    RedisBalancer,
    RegisterError,
    parse_endpoint,
    parse_register,
)
from srv.cluster.http_relay import stream_of_path
from srv.cluster.router import stream_name
from srv.conf.model import ProxyConfig
from srv.rtmp import amf0
from srv.rtmp.chunk import ChunkDecoder, encode
from srv.rtmp.connection import decode_command
from srv.rtmp.messages import Message, MessageType, set_chunk_size_message

SRS_BODY = {"device_id": "origin2", "ip": "10.78.122.184", "server": "vid-46p14mm", "service": "z2s3w865",
            "pid": "42583", "rtmp": ["19352"], "http": ["8082"], "api": ["19853"], "srt": ["10082"],
            "rtc": ["udp://0.0.0.0:8001"]}


def test_srs_documented_register_body_parses() -> None:
    origin = parse_register(json.dumps(SRS_BODY).encode())
    assert origin == Origin("vid-46p14mm", "z2s3w865", "42583", "10.78.122.184", "origin2",
                            (("10.78.122.184", 19352),), (("10.78.122.184", 8082),), (("10.78.122.184", 19853),))
    assert Origin.from_json(origin.to_json()) == origin


@pytest.mark.parametrize("item, expected", [
    (1935, ("10.0.0.1", 1935)), ("1935", ("10.0.0.1", 1935)), (":1935", ("10.0.0.1", 1935)),
    ("tcp://:1935", ("10.0.0.1", 1935)), ("tcp://0.0.0.0:1935", ("10.0.0.1", 1935)),
    ("tcp://192.168.3.10:1935", ("192.168.3.10", 1935)), ("127.0.0.3:19350", ("127.0.0.3", 19350)),
    ("[::1]:1935", ("::1", 1935)),
])
def test_listen_endpoint_forms(item: object, expected: tuple[str, int]) -> None:
    assert parse_endpoint(item, "10.0.0.1") == expected


@pytest.mark.parametrize("item", ["", "abc", "tcp://x:", "0", "70000", True, None, [1935], "x" * 300])
def test_bad_endpoints_are_refused(item: object) -> None:
    with pytest.raises(RegisterError):
        parse_endpoint(item, "10.0.0.1")


def test_numbers_are_taken_where_srs_sends_strings() -> None:
    origin = parse_register(json.dumps({**SRS_BODY, "pid": 42583, "rtmp": [19352]}).encode())
    assert origin.pid == "42583" and origin.rtmp == (("10.78.122.184", 19352),)


@pytest.mark.parametrize("target, expected", [
    ("/live/livestream.flv", ("__defaultVhost__/live/livestream", False)),
    ("/live/livestream.m3u8?hls_ctx=x", ("__defaultVhost__/live/livestream", False)),
    ("/live/livestream-12.ts", ("__defaultVhost__/live/livestream", True)),
    ("/live/live-stream-3.m4s", ("__defaultVhost__/live/live-stream", True)),
    ("/live/livestream-init.mp4", ("__defaultVhost__/live/livestream", True)),
    ("/a/b/c.flv?vhost=v.example.com", ("v.example.com/a/b/c", False)),
    ("/", None), ("/index.html", None), ("/live/x.txt", None), ("/x.flv", None),
])
def test_the_stream_a_request_path_names(target: str, expected: tuple[str, bool] | None) -> None:
    assert stream_of_path(target) == expected


def test_addresses_and_localhost_are_the_default_vhost() -> None:
    assert stream_name("127.0.0.1", "live", "s") == "__defaultVhost__/live/s"
    assert stream_name("[::1]", "live", "s") == "__defaultVhost__/live/s"
    assert stream_name("localhost", "live", "s") == "__defaultVhost__/live/s"
    assert stream_name("cdn.example.com", "live", "s") == "cdn.example.com/live/s"


def _status_stream() -> tuple[bytes, bytes]:
    """An origin's answer: chunk size, a _result, onStatus; then media (the caller's)."""
    head = (encode(set_chunk_size_message(4096), 128, 2)
            + encode(Message(MessageType.COMMAND_AMF0, 0, 0, amf0.encode("_result", 1.0, None, {})), 4096, 3)
            + encode(Message(MessageType.COMMAND_AMF0, 1, 0, amf0.encode("onStatus", 0.0, None,
                                                                          {"code": "NetStream.Play.Start"})), 4096, 5))
    media = encode(Message(MessageType.VIDEO, 1, 40, bytes(9000)), 4096, 6)
    return head, media


def _is_status(msg: Message) -> bool:
    return msg.type_id == MessageType.COMMAND_AMF0 and decode_command(msg).name == "onStatus"


@pytest.mark.parametrize("split", ["whole", "byte-at-a-time"])
def test_feed_until_stops_right_after_the_status(split: str) -> None:
    head, media = _status_stream()
    data = head + media + b"trailing"
    decoder = ChunkDecoder()
    pieces = [data] if split == "whole" else [data[i:i + 1] for i in range(len(data))]
    found: list[Message] = []
    rest = b""
    for i, piece in enumerate(pieces):
        msgs, used = decoder.feed_until(piece, _is_status)
        found += msgs
        if msgs and _is_status(msgs[-1]):
            rest = piece[used:] + b"".join(pieces[i + 1:])
            break
    assert [m.type_id for m in found] == [MessageType.SET_CHUNK_SIZE, MessageType.COMMAND_AMF0,
                                          MessageType.COMMAND_AMF0]
    assert rest == media + b"trailing"  # the rest is the caller's, untouched
    assert decoder.chunk_size == 4096
    assert decoder.buffered == 0


def test_memory_balancer_one_owner_refresh_and_release() -> None:
    async def go() -> None:
        b = MemoryBalancer(ProxyConfig(stream_ttl=10))
        assert await b.claim("s", "a|1") is None
        assert await b.claim("s", "b|2") == "a|1"
        assert await b.refresh("s", "b|2") == 0 and await b.refresh("s", "a|1") == 1
        await b.release("s", "b|2")  # not its own: nothing happens
        assert await b.owner("s") == "a|1"
        await b.release("s", "a|1")
        assert await b.owner("s") is None
        assert await b.refresh("s", "a|1") == 2  # gone: taken again
    asyncio.run(go())


@pytest.fixture
def redis(tmp_path: Path) -> object:
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()


def test_redis_claims_race_to_exactly_one_winner(redis: Redis) -> None:
    async def go() -> None:
        config = ProxyConfig(redis_port=redis.port, stream_ttl=5)
        balancers = [RedisBalancer(config) for _ in range(8)]
        results = await asyncio.gather(*(b.claim("race", f"o{i}|t{i}") for i, b in enumerate(balancers)))
        winners = [r for r in results if r is None]
        assert len(winners) == 1
        owner = await balancers[0].owner("race")
        assert owner is not None and all(r in (None, owner) for r in results)
        ttl = int(redis.cli("PTTL", "srv:cluster:stream:race"))
        assert 0 < ttl <= 5000
        await balancers[1].release("race", "someone|else")  # compare-and-delete: not the owner's value
        assert await balancers[0].owner("race") == owner
        for b in balancers:
            await b.aclose()
    asyncio.run(go())


def test_redis_origins_expire_without_heartbeat(redis: Redis) -> None:
    async def go() -> None:
        b = RedisBalancer(ProxyConfig(redis_port=redis.port, server_ttl=1))
        origin = parse_register(json.dumps(SRS_BODY).encode())
        await b.register(origin)
        assert await b.origins() == [origin]
        await asyncio.sleep(1.2)
        assert await b.origins() == []
        assert redis.cli("EXISTS", "srv:cluster:origin:vid-46p14mm") == "0"
        await b.aclose()
    asyncio.run(go())


def test_a_redis_call_in_an_outage_fails_instead_of_landing_late_when_redis_returns(redis: Redis) -> None:
    """A register begun while Redis is down fails then (the proxy answers 503, the origin beats
    again): it is not held in client retries until Redis is back and then written with the expiry
    it computed when it began, already past with a short server_ttl (the origin looked gone to
    every proxy while the test's registered() saw it). The first call after Redis returns, on a
    pooled connection that died with the old server, goes through."""
    async def go() -> None:
        b = RedisBalancer(ProxyConfig(redis_port=redis.port, server_ttl=4))
        origin = parse_register(json.dumps(SRS_BODY).encode())
        await b.register(origin)
        redis.stop()
        late = asyncio.create_task(b.register(origin))
        await asyncio.sleep(1.5)
        redis.start()  # empty, as after a restart
        with pytest.raises(BalancerError):
            await late
        assert redis.cli("ZCARD", "srv:cluster:origins") == "0"
        await b.register(origin)
        assert await b.origins() == [origin]
        await b.aclose()
    asyncio.run(go())
