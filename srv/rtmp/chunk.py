"""The RTMP chunk stream: reassembling messages from chunks, and splitting them.

Decoding (:class:`ChunkDecoder`) keeps per-chunk-stream header state (fmt 1-3
headers compress against it) and partial messages. Invariants:

* A chunk is consumed only when it is complete in the buffer, so all state
  changes for one chunk happen at once and input may be split anywhere.
* Set Chunk Size and Abort messages take effect *inside* the byte stream where
  they appear (the next chunk already uses the new size), so the decoder
  applies them itself while reassembling; they are still returned.
* Resource limits: message length <= ``max_message_size``, at most
  ``max_partial_messages`` messages in progress at once; violations raise
  :class:`ProtocolError` before any memory is committed.

Encoding (:func:`encode_message`) always writes a fmt 0 header with the
absolute timestamp then fmt 3 continuations. It uses no per-connection state,
so the bytes of one published message can be encoded once and written to
every player that shares the chunk size and message stream id.
"""

from __future__ import annotations

import struct
from typing import Final

from .errors import ProtocolError
from .messages import Message, MessageType

CSID_PROTOCOL: Final = 2
CSID_COMMAND: Final = 3
CSID_AUDIO: Final = 4
CSID_DATA: Final = 5
CSID_VIDEO: Final = 6

DEFAULT_CHUNK_SIZE: Final = 128
MAX_CHUNK_SIZE: Final = 0xFFFFFF
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 2**20
DEFAULT_MAX_PARTIAL_MESSAGES: Final = 64

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")
_FMT0 = struct.Struct(">BHBHBI")  # ts(3) len(3) type(1) stream id (byte-swapped, see below)
_EXTENDED: Final = 0xFFFFFF
#: Size of the message header that follows the basic header, by fmt.
_HEADER_SIZE: Final = (11, 7, 3, 0)


class _ChunkStream:
    """Header state of one chunk stream id, and its message in progress."""

    __slots__ = (
        "timestamp", "delta", "length", "type_id", "stream_id",
        "extended", "ext_value", "parts", "received", "seen",
    )  # fmt: skip

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False  # the last fmt 0-2 header carried an extended timestamp
        self.ext_value = 0  # ... with this value (repeated on fmt 3 chunks)
        self.parts: list[bytes] = []
        self.received = 0  # payload bytes of the message in progress; 0 = between messages
        self.seen = False  # a fmt 0 (or tolerated fmt 1) header has set up this stream


