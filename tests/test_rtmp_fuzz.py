"""Fuzzing ServerSession: random and mutated client bytes only ever raise ProtocolError."""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srv.rtmp import amf0
from srv.rtmp.errors import ProtocolError
from srv.rtmp.events import (
    ConnectRequest,
    Event,
    FCUnpublish,
    MediaMessage,
    MetadataMessage,
    PlayRequest,
    PublishRequest,
)
from srv.rtmp.messages import Message, MessageType
from srv.rtmp.session import ClientSession, ServerSession

HANDSHAKE_SIZE = 1 + 1536 + 1536


@cache
def recorded_client_session() -> bytes:
    """Every byte a publishing ClientSession sends to a real ServerSession."""
    client, server = ClientSession("live", "rtmp://h/live?vhost=v"), ServerSession()
    sent = bytearray()

    def pump() -> None:
        for _ in range(20):
            data = client.data_to_send()
            sent.extend(data)
            for event in server.receive_data(data):
                if isinstance(event, ConnectRequest):
                    server.accept_connect(event)
                elif isinstance(event, PublishRequest):
                    server.accept_publish(event.stream_id, event.stream_name)
            client.receive_data(server.data_to_send())

    client.start()
    pump()
    client.release_stream("s")
    client.fc_publish("s")
    client.create_stream()
    pump()
    client.publish("s?k=v")
    pump()
    client.set_chunk_size(128)
    meta = amf0.encode("@setDataFrame", "onMetaData", {"width": 1.0, "list": [1.0, "a"]})
    client.send_media(Message(MessageType.DATA_AMF0, 1, 0, meta))
    for i in range(6):
        client.send_media(Message(8 + i % 2, 1, i * 20 + 0xFFFFF0, bytes([i]) * (50 + i * 100)))
    client.fc_unpublish("s")
    pump()
    return bytes(sent)


def run_session(data: bytes, cuts: list[int]) -> list[Event]:
    """Feed ``data`` split at ``cuts``, acting like a permissive application; every event seen."""
    server = ServerSession(max_message_size=1 << 16)
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    seen: list[Event] = []
    for piece in pieces:
        events = server.receive_data(piece)
        while events:
            event = events.pop(0)
            seen.append(event)
            if isinstance(event, ConnectRequest):
                events += server.accept_connect(event)
            elif isinstance(event, PublishRequest):
                server.accept_publish(event.stream_id, event.stream_name)
            elif isinstance(event, PlayRequest):
                server.start_play(event.stream_id, event.stream_name)
        server.data_to_send()
    return seen


def drive(data: bytes, cuts: list[int]) -> None:
    """Like :func:`run_session` for hostile input: a ProtocolError is the one allowed failure."""
    try:
        run_session(data, cuts)
    except ProtocolError:
        pass


def test_recorded_session_is_valid_as_is() -> None:
    wire = recorded_client_session()
    for cuts in ([], list(range(1, len(wire)))):  # whole, then one byte at a time
        events = run_session(wire, cuts)
        connects = [e for e in events if isinstance(e, ConnectRequest)]
        assert [(c.app, c.vhost) for c in connects] == [("live", "v")]
        publishes = [e for e in events if isinstance(e, PublishRequest)]
        assert [(p.stream_name, p.params, p.publish_type) for p in publishes] == [("s", {"k": "v"}, "live")]
        metadata = [e for e in events if isinstance(e, MetadataMessage)]
        assert [m.metadata for m in metadata] == [{"width": 1.0, "list": [1.0, "a"]}]
        media = [e.message for e in events if isinstance(e, MediaMessage)]
        assert [(m.type_id, m.timestamp, m.payload) for m in media] == [
            (8 + i % 2, (i * 20 + 0xFFFFF0) & 0xFFFFFFFF, bytes([i]) * (50 + i * 100)) for i in range(6)
        ]
        assert [e.stream_name for e in events if isinstance(e, FCUnpublish)] == ["s"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_client_session_only_raises_protocol_error(data: st.DataObject) -> None:
    wire = bytearray(recorded_client_session())
    for _ in range(data.draw(st.integers(1, 8))):
        # mutate after the handshake mostly: that is where the parsers live
        pos = data.draw(st.integers(min(HANDSHAKE_SIZE, len(wire) - 1) - 40, len(wire) - 1))
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "set"]))
        if kind == "flip":
            wire[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "insert":
            wire[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del wire[pos : pos + data.draw(st.integers(1, 16))]
        else:
            wire[pos] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x3F, 0xC0]))
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(wire)), max_size=6))))
    drive(bytes(wire), cuts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 6000), max_size=4))
def test_random_bytes_after_a_valid_handshake_only_raise_protocol_error(
    tail: bytes, cuts: list[int]
) -> None:
    wire = recorded_client_session()[:HANDSHAKE_SIZE] + tail
    drive(wire, sorted({c for c in cuts if c <= len(wire)}))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_from_the_start_only_raise_protocol_error(wire: bytes) -> None:
    drive(wire, [])
