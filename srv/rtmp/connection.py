"""What server and client RTMP sessions share: output, acks, control, AMF payloads.

:class:`RtmpConnection` owns the chunk decoder and the output buffer. It
handles protocol control messages the same way on both sides: Set Chunk Size
and Abort (already applied by the decoder), Window Ack Size (we acknowledge
every *peer-announced* window of received bytes, which nginx-rtmp, SRS and
ffmpeg rely on to keep sending), Ping Request -> Ping Response. It also
decodes command and data payloads (AMF0, or AMF3 types 17/15) and normalizes
``onMetaData`` / ``@setDataFrame`` into one type-18 shape, so players always
receive the same metadata message whatever the publisher sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from . import amf0, amf3
from .chunk import (
    CSID_COMMAND,
    CSID_DATA,
    CSID_PROTOCOL,
    DEFAULT_CHUNK_SIZE,
    ChunkDecoder,
    MediaCallback,
    encode,
)
from .errors import ProtocolError
from .events import Event, MediaMessage, MetadataMessage
from .messages import (
    Message,
    MessageType,
    UserControlEvent,
    ack_message,
    command_message,
    data_message,
    parse_u32,
    parse_user_control,
    ping_response_message,
    set_chunk_size_message,
    split_aggregate,
)

#: Data messages the receiving side swallows: they are per-connection, not stream content.
_PRIVATE_DATA = frozenset({"|RtmpSampleAccess", "@clearDataFrame", "onStatus", "onBWDone"})


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded command message (type 20 or 17)."""

    name: str
    transaction_id: float
    command_object: Any
    args: tuple[Any, ...]
    stream_id: int


def split_query(text: str) -> tuple[str, dict[str, str]]:
    """``"name?a=1&b=2"`` -> ``("name", {"a": "1", "b": "2"})`` (last value wins)."""
    path, sep, query = text.partition("?")
    if not sep:
        return text, {}
    return path, dict(parse_qsl(query, keep_blank_values=True))


def decode_command(msg: Message) -> Command:
    payload = msg.payload
    if msg.type_id == MessageType.COMMAND_AMF3 and payload[:1] == b"\x00":
        payload = payload[1:]  # AMF3 command: a format byte, then AMF0 (with 0x11 switches)
    values = amf0.decode(payload)
    if not values or not isinstance(values[0], str):
        raise ProtocolError(f"command message without a name (first value {values[:1]!r})")
    tid = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
    obj = values[2] if len(values) > 2 else None
    return Command(values[0], tid, obj, tuple(values[3:]), msg.stream_id)


def decode_data(msg: Message) -> list[Any]:
    """AMF values of a data message; type 15 is a 0x00 byte + AMF0, or plain AMF3."""
    if msg.type_id == MessageType.DATA_AMF0:
        return amf0.decode(msg.payload)
    if msg.payload[:1] == b"\x00":
        try:
            return amf0.decode(msg.payload[1:])
        except ProtocolError:
            pass
    return amf3.decode(msg.payload)


def status_info(level: str, code: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"level": level, "code": code, "description": description, **extra}


