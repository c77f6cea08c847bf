"""The RTMP chunk stream: reassembling messages from chunks, and splitting them.

Decoding (:class:`ChunkDecoder`) keeps per-chunk-stream header state (fmt 1-3
headers compress against it) and partial messages. Invariants:

* A chunk is consumed only when it is complete in the buffer, so all state
  changes for one chunk happen at once and input may be split anywhere.
* Set Chunk Size and Abort messages take effect *inside* the byte stream where
  they appear (the next chunk already uses the new size), so the decoder
  applies them itself while reassembling; they are still returned.
* Each read is parsed in place: a message that fits one chunk is copied once
  (into its payload); the chunks of a longer message are kept as pieces joined
  once when it completes, or, below ``LIST_CHUNK_SIZE``, appended to ONE
  buffer. The incomplete chunk at the end of a read is kept in a bytearray;
  the next read is appended to it, parsed there, and the consumed head dropped
  with ``del buf[:pos]`` (no copy of the rest).
* Resource limits, all checked before any memory is committed: message length
  <= ``max_message_size``; at most ``max_partial_messages`` messages in
  progress, whose announced lengths add up to <= ``max_partial_bytes`` (the
  connection's budget for unfinished messages); a peer's chunk size >=
  ``min_chunk_size``. Violations raise :class:`ProtocolError`.

Encoding (:func:`encode_message`) always writes a fmt 0 header with the
absolute timestamp then fmt 3 continuations. It uses no per-connection state,
so the bytes of one published message can be encoded once and written to
every player that shares the chunk size and message stream id.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from .errors import ProtocolError
from .messages import Message, MessageType

CSID_PROTOCOL: Final = 2
CSID_COMMAND: Final = 3
CSID_AUDIO: Final = 4
CSID_DATA: Final = 5
CSID_VIDEO: Final = 6
# the conventional chunk stream of each media message type (anything else: CSID_DATA)
_MEDIA_CSID: Final[dict[int, int]] = {MessageType.AUDIO: CSID_AUDIO, MessageType.VIDEO: CSID_VIDEO}


def media_csid(type_id: int) -> int:
    """The chunk stream audio, video and data messages are sent on (one table, every sender)."""
    return _MEDIA_CSID.get(type_id, CSID_DATA)


DEFAULT_CHUNK_SIZE: Final = 128
MAX_CHUNK_SIZE: Final = 0xFFFFFF
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 2**20
DEFAULT_MAX_PARTIAL_MESSAGES: Final = 64
#: Room in the budget for unfinished messages beyond one message of the largest size
#: (audio and commands interleaved with a big video frame).
PARTIAL_BUDGET_SLACK: Final = 2**20

#: Chunks of at least this size are kept as a list of pieces and joined once when their
#: message completes (measured cheapest: scripts/ingest-cost); smaller chunks go into one
#: growing buffer, so the per-object overhead of tiny pieces never multiplies memory.
LIST_CHUNK_SIZE: Final = 1024

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")
_FMT0 = struct.Struct(">BHBHBI")  # ts(3) len(3) type(1) stream id (byte-swapped, see below)
# a chunk's first 8 bytes: basic header(1) + ts(3) as one word, len(3) + type(1) as the other
_TS_LEN_TYPE = struct.Struct(">II")
_EXTENDED: Final = 0xFFFFFF
# the control types the decoder applies itself, as plain ints (an IntEnum member costs a lookup)
_SET_CHUNK_SIZE: Final = int(MessageType.SET_CHUNK_SIZE)
_ABORT: Final = int(MessageType.ABORT)
_AUDIO: Final = int(MessageType.AUDIO)
_VIDEO: Final = int(MessageType.VIDEO)

#: What :meth:`ChunkDecoder.feed` hands audio and video to when given one:
#: ``(type_id, timestamp, payload)``.
MediaCallback = Callable[[int, int, bytes], object]
#: Size of the message header that follows the basic header, by fmt.
_HEADER_SIZE: Final = (11, 7, 3, 0)


_NO_PIECES: Final[list[bytes | bytearray]] = []  # between messages (never appended to)


class _ChunkStream:
    """Header state of one chunk stream id, and its message in progress."""

    __slots__ = (
        "timestamp", "delta", "length", "type_id", "stream_id",
        "extended", "ext_value", "pieces", "add", "received", "seen",
    )  # fmt: skip

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False  # the last fmt 0-2 header carried an extended timestamp
        self.ext_value = 0  # ... with this value (repeated on fmt 3 chunks)
        # the chunks of the message in progress and the method that appends one (see
        # ChunkDecoder._start_partial)
        self.pieces: list[bytes | bytearray] | bytearray = _NO_PIECES
        self.add: Callable[[bytes | bytearray], object] = _NO_PIECES.append
        self.received = 0  # payload bytes of the message in progress; 0 = between messages
        self.seen = False  # a fmt 0 (or tolerated fmt 1) header has set up this stream


class ChunkDecoder:
    """Turn received chunk-stream bytes into :class:`Message` objects."""

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_partial_messages: int = DEFAULT_MAX_PARTIAL_MESSAGES,
        max_partial_bytes: int | None = None,
        min_chunk_size: int = 1,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_partial_messages = max_partial_messages
        self.min_chunk_size = min_chunk_size
        self.max_message_size = max_message_size
        self.max_partial_bytes = max_message_size + PARTIAL_BUDGET_SLACK
        self.set_limits(max_message_size, max_partial_bytes)
        self._streams: dict[int, _ChunkStream] = {}
        self._partial = 0  # messages in progress
        self._partial_bytes = 0  # ... and the sum of their announced lengths
        # Unparsed tail (an incomplete chunk) and the length it must reach before parsing can
        # progress: small reads of a big chunk are appended without re-parsing.
        self._pending = bytearray()
        self._need = 0
        # feed's media callback while it still applies to this read (see feed)
        self._media: MediaCallback | None = None
        #: audio and video messages handed to a media callback so far
        self.media_delivered = 0

    def set_limits(self, max_message_size: int, max_partial_bytes: int | None = None) -> None:
        """Change the message cap and the budget for unfinished messages (default: one
        message of the largest size plus :data:`PARTIAL_BUDGET_SLACK`)."""
        self.max_message_size = max_message_size
        if max_partial_bytes is None:
            max_partial_bytes = max_message_size + PARTIAL_BUDGET_SLACK
        self.max_partial_bytes = max_partial_bytes

    def set_chunk_size(self, size: int) -> None:
        """Apply the peer's Set Chunk Size value (top bit is reserved and masked)."""
        size &= 0x7FFFFFFF
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ProtocolError(f"chunk size {size} out of range (1..{MAX_CHUNK_SIZE})")
        if size < self.min_chunk_size:
            raise ProtocolError(
                f"chunk size {size} below the floor of {self.min_chunk_size} "
                "(tiny chunks cost a worker CPU for every byte)"
            )
        self.chunk_size = size

    def abort(self, csid: int) -> None:
        """Drop the partial message of chunk stream ``csid`` (Abort message)."""
        cs = self._streams.get(csid)
        if cs is not None and cs.received:
            self._end_partial(cs)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed (an incomplete chunk)."""
        return len(self._pending)

    @property
    def partial_bytes(self) -> int:
        """Bytes held for messages in progress (their buffers have the announced length)."""
        return self._partial_bytes

    def feed(
        self, data: bytes | bytearray | memoryview, media: MediaCallback | None = None
    ) -> list[Message]:
        """Consume ``data``; return every message completed by it, in order.

        ``media``: audio and video messages are handed to it as ``(type_id, timestamp,
        payload)`` instead of being returned (no :class:`Message` made, counted in
        ``media_delivered``), until the first other message of this read: that one and every
        message after it are returned, so the caller still sees everything in the order it was
        sent (a publisher's media before a command or metadata that follows them).
        """
        out: list[Message] = []
        pending = self._pending
        if pending:
            if len(pending) + len(data) < self._need:
                pending += data  # the chunk it completes is still not whole: do not parse
                return out
            # parsed as bytes: a payload is then one slice (one copy), not a slice made bytes
            data = bytes(pending) + data
            pending.clear()
            self._media = media
            pos, need = self._parse(data, out)
            if pos < len(data):
                pending += data[pos:]
        else:
            if type(data) is not bytes:
                data = bytes(data)  # the caller may reuse its buffer
            self._media = media
            pos, need = self._parse(data, out)
            if pos < len(data):
                pending += data[pos:]
        self._need = need - pos
        self._media = None
        return out

    def feed_until(
        self, data: bytes, stop: Callable[[Message], bool]
    ) -> tuple[list[Message], int]:
        """Like :meth:`feed`, but stop right after the first message ``stop`` accepts.

        Returns the messages completed and how many bytes of ``data`` were consumed; when a
        message stopped the parse, the bytes after it are the caller's (the decoder keeps
        none of them). A relay uses it to find where an answer ends in a byte stream.
        """
        self._media = None
        before = len(self._pending)
        buf = bytes(self._pending) + data
        out: list[Message] = []
        pos, need = self._parse(buf, out, stop)
        if out and stop(out[-1]):
            self._pending = bytearray()
            self._need = 0
            return out, pos - before
        self._pending = bytearray(buf[pos:])
        self._need = need - pos
        return out, len(data)

    def _parse(
        self, buf: bytes | bytearray, out: list[Message], stop: Callable[[Message], bool] | None = None
    ) -> tuple[int, int]:
        """Consume every complete chunk of ``buf`` (up to the first message ``stop`` accepts);
        return where parsing stopped and the length ``buf`` must reach to progress (0 when all
        was consumed)."""
        pos = 0
        n = len(buf)
        streams = self._streams
        while pos < n:
            b0 = buf[pos]
            cs = streams.get(b0 & 0x3F)
            if cs is not None and cs.received and b0 >= 0xC0 and not cs.extended and b0 & 0x3F > 1:
                p = pos + 1  # fast path: a fmt 3 continuation of a message in progress
            else:
                if cs is not None and not cs.received and cs.seen and not cs.extended and b0 & 0x3F > 1:
                    end = self._whole_message(buf, pos, n, cs, out)
                    if end:  # fast path: a whole message, its header and all its chunks
                        pos = end
                        if stop is not None and stop(out[-1]):
                            return pos, 0
                        continue
                p = self._header(buf, pos, n)
                if p < 0:
                    return pos, -p
                cs = self._cs
            remaining = cs.length - cs.received
            end = p + (remaining if remaining < self.chunk_size else self.chunk_size)
            if end > n:  # only on the fast path: _header checked its own chunk
                return pos, end
            pos = end
            if cs.received == 0 and end - p == cs.length:  # the whole message in one chunk
                payload = bytes(buf[p:end])
            else:
                if not cs.received:
                    self._start_partial(cs)
                cs.add(buf[p:end])
                cs.received += end - p
                if cs.received < cs.length:
                    continue
                pieces = cs.pieces
                payload = b"".join(pieces) if isinstance(pieces, list) else bytes(pieces)
                cs.pieces, cs.add, cs.received = _NO_PIECES, _NO_PIECES.append, 0
                self._partial -= 1
                self._partial_bytes -= cs.length
            type_id = cs.type_id
            media = self._media
            if media is not None:
                if type_id == _VIDEO or type_id == _AUDIO:
                    self.media_delivered += 1
                    media(type_id, cs.timestamp, payload)
                    continue
                self._media = None  # in order: this message and all after it are returned
            msg = Message(type_id, cs.stream_id, cs.timestamp, payload)
            if type_id == _SET_CHUNK_SIZE or type_id == _ABORT:
                self._apply_control(msg)
            out.append(msg)
            if stop is not None and stop(msg):
                return pos, 0
        return pos, 0

    def _whole_message(
        self, buf: bytes | bytearray, pos: int, n: int, cs: _ChunkStream, out: list[Message]
    ) -> int:
        """The fast path for what a publisher mostly sends: a message whose header (1-byte basic
        header, no extended timestamp) and every chunk are in ``buf``, its chunks not
        interleaved with another stream's. Decode it at once (the payload copied once, no
        partial-message bookkeeping), append it to ``out`` and return where it ends; return 0,
        changing nothing, for anything else (the chunk-by-chunk path then takes it)."""
        length: int  # (struct gives Any)
        b0 = buf[pos]
        fmt = b0 >> 6
        if fmt < 2:
            p = pos + (12 if fmt == 0 else 8)
            if p > n:
                return 0
            w0, w1 = _TS_LEN_TYPE.unpack_from(buf, pos)
            delta = w0 & 0xFFFFFF
            if delta == _EXTENDED:
                return 0
            length, type_id = w1 >> 8, w1 & 0xFF
            if fmt == 0:
                stream_id = _U32LE.unpack_from(buf, pos + 8)[0]
                timestamp = delta  # and fmt 3 messages after it reuse it as their delta
            else:
                stream_id = cs.stream_id
                timestamp = (cs.timestamp + delta) & 0xFFFFFFFF
        elif fmt == 2:
            p = pos + 4
            if p > n:
                return 0
            delta = _U32.unpack_from(buf, pos)[0] & 0xFFFFFF
            if delta == _EXTENDED:
                return 0
            length, type_id, stream_id = cs.length, cs.type_id, cs.stream_id
            timestamp = (cs.timestamp + delta) & 0xFFFFFFFF
        else:
            p = pos + 1
            delta = cs.delta
            length, type_id, stream_id = cs.length, cs.type_id, cs.stream_id
            timestamp = (cs.timestamp + delta) & 0xFFFFFFFF
        size = self.chunk_size
        if length <= size:
            end = p + length
            if end > n:
                return 0
            payload = buf[p:end] if type(buf) is bytes else bytes(buf[p:end])
        else:
            if length > self.max_message_size:
                return 0  # refused where the chunk-by-chunk path checks it
            continuations = (length - 1) // size
            end = p + length + continuations
            if end > n:
                return 0
            cont = 0xC0 | (b0 & 0x3F)
            at = p + size
            for _ in range(continuations):
                if buf[at] != cont:
                    return 0  # another stream's chunk in between, or an odd header
                at += size + 1
            view = memoryview(buf)
            try:
                # each chunk's payload runs up to the next continuation header (the last to `end`)
                parts = [view[at - size : at] for at in range(p + size, end, size + 1)]
                parts.append(view[end - (length - continuations * size) : end])
                payload = b"".join(parts)
                del parts
            finally:
                view.release()  # a bytearray buffer is resized after the parse
        cs.timestamp, cs.delta, cs.length, cs.type_id, cs.stream_id = (
            timestamp, delta, length, type_id, stream_id
        )
        media = self._media
        if media is not None:
            if type_id == _VIDEO or type_id == _AUDIO:
                self.media_delivered += 1
                media(type_id, timestamp, payload)
                return end
            self._media = None  # in order: this message and all after it are returned
        msg = Message(type_id, stream_id, timestamp, payload)
        if type_id == _SET_CHUNK_SIZE or type_id == _ABORT:
            self._apply_control(msg)
        out.append(msg)
        return end

    _cs: _ChunkStream  # the chunk stream of the chunk whose header _header just committed

    def _header(self, buf: bytes | bytearray, pos: int, n: int) -> int:
        """Parse the header of the chunk at ``pos`` and, when the whole chunk is in ``buf``,
        commit it to its chunk stream (``_cs``) and return the payload offset; otherwise
        change nothing and return -(bytes needed)."""
        b0 = buf[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        hp = pos + 1
        if csid < 2:
            if csid == 0:
                if hp >= n:
                    return -(hp + 1)
                csid = 64 + buf[hp]
                hp += 1
            else:
                if hp + 1 >= n:
                    return -(hp + 2)
                csid = 64 + buf[hp] + (buf[hp + 1] << 8)
                hp += 2
        p = hp + _HEADER_SIZE[fmt]
        if p > n:
            return -p
        cs = self._streams.get(csid)
        if cs is None:
            cs = self._streams[csid] = _ChunkStream()
        if not cs.seen and fmt > 1:
            # fmt 1 on a fresh stream is tolerated (librtmp sends it); 2 and 3 cannot work
            raise ProtocolError(f"chunk stream {csid} starts with fmt {fmt} (no previous header)")
        u32 = _U32.unpack_from
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
        new_message = cs.received == 0
        extended = cs.extended
        ext_value = cs.ext_value
        if ts == _EXTENDED:
            if p + 4 > n:
                return -(p + 4)
            ext_value = u32(buf, p)[0]
            extended = True
            p += 4
        elif ts >= 0:
            extended = False
        elif extended:
            # fmt 3: the extended timestamp is repeated. For a continuation chunk some
            # encoders omit it, so only take the 4 bytes when they match (as SRS does).
            if p + 4 > n:
                return -(p + 4)
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
        remaining = length - cs.received
        end = p + (remaining if remaining < self.chunk_size else self.chunk_size)
        if end > n:
            return -end
        # the whole chunk is here: commit its header
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
        self._cs = cs
        return p

    def _start_partial(self, cs: _ChunkStream) -> None:
        """A message longer than one chunk begins: reserve its one buffer, within budget."""
        if self._partial >= self.max_partial_messages:
            raise ProtocolError(
                f"more than {self.max_partial_messages} partial messages in progress"
            )
        if self._partial_bytes + cs.length > self.max_partial_bytes:
            raise ProtocolError(
                f"unfinished messages would hold {self._partial_bytes + cs.length} bytes, "
                f"over the budget of {self.max_partial_bytes}"
            )
        self._partial += 1
        self._partial_bytes += cs.length
        if self.chunk_size < LIST_CHUNK_SIZE:
            buf = bytearray()  # one buffer: tiny pieces would each cost a whole object
            cs.pieces, cs.add = buf, buf.extend
        else:
            parts: list[bytes | bytearray] = []  # joined once: cheaper than growing a buffer
            cs.pieces, cs.add = parts, parts.append

    def _end_partial(self, cs: _ChunkStream) -> None:
        """Forget the message in progress (aborted)."""
        self._partial -= 1
        self._partial_bytes -= cs.length
        cs.pieces, cs.add = _NO_PIECES, _NO_PIECES.append
        cs.received = 0

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


#: a whole fmt 0 header with a 1-byte basic header: csid, ts(3) len(3) type(1), stream id (swapped)
_FMT0_CHUNK = struct.Struct(">BBHBHBI")


def one_chunk_header(type_id: int, stream_id: int, timestamp: int, length: int, csid: int) -> bytes | None:
    """The fmt 0 header that :func:`encode_message` puts before a payload of ``length`` bytes
    sent in ONE chunk (``length`` <= the chunk size): header + payload is its whole encoding,
    so a sender joining many messages joins headers and payloads once (each payload copied
    once, not twice). None where a header takes more (csid past 63, an extended timestamp)."""
    ts = timestamp & 0xFFFFFFFF
    if ts >= _EXTENDED or not 2 <= csid <= 63 or length > 0xFFFFFF:
        return None
    sid = stream_id & 0xFFFFFFFF  # little-endian on the wire: swapped for the big-endian struct
    return _FMT0_CHUNK.pack(csid, ts >> 16, ts & 0xFFFF, length >> 16, length & 0xFFFF, type_id,
                            (sid & 0xFF) << 24 | (sid & 0xFF00) << 8 | (sid >> 8) & 0xFF00 | sid >> 24)


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
    if n <= chunk_size:
        head = one_chunk_header(type_id, stream_id, timestamp, n, csid)
        if head is not None:
            return head + payload
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