class ChunkDecoder:
    """Turn received chunk-stream bytes into :class:`Message` objects."""

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_partial_messages: int = DEFAULT_MAX_PARTIAL_MESSAGES,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_partial_messages = max_partial_messages
        self._streams: dict[int, _ChunkStream] = {}
        self._partial = 0
        # Unparsed tail (an incomplete chunk) and the length it must reach before parsing can
        # progress: small reads of a big chunk are appended without re-copying the buffer.
        self._pending = bytearray()
        self._need = 0

    def set_chunk_size(self, size: int) -> None:
        """Apply the peer's Set Chunk Size value (top bit is reserved and masked)."""
        size &= 0x7FFFFFFF
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ProtocolError(f"chunk size {size} out of range (1..{MAX_CHUNK_SIZE})")
        self.chunk_size = size

    def abort(self, csid: int) -> None:
        """Drop the partial message of chunk stream ``csid`` (Abort message)."""
        cs = self._streams.get(csid)
        if cs is not None and cs.received:
            cs.parts = []
            cs.received = 0
            self._partial -= 1

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed (an incomplete chunk)."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Consume ``data``; return every message completed by it, in order."""
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return []
            buf = bytes(self._pending)
        else:
            buf = bytes(data)  # no copy when data is already bytes
        n = len(buf)
        pos = 0
        need = 0
        out: list[Message] = []
        streams = self._streams
        u32 = _U32.unpack_from
        while pos < n:
            # --- basic header: fmt and chunk stream id (1, 2 or 3 bytes)
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            hp = pos + 1
            if csid < 2:
                if csid == 0:
                    if hp >= n:
                        need = hp + 1
                        break
                    csid = 64 + buf[hp]
                    hp += 1
                else:
                    if hp + 1 >= n:
                        need = hp + 2
                        break
                    csid = 64 + buf[hp] + (buf[hp + 1] << 8)
                    hp += 2
            # --- message header
            p = hp + _HEADER_SIZE[fmt]
            if p > n:
                need = p
                break
            cs = streams.get(csid)
            if cs is None:
                cs = streams[csid] = _ChunkStream()
            new_message = cs.received == 0
            if fmt == 0:
                ts = u32(buf, hp - 1)[0] & 0xFFFFFF
                length = u32(buf, hp + 2)[0] & 0xFFFFFF
                type_id = buf[hp + 6]
                stream_id = _U32LE.unpack_from(buf, hp + 7)[0]
            elif fmt == 1:
                ts = u32(buf, hp - 1)[0] & 0xFFFFFF
                length = u32(buf, hp + 2)[0] & 0xFFFFFF
                type_id = buf[hp + 6]
                stream_id = cs.stream_id
            elif fmt == 2:
                ts = u32(buf, hp - 1)[0] & 0xFFFFFF
                length, type_id, stream_id = cs.length, cs.type_id, cs.stream_id
            else:
                ts = -1
                length, type_id, stream_id = cs.length, cs.type_id, cs.stream_id
            if not cs.seen and fmt > 1:
                # fmt 1 on a fresh stream is tolerated (librtmp sends it); 2 and 3 cannot work
                raise ProtocolError(
                    f"chunk stream {csid} starts with fmt {fmt} (no previous header)"
                )
            # --- extended timestamp
            extended = cs.extended
            ext_value = cs.ext_value
            if ts == _EXTENDED:
                if p + 4 > n:
                    need = p + 4
                    break
                ext_value = u32(buf, p)[0]
                extended = True
                p += 4
            elif ts >= 0:
                extended = False
            elif extended:
                # fmt 3: the extended timestamp is repeated. For a continuation chunk some
                # encoders omit it, so only take the 4 bytes when they match (as SRS does).
                if p + 4 > n:
                    need = p + 4
                    break
                if new_message or u32(buf, p)[0] == ext_value:
                    p += 4
            if new_message:
                if length > self.max_message_size:
                    raise ProtocolError(
                        f"message length {length} exceeds limit {self.max_message_size}"
                    )
            elif fmt < 2 and length != cs.length:
                raise ProtocolError(
                    f"chunk stream {csid}: message length changed from {cs.length} to "
                    f"{length} in the middle of a message"
                )
            # --- payload: only consume the chunk when all of it is here
            remaining = length - cs.received
            take = remaining if remaining < self.chunk_size else self.chunk_size
            end = p + take
            if end > n:
                need = end
                break
            pos = end
            # commit the header
            if new_message:
                if fmt == 0:
                    cs.timestamp = ext_value if extended else ts
                    cs.delta = cs.timestamp
                elif fmt < 3:
                    cs.delta = ext_value if extended else ts
                    cs.timestamp = (cs.timestamp + cs.delta) & 0xFFFFFFFF
                else:
                    cs.timestamp = (cs.timestamp + cs.delta) & 0xFFFFFFFF
                cs.length, cs.type_id, cs.stream_id = length, type_id, stream_id
                cs.seen = True
            cs.extended, cs.ext_value = extended, ext_value
            if take == length:  # fast path: the whole message in one chunk
                msg = Message(type_id, stream_id, cs.timestamp, buf[p:end])
            else:
                if new_message:
                    if self._partial >= self.max_partial_messages:
                        raise ProtocolError(
                            f"more than {self.max_partial_messages} partial messages in progress"
                        )
                    self._partial += 1
                cs.parts.append(buf[p:end])
                cs.received += take
                if cs.received < length:
                    continue
                msg = Message(type_id, stream_id, cs.timestamp, b"".join(cs.parts))
                cs.parts = []
                cs.received = 0
                self._partial -= 1
            if type_id == MessageType.SET_CHUNK_SIZE or type_id == MessageType.ABORT:
                self._apply_control(msg)
            out.append(msg)
        self._pending = bytearray(buf[pos:]) if pos < n else bytearray()
        self._need = need - pos
        return out

    def _apply_control(self, msg: Message) -> None:
        if len(msg.payload) < 4:
            raise ProtocolError(f"control message type {msg.type_id} of {len(msg.payload)} bytes")
        value = _U32.unpack_from(msg.payload)[0]
        if msg.type_id == MessageType.SET_CHUNK_SIZE:
            self.set_chunk_size(value)
        elif msg.type_id == MessageType.ABORT:
            self.abort(value)


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= 65599:
        return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))
    raise ValueError(f"chunk stream id {csid} out of range (2..65599)")


_BASIC0: Final = {csid: _basic_header(0, csid) for csid in range(2, 64)}
_BASIC3: Final = {csid: _basic_header(3, csid) for csid in range(2, 64)}


def encode_message(
    type_id: int,
    stream_id: int,
    timestamp: int,
    payload: bytes,
    chunk_size: int,
    csid: int,
) -> bytes:
    """Chunk one message: fmt 0 header (absolute timestamp), fmt 3 continuations.

    A timestamp >= 0xFFFFFF goes in the extended field, repeated after every
    fmt 3 header (what the spec, ffmpeg and SRS expect).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size {chunk_size} out of range")
    ts = timestamp & 0xFFFFFFFF
    n = len(payload)
    if n > 0xFFFFFF:
        raise ValueError(f"message of {n} bytes is too long for RTMP")
    b0 = _BASIC0.get(csid) or _basic_header(0, csid)
    # stream id is little-endian on the wire; swap it so one big-endian struct packs it all
    sid_swapped = int.from_bytes((stream_id & 0xFFFFFFFF).to_bytes(4, "little"), "big")
    if ts >= _EXTENDED:
        ext = _U32.pack(ts)
        h0 = b0 + _FMT0.pack(0xFF, 0xFFFF, n >> 16, n & 0xFFFF, type_id, sid_swapped) + ext
    else:
        ext = b""
        h0 = b0 + _FMT0.pack(ts >> 16, ts & 0xFFFF, n >> 16, n & 0xFFFF, type_id, sid_swapped)
    if n <= chunk_size:
        return h0 + payload
    h3 = (_BASIC3.get(csid) or _basic_header(3, csid)) + ext
    view = memoryview(payload)
    parts: list[bytes | memoryview] = [h0, view[:chunk_size]]
    append = parts.append
    for start in range(chunk_size, n, chunk_size):
        append(h3)
        append(view[start : start + chunk_size])
    return b"".join(parts)


def encode(message: Message, chunk_size: int, csid: int) -> bytes:
    """:func:`encode_message` for a :class:`Message`."""
    return encode_message(
        message.type_id, message.stream_id, message.timestamp, message.payload, chunk_size, csid
    )
