"""ServerSession and ClientSession talking over a fake in-memory link."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from srv.rtmp import amf0
from srv.rtmp.chunk import CSID_COMMAND, CSID_VIDEO, encode_message
from srv.rtmp.errors import ProtocolError
from srv.rtmp.events import (
    Connected,
    ConnectFailed,
    ConnectRequest,
    DeleteStream,
    Event,
    FCUnpublish,
    MediaMessage,
    MetadataMessage,
    PlayRequest,
    PublishRequest,
    StatusEvent,
    StreamCreated,
    UnknownCommand,
)
from srv.rtmp.messages import Message, MessageType, command_message, ping_request_message
from srv.rtmp.session import ClientSession, ServerSession, ServerState

Splitter = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data] if data else []


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def odd_lumps(data: bytes) -> list[bytes]:
    return [data[i : i + 997] for i in range(0, len(data), 997)]


class Link:
    """Moves bytes both ways until both sides are quiet, collecting events."""

    def __init__(self, client: ClientSession, server: ServerSession, split: Splitter) -> None:
        self.client, self.server, self.split = client, server, split
        self.server_events: list[Event] = []
        self.client_events: list[Event] = []

    def pump(self) -> None:
        for _ in range(100):
            to_server = self.client.data_to_send()
            for piece in self.split(to_server):
                self.server_events += self.server.receive_data(piece)
            to_client = self.server.data_to_send()
            for piece in self.split(to_client):
                self.client_events += self.client.receive_data(piece)
            if not to_server and not to_client:
                return
        raise AssertionError("link never went quiet")

    def take(self, side: str) -> list[Event]:
        events = self.server_events if side == "server" else self.client_events
        out = list(events)
        events.clear()
        return out


def connect(
    split: Splitter = whole, tc_url: str = "rtmp://example.com:1935/live?vhost=v1&key=k"
) -> Link:
    link = Link(ClientSession("live", tc_url), ServerSession(), split)
    link.client.start()
    link.pump()
    (request,) = link.take("server")
    assert isinstance(request, ConnectRequest)
    assert link.server.state is ServerState.CONNECTING
    assert link.server.accept_connect(request) == []
    link.pump()
    (connected,) = link.take("client")
    assert isinstance(connected, Connected)
    assert connected.info["code"] == "NetConnection.Connect.Success"
    return link


@pytest.mark.parametrize("split", [whole, byte_by_byte, odd_lumps])
def test_publish_flow_delivers_metadata_and_media_to_the_server(split: Splitter) -> None:
    link = connect(split)
    client, server = link.client, link.server
    assert server.complex_handshake and client.handshake.s2_verified
    client.release_stream("s")
    client.fc_publish("s")
    client.create_stream()
    link.pump()
    assert link.take("client") == [StreamCreated(1)]
    client.publish("s?token=abc")
    link.pump()
    assert link.take("server") == [PublishRequest(1, "s", {"token": "abc"}, "live")]
    server.accept_publish(1, "s")
    link.pump()
    (status,) = link.take("client")
    assert isinstance(status, StatusEvent) and status.code == "NetStream.Publish.Start"
    assert status.stream_id == 1
    meta = amf0.encode("@setDataFrame", "onMetaData", {"width": 640.0, "encoder": "test"})
    media = [Message(9, 1, i * 40, bytes([i]) * (i * 3000 + 1)) for i in range(5)]
    client.send_media(Message(MessageType.DATA_AMF0, 1, 0, meta))
    for msg in media:
        client.send_media(msg)
    link.pump()
    events = link.take("server")
    assert isinstance(events[0], MetadataMessage)
    assert events[0].metadata == {"width": 640.0, "encoder": "test"}
    assert amf0.decode(events[0].message.payload) == [
        "onMetaData",
        {"width": 640.0, "encoder": "test"},
    ]
    assert events[1:] == [MediaMessage(m) for m in media]
    client.fc_unpublish("s")
    client.delete_stream(1)
    link.pump()
    assert link.take("server") == [FCUnpublish(0, "s"), DeleteStream(1)]


@pytest.mark.parametrize("split", [whole, byte_by_byte])
def test_play_flow_receives_status_and_shared_media_bytes(split: Splitter) -> None:
    link = connect(split)
    client, server = link.client, link.server
    client.create_stream()
    link.pump()
    client.play("s?x=1")
    link.pump()
    assert link.take("server") == [PlayRequest(1, "s", {"x": "1"}, -2.0)]
    server.start_play(1, "s")
    video = Message(9, 1, 0x1000005, b"\x17\x01" + b"k" * 70000)
    server.send_encoded(
        encode_message(9, 1, video.timestamp, video.payload, server.out_chunk_size, CSID_VIDEO)
    )
    link.pump()
    events = link.take("client")
    codes = [e.code for e in events if isinstance(e, StatusEvent)]
    assert codes == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    assert events[-1] == MediaMessage(video)
    server.send_unpublish_notify(1)
    link.pump()
    (notify,) = link.take("client")
    assert isinstance(notify, StatusEvent) and notify.code == "NetStream.Play.UnpublishNotify"


def test_vhost_comes_from_tcurl_host_without_port_when_no_param() -> None:
    link = Link(
        ClientSession("live/sub?key=1", "rtmp://cdn.example.com:1936/live/sub"),
        ServerSession(),
        whole,
    )
    link.client.start()
    link.pump()
    (request,) = link.take("server")
    assert isinstance(request, ConnectRequest)
    assert (request.app, request.vhost, request.params) == (
        "live/sub",
        "cdn.example.com",
        {"key": "1"},
    )


def test_rejected_connect_reaches_the_client_with_its_description() -> None:
    link = Link(ClientSession("live", "rtmp://h/live"), ServerSession(), whole)
    link.client.start()
    link.pump()
    (request,) = link.take("server")
    assert isinstance(request, ConnectRequest)
    link.server.reject_connect(request, "vhost not allowed")
    link.pump()
    assert link.take("client") == [
        ConnectFailed("NetConnection.Connect.Rejected", "vhost not allowed")
    ]


def test_rejected_publish_gives_error_status() -> None:
    link = connect()
    link.client.create_stream()
    link.pump()
    link.client.publish("s")
    link.pump()
    link.take("client")
    link.server.reject_publish(1)
    link.pump()
    (status,) = link.take("client")
    assert isinstance(status, StatusEvent)
    assert (status.level, status.code) == ("error", "NetStream.Publish.BadName")


def test_publish_before_connect_is_a_protocol_error() -> None:
    link = Link(ClientSession("live", "rtmp://h/live"), ServerSession(), whole)
    link.client.start()
    server = link.server
    client_hs = link.client.data_to_send()
    server.receive_data(client_hs)
    server.receive_data(bytes(1536))  # C2
    cmd = command_message("publish", 0, None, "s", "live", stream_id=1)
    with pytest.raises(ProtocolError, match="publish before connect"):
        server.receive_data(encode_message(cmd.type_id, 1, 0, cmd.payload, 128, CSID_COMMAND))


def test_play_before_create_stream_is_a_protocol_error() -> None:
    link = connect()
    link.client.stream_id = 1  # pretend, so the client sends play on a stream never created
    link.client.play("s")
    with pytest.raises(ProtocolError, match="play on stream 1 before createStream"):
        link.pump()


def test_commands_sent_while_connect_is_pending_are_returned_by_accept_connect() -> None:
    link = Link(ClientSession("live", "rtmp://h/live"), ServerSession(), whole)
    link.client.start()
    link.pump()
    (request,) = link.take("server")
    forged = command_message("myCall", 5, None, "arg")
    link.server.receive_data(encode_message(20, 0, 0, forged.payload, 128, CSID_COMMAND))
    assert isinstance(request, ConnectRequest)
    assert link.server.accept_connect(request) == [UnknownCommand(0, "myCall", 5.0, ("arg",))]


def test_amf3_command_is_understood() -> None:
    link = connect()
    tid = link.client._next_transaction("createStream")  # so the client expects the _result
    payload = b"\x00" + amf0.encode("createStream", tid) + b"\x11\x01"  # AMF3 null object
    link.client.send_message(Message(MessageType.COMMAND_AMF3, 0, 0, payload), CSID_COMMAND)
    link.pump()
    assert link.take("client") == [StreamCreated(1)]


def test_ping_request_is_answered_and_acks_follow_the_peer_window() -> None:
    link = connect()
    link.server.send_message(ping_request_message(1234), 2)
    link.server.send_message(Message(MessageType.WINDOW_ACK_SIZE, 0, 0, struct.pack(">I", 1000)), 2)
    link.pump()
    link.client.create_stream()
    link.pump()
    link.client.play("s")
    link.pump()
    link.server.send_message(Message(9, 1, 0, b"x" * 5000), CSID_VIDEO)
    link.pump()
    assert link.server.peer_acked >= 5000


def test_aggregate_message_becomes_media_events() -> None:
    link = connect()
    link.client.create_stream()
    link.pump()
    link.client.publish("s")
    link.pump()
    link.take("server")
    tag = (
        bytes((8,))
        + (2).to_bytes(3, "big")
        + (500).to_bytes(3, "big")
        + b"\x00\x00\x00\x00"
        + b"ab"
    )
    agg = Message(MessageType.AGGREGATE, 1, 1000, tag + struct.pack(">I", 13))
    link.client.send_message(agg, 4)
    link.pump()
    assert link.take("server") == [MediaMessage(Message(8, 1, 1000, b"ab"))]


def test_amf3_metadata_is_normalized_to_amf0_on_metadata() -> None:
    link = connect()
    link.client.create_stream()
    link.pump()
    link.client.publish("s")
    link.pump()
    link.take("server")
    payload = (
        b"\x00"
        + amf0.encode("@setDataFrame", "onMetaData")
        + b"\x11\x0a\x0b\x01\x0bwidth\x04\x20\x01"
    )
    link.client.send_message(Message(MessageType.DATA_AMF3, 1, 0, payload), 5)
    link.pump()
    (event,) = link.take("server")
    assert isinstance(event, MetadataMessage) and event.metadata == {"width": 32}
    assert event.message.type_id == MessageType.DATA_AMF0
    assert amf0.decode(event.message.payload) == ["onMetaData", {"width": 32.0}]