class RtmpConnection:
    """Output buffer, chunk decoding, acknowledgements and protocol control."""

    def __init__(self, out_chunk_size: int, max_message_size: int) -> None:
        if not 1 <= out_chunk_size <= 0xFFFFFF:
            raise ValueError(f"out chunk size {out_chunk_size} out of range")
        self._decoder = ChunkDecoder(max_message_size=max_message_size)
        self._out: list[bytes] = []
        self._out_chunk_size = DEFAULT_CHUNK_SIZE  # until we announce ours
        self._wanted_out_chunk_size = out_chunk_size
        self.bytes_received = 0
        self._peer_window = 0  # 0: the peer asked for no acknowledgements
        self._acked = 0
        #: Last sequence number the peer acknowledged, and the bandwidth it set for us.
        self.peer_acked = 0
        self.peer_bandwidth = 0

    @property
    def out_chunk_size(self) -> int:
        return self._out_chunk_size

    @property
    def in_chunk_size(self) -> int:
        return self._decoder.chunk_size

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def send_message(self, msg: Message, csid: int) -> None:
        """Queue one message, chunked with the current out chunk size."""
        self._out.append(encode(msg, self._out_chunk_size, csid))

    def send_encoded(self, data: bytes) -> None:
        """Queue bytes already chunked with ``out_chunk_size`` (shared media bytes)."""
        self._out.append(data)

    def set_wanted_chunk_size(self, size: int) -> None:
        """Choose the out chunk size announced when the connection is set up (before connect)."""
        if not 1 <= size <= 0xFFFFFF:
            raise ValueError(f"out chunk size {size} out of range")
        self._wanted_out_chunk_size = size

    def set_chunk_size(self, size: int) -> None:
        """Announce our out chunk size and use it for everything queued after."""
        self.send_message(set_chunk_size_message(size), CSID_PROTOCOL)
        self._out_chunk_size = size

    # --- helpers for subclasses ----------------------------------------------

    def _send_command(
        self, name: str, tid: float, obj: Any, *args: Any, stream_id: int = 0
    ) -> None:
        msg = command_message(name, tid, obj, *args, stream_id=stream_id)
        self.send_message(msg, CSID_COMMAND)

    def _send_status(self, stream_id: int, info: dict[str, Any]) -> None:
        self._send_command("onStatus", 0, None, info, stream_id=stream_id)

    def _send_data(self, stream_id: int, *values: Any) -> None:
        self.send_message(data_message(*values, stream_id=stream_id), CSID_DATA)

    def _receive_chunks(self, data: bytes, media: MediaCallback | None = None) -> list[Message]:
        self.bytes_received += len(data)
        messages = self._decoder.feed(data, media)
        if self._peer_window and self.bytes_received - self._acked >= self._peer_window:
            self._acked = self.bytes_received
            self.send_message(ack_message(self.bytes_received), CSID_PROTOCOL)
        return messages

    def _handle_control(self, msg: Message) -> bool:
        """Handle protocol control (types 1-6); False when ``msg`` is something else."""
        type_id = msg.type_id
        if type_id > MessageType.SET_PEER_BANDWIDTH:
            return False
        if type_id == MessageType.USER_CONTROL:
            event, value, _ = parse_user_control(msg.payload)
            if event == UserControlEvent.PING_REQUEST:
                self.send_message(ping_response_message(value), CSID_PROTOCOL)
        elif type_id == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = parse_u32(msg)
        elif type_id == MessageType.ACK:
            self.peer_acked = parse_u32(msg)
        elif type_id == MessageType.SET_PEER_BANDWIDTH:
            self.peer_bandwidth = parse_u32(msg)
        # SET_CHUNK_SIZE and ABORT were applied by the decoder where they appeared.
        return True

    def _media_events(self, msg: Message, events: list[Event]) -> None:
        """Audio, video, data and aggregate messages -> Media/Metadata events."""
        type_id = msg.type_id
        if type_id == MessageType.AUDIO or type_id == MessageType.VIDEO:
            events.append(MediaMessage(msg))
        elif type_id == MessageType.DATA_AMF0 or type_id == MessageType.DATA_AMF3:
            self._data_event(msg, events)
        elif type_id == MessageType.AGGREGATE:
            for sub in split_aggregate(msg):
                self._media_events(sub, events)
        # Shared objects (16/19) and unknown types are ignored, like SRS does.

    def _data_event(self, msg: Message, events: list[Event]) -> None:
        values = decode_data(msg)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if not values or not isinstance(values[0], str) or values[0] in _PRIVATE_DATA:
            return
        if values[0] == "onMetaData":
            raw = values[1] if len(values) > 1 else None
            meta = amf0.EcmaArray(raw) if isinstance(raw, dict) else amf0.EcmaArray()
            try:
                payload = amf0.encode("onMetaData", meta)
            except (TypeError, ValueError) as exc:  # e.g. an AMF3 byte array inside
                raise ProtocolError(f"onMetaData cannot be re-encoded as AMF0: {exc}") from None
            normalized = Message(MessageType.DATA_AMF0, msg.stream_id, msg.timestamp, payload)
            events.append(MetadataMessage(normalized, dict(meta)))
        elif msg.type_id == MessageType.DATA_AMF0:
            events.append(MediaMessage(msg))
        elif msg.payload[:1] == b"\x00":
            # AMF3 data wrapping AMF0 values: strip the format byte so players get type 18
            payload = msg.payload[1:]
            events.append(
                MediaMessage(Message(MessageType.DATA_AMF0, msg.stream_id, msg.timestamp, payload))
            )
