"""Message helpers: aggregate splitting and control message builders/parsers."""

from __future__ import annotations

import struct

import pytest

from srv.rtmp.errors import ProtocolError
from srv.rtmp.messages import (
    Message,
    MessageType,
    UserControlEvent,
    parse_user_control,
    ping_request_message,
    set_buffer_length_message,
    split_aggregate,
)


def flv_tag(type_id: int, ts: int, data: bytes, back_pointer: bool = True) -> bytes:
    tag = bytes((type_id,)) + len(data).to_bytes(3, "big")
    tag += (ts & 0xFFFFFF).to_bytes(3, "big") + bytes((ts >> 24,)) + b"\x00\x00\x00" + data
    return tag + (struct.pack(">I", len(data) + 11) if back_pointer else b"")


def test_aggregate_is_split_with_timestamps_rebased_on_the_aggregate() -> None:
    payload = flv_tag(9, 5000, b"v1") + flv_tag(8, 5020, b"a1") + flv_tag(9, 5040, b"v2", False)
    subs = split_aggregate(Message(MessageType.AGGREGATE, 1, 100, payload))
    assert [(m.type_id, m.stream_id, m.timestamp, m.payload) for m in subs] == [
        (9, 1, 100, b"v1"),
        (8, 1, 120, b"a1"),
        (9, 1, 140, b"v2"),
    ]


@pytest.mark.parametrize(
    "payload",
    [flv_tag(9, 0, b"abc")[:-6], b"\x09\x00", flv_tag(4, 0, b"x")],
)
def test_malformed_aggregate_is_rejected(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        split_aggregate(Message(MessageType.AGGREGATE, 1, 0, payload))


def test_user_control_round_trip() -> None:
    assert parse_user_control(ping_request_message(77).payload) == (
        UserControlEvent.PING_REQUEST,
        77,
        None,
    )
    sbl = set_buffer_length_message(1, 3000).payload
    assert parse_user_control(sbl) == (UserControlEvent.SET_BUFFER_LENGTH, 1, 3000)
    with pytest.raises(ProtocolError):
        parse_user_control(b"\x00\x03\x00\x00\x00\x01")
