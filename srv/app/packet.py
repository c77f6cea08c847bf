"""A published message as the hub keeps it: encoded for the wire at most once per format.

Every player of a source receives the very same `bytes` objects: `rtmp(chunk_size)` is the
message chunked with a fmt-0 header on message stream id 1 (the id every play gets), so it does
not depend on any connection's chunk-stream state; `flv()` is the FLV tag for HTTP-FLV players.
Both are built lazily, on the first player that needs them, and cached on the packet: the
first chunk size asked for in two slots (in practice every player shares one), any other size
in a small dict made only when a second size is asked for.
"""

from __future__ import annotations

from typing import NewType

from srv.media import codec
from srv.media.flv import encode_tag
from srv.rtmp.chunk import encode_message, media_csid, one_chunk_header
from srv.rtmp.messages import MessageType

# the media type ids (FLV tag types are the RTMP message types), declared once in srv/rtmp
AUDIO, VIDEO, DATA = MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0
PLAY_STREAM_ID = 1

# How a consumer's packets go out: FLV tags (`FLV`), or RTMP chunks of a size on a message
# stream (`rtmp_encoding`). An int underneath (a dict key, no cost on the hot path), a type of its
# own for mypy, so a bare chunk size cannot be passed where an encoding is meant.
Encoding = NewType("Encoding", int)
FLV = Encoding(0)


class Packet:
    __slots__ = ("type_id", "timestamp", "payload", "is_keyframe", "is_header", "_rtmp", "_rtmp_size",
                 "_rtmp_other", "_flv")

    def __init__(self, type_id: int, timestamp: int, payload: bytes) -> None:
        self.type_id = type_id
        self.timestamp = timestamp
        self.payload = payload
        if type_id == VIDEO:
            self.is_header = codec.video_is_sequence_header(payload)
            self.is_keyframe = not self.is_header and codec.video_is_keyframe(payload)
        elif type_id == AUDIO:
            self.is_header = codec.audio_is_sequence_header(payload)
            self.is_keyframe = False
        else:
            self.is_header = True  # metadata travels with the headers
            self.is_keyframe = False
        self._rtmp: bytes | None = None
        self._rtmp_size = 0
        self._rtmp_other: dict[int, bytes] | None = None
        self._flv: bytes | None = None

    def rtmp(self, chunk_size: int) -> bytes:
        data = self._rtmp
        if data is not None and self._rtmp_size == chunk_size:
            return data
        other = self._rtmp_other
        if other is not None and chunk_size in other:
            return other[chunk_size]
        data = encode_message(self.type_id, PLAY_STREAM_ID, self.timestamp, self.payload,
                              chunk_size, media_csid(self.type_id))
        if self._rtmp is None:  # the first size asked for: in practice the only one
            self._rtmp, self._rtmp_size = data, chunk_size
        elif other is None:
            self._rtmp_other = {chunk_size: data}
        else:
            other[chunk_size] = data
        return data

    def flv(self) -> bytes:
        data = self._flv
        if data is None:
            data = self._flv = encode_tag(self.type_id, self.timestamp, self.payload)
        return data

    def encoded(self, encoding: Encoding) -> bytes:
        """The packet as `encoding` sends it: an FLV tag (`FLV`) or RTMP chunks (`rtmp_encoding()`)."""
        if encoding == FLV:
            return self.flv()
        if encoding >> 32:  # another message stream id than the players': not cached
            return encode_message(self.type_id, encoding >> 32, self.timestamp, self.payload,
                                  encoding & 0xFFFFFFFF, media_csid(self.type_id))
        return self.rtmp(encoding)

    def __repr__(self) -> str:
        kinds: dict[int, str] = {AUDIO: "audio", VIDEO: "video", DATA: "data"}
        kind = kinds.get(self.type_id, str(self.type_id))
        flags = ("K" if self.is_keyframe else "") + ("H" if self.is_header else "")
        return f"<Packet {kind} ts={self.timestamp} {len(self.payload)}B {flags}>"



def wire_parts(packets: list[Packet], encoding: Encoding) -> list[bytes]:
    """Parts whose join is `packets` as `encoding` sends them, for a batch joined once: a
    message that fits one RTMP chunk is its header and its payload (joined only there: one
    copy of the payload, where its cached encoding would be a copy joined again); anything
    else, and an encoding already cached on the packet, is `Packet.encoded`."""
    if encoding == FLV or encoding >> 32:
        return [p.encoded(encoding) for p in packets]
    out: list[bytes] = []
    append = out.append
    for p in packets:
        payload = p.payload
        if p._rtmp is None and len(payload) <= encoding:
            head = one_chunk_header(p.type_id, PLAY_STREAM_ID, p.timestamp, len(payload), media_csid(p.type_id))
            if head is not None:
                append(head)
                append(payload)
                continue
        append(p.rtmp(encoding))
    return out


def rtmp_encoding(chunk_size: int, stream_id: int = PLAY_STREAM_ID) -> Encoding:
    """The consumer encoding for RTMP chunks of `chunk_size` on message stream `stream_id`.

    Players all get stream id 1, so their encoding is the chunk size itself. A forwarder
    publishes on the id its destination's createStream returned, which is 1 on SRS, nginx-rtmp
    and srv; any other id gets an encoding (and a consumer group) of its own.
    """
    return Encoding(chunk_size if stream_id == PLAY_STREAM_ID else chunk_size | stream_id << 32)
