"""RTMP messages: the unit above the chunk stream, and builders for control ones.

A :class:`Message` is what the chunk layer reassembles and what the encoder
splits: type, message stream id, 32-bit timestamp (ms, wraps) and payload.
Builders here return :class:`Message` objects for the protocol control
messages (types 1-6, csid 2, stream 0) and user control events, so sessions
never hand-pack bytes. :func:`split_aggregate` turns an aggregate message into
its sub-messages with timestamps rebased the way FMS/SRS do.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, NamedTuple

from . import amf0
from .errors import ProtocolError

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_U16_U32 = struct.Struct(">HI")
_U16_U32_U32 = struct.Struct(">HII")
_U32_U8 = struct.Struct(">IB")


class MessageType(IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACK = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


class UserControlEvent(IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


class Message(NamedTuple):
    """One message. A named tuple rather than a frozen dataclass: the chunk decoder makes one
    for every message a publisher sends, and a tuple is built in half the time."""

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


def set_chunk_size_message(size: int) -> Message:
    if not 1 <= size <= 0x7FFFFFFF:
        raise ValueError(f"chunk size {size} out of range")
    return Message(MessageType.SET_CHUNK_SIZE, 0, 0, _U32.pack(size))


def abort_message(csid: int) -> Message:
    return Message(MessageType.ABORT, 0, 0, _U32.pack(csid))


def ack_message(sequence_number: int) -> Message:
    return Message(MessageType.ACK, 0, 0, _U32.pack(sequence_number & 0xFFFFFFFF))


def window_ack_size_message(size: int) -> Message:
    return Message(MessageType.WINDOW_ACK_SIZE, 0, 0, _U32.pack(size))


def set_peer_bandwidth_message(size: int, limit: int = PeerBandwidthLimit.DYNAMIC) -> Message:
    return Message(MessageType.SET_PEER_BANDWIDTH, 0, 0, _U32_U8.pack(size, limit))


def user_control_message(event: int, value: int, extra: int | None = None) -> Message:
    """A user control message; ``extra`` is the buffer length of SetBufferLength."""
    if extra is None:
        payload = _U16_U32.pack(event, value & 0xFFFFFFFF)
    else:
        payload = _U16_U32_U32.pack(event, value, extra)
    return Message(MessageType.USER_CONTROL, 0, 0, payload)


def stream_begin_message(stream_id: int) -> Message:
    return user_control_message(UserControlEvent.STREAM_BEGIN, stream_id)


def stream_eof_message(stream_id: int) -> Message:
    return user_control_message(UserControlEvent.STREAM_EOF, stream_id)


def ping_request_message(timestamp: int) -> Message:
    return user_control_message(UserControlEvent.PING_REQUEST, timestamp)


def ping_response_message(timestamp: int) -> Message:
    return user_control_message(UserControlEvent.PING_RESPONSE, timestamp)


def set_buffer_length_message(stream_id: int, buffer_ms: int) -> Message:
    return user_control_message(UserControlEvent.SET_BUFFER_LENGTH, stream_id, buffer_ms)


def parse_user_control(payload: bytes) -> tuple[int, int, int | None]:
    """Return (event type, value, buffer length or None); ProtocolError when short."""
    if len(payload) < 6:
        raise ProtocolError(f"user control message of {len(payload)} bytes is too short")
    event, value = _U16_U32.unpack_from(payload)
    extra = None
    if event == UserControlEvent.SET_BUFFER_LENGTH:
        if len(payload) < 10:
            raise ProtocolError("SetBufferLength user control message is too short")
        (extra,) = _U32.unpack_from(payload, 6)
    return event, value, extra


def parse_u32(msg: Message) -> int:
    """The 4-byte big-endian value of a protocol control message (types 1, 2, 3, 5, 6)."""
    if len(msg.payload) < 4:
        raise ProtocolError(
            f"{_type_name(msg.type_id)} message of {len(msg.payload)} bytes is too short"
        )
    value: int = _U32.unpack_from(msg.payload)[0]
    return value


def command_message(
    name: str, transaction_id: float, command_object: Any, *args: Any, stream_id: int = 0
) -> Message:
    """An AMF0 command (type 20): name, transaction id, command object, arguments."""
    payload = amf0.encode(name, transaction_id, command_object, *args)
    return Message(MessageType.COMMAND_AMF0, stream_id, 0, payload)


def data_message(*values: Any, stream_id: int = 0, timestamp: int = 0) -> Message:
    """An AMF0 data message (type 18), e.g. ``|RtmpSampleAccess`` or ``onMetaData``."""
    return Message(MessageType.DATA_AMF0, stream_id, timestamp, amf0.encode(*values))


def _type_name(type_id: int) -> str:
    try:
        return MessageType(type_id).name
    except ValueError:
        return f"type {type_id}"


def split_aggregate(msg: Message) -> list[Message]:
    """Split an aggregate message into FLV-tag-shaped sub-messages.

    Each sub-message is ``type(1) size(3) timestamp(3) timestamp_ext(1)
    stream_id(3) data(size) back_pointer(4)``. Timestamps are rebased: the
    first sub-message takes the aggregate's timestamp and the others keep their
    offset from the first (FMS behaviour, what SRS does). The stream id is the
    aggregate's. A missing final back pointer is tolerated (some encoders).
    """
    payload = msg.payload
    end = len(payload)
    pos = 0
    base: int | None = None
    out: list[Message] = []
    while pos < end:
        if end - pos < 11:
            raise ProtocolError(
                f"aggregate message truncated: {end - pos} bytes left for a tag header"
            )
        type_id = payload[pos]
        (word,) = _U32.unpack_from(payload, pos)
        size = word & 0xFFFFFF
        (word,) = _U32.unpack_from(payload, pos + 3)
        timestamp = (word & 0xFFFFFF) | (payload[pos + 7] << 24)
        start = pos + 11
        stop = start + size
        if stop > end:
            raise ProtocolError(f"aggregate sub-message of {size} bytes overruns the aggregate")
        if type_id not in (MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0):
            raise ProtocolError(f"aggregate sub-message of unexpected type {type_id}")
        if base is None:
            base = timestamp
        rebased = (msg.timestamp + timestamp - base) & 0xFFFFFFFF
        out.append(Message(type_id, msg.stream_id, rebased, bytes(payload[start:stop])))
        pos = stop + 4 if end - stop >= 4 else end
    return out
