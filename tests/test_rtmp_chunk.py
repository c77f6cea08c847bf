"""Chunk stream decoding and encoding: all header formats, limits, bad input."""

from __future__ import annotations

import struct

import pytest

from srv.rtmp.chunk import ChunkDecoder, encode, encode_message
from srv.rtmp.errors import ProtocolError
from srv.rtmp.messages import Message, abort_message, set_chunk_size_message


def feed_in_pieces(decoder: ChunkDecoder, data: bytes, size: int) -> list[Message]:
    out: list[Message] = []
    for i in range(0, len(data), size):
        out += decoder.feed(data[i : i + size])
    return out


def header(fmt: int, csid: int, ts: int | None = None, length: int | None = None,
           type_id: int | None = None, stream_id: int | None = None) -> bytes:  # fmt: skip
    out = bytes(((fmt << 6) | csid,))
    if fmt <= 2:
        assert ts is not None
        out += min(ts, 0xFFFFFF).to_bytes(3, "big")
    if fmt <= 1:
        assert length is not None and type_id is not None
        out += length.to_bytes(3, "big") + bytes((type_id,))
    if fmt == 0:
        assert stream_id is not None
        out += struct.pack("<I", stream_id)
    if ts is not None and ts >= 0xFFFFFF:
        out += struct.pack(">I", ts)
    return out


MESSAGES = [
    Message(9, 1, 0, b"\x17\x00" + bytes(range(256)) * 3),
    Message(8, 1, 23, b"\xaf\x01" + b"a" * 100),
    Message(18, 1, 40, b""),
    Message(9, 1, 0xFFFFFF + 5, b"v" * 1000),  # extended timestamp
    Message(20, 0, 0, b"c" * 128),  # exactly one chunk
]


@pytest.mark.parametrize("chunk_size", [1, 128, 4096, 60000])
@pytest.mark.parametrize("piece", [1, 7, 1000, 1 << 20])
def test_encoded_messages_decode_back_however_the_bytes_are_split(
    chunk_size: int, piece: int
) -> None:
    wire = b"".join(encode(m, chunk_size, 4 + i % 3) for i, m in enumerate(MESSAGES))
    decoder = ChunkDecoder()
    decoder.set_chunk_size(chunk_size)
    assert feed_in_pieces(decoder, wire, piece) == MESSAGES
    assert decoder.buffered == 0


def test_trailing_partial_chunk_is_kept_for_the_next_feed() -> None:
    first, second = (encode(m, 128, 6) for m in MESSAGES[:2])
    decoder = ChunkDecoder()
    assert decoder.feed(first + second[:5]) == [MESSAGES[0]]
    assert decoder.buffered == 5
    assert decoder.feed(second[5:]) == [MESSAGES[1]]


def test_fmt1_fmt2_fmt3_headers_compress_against_previous_message() -> None:
    wire = (
        header(0, 4, ts=1000, length=3, type_id=8, stream_id=1) + b"abc"
        + header(1, 4, ts=20, length=2, type_id=9) + b"de"
        + header(2, 4, ts=30) + b"fg"
        + header(3, 4) + b"hi"  # new message, same delta again
    )  # fmt: skip
    got = [(m.type_id, m.stream_id, m.timestamp, m.payload) for m in ChunkDecoder().feed(wire)]
    assert got == [
        (8, 1, 1000, b"abc"),
        (9, 1, 1020, b"de"),
        (9, 1, 1050, b"fg"),
        (9, 1, 1080, b"hi"),
    ]


def test_fmt3_after_fmt0_reuses_the_fmt0_timestamp_as_delta() -> None:
    wire = header(0, 4, ts=40, length=1, type_id=8, stream_id=1) + b"a" + header(3, 4) + b"b"
    assert [m.timestamp for m in ChunkDecoder().feed(wire)] == [40, 80]


@pytest.mark.parametrize("csid", [2, 63, 64, 319, 320, 65599])
def test_one_two_and_three_byte_basic_headers(csid: int) -> None:
    msg = Message(9, 1, 5, b"x" * 300)
    wire = encode(msg, 128, csid)
    assert ChunkDecoder().feed(wire) == [msg]
    assert feed_in_pieces(ChunkDecoder(), wire, 1) == [msg]


def test_extended_timestamp_is_repeated_on_fmt3_continuations() -> None:
    wire = encode_message(9, 1, 0x01000000, b"z" * 300, 128, 6)
    ext = struct.pack(">I", 0x01000000)
    assert wire[1:4] == b"\xff\xff\xff" and wire[12:16] == ext
    assert wire[16 + 128 : 16 + 128 + 5] == b"\xc6" + ext


def test_fmt3_continuation_without_repeated_extended_timestamp_is_accepted() -> None:
    ts = 0x01000000
    wire = header(0, 6, ts=ts, length=200, type_id=9, stream_id=1) + b"p" * 128
    wire += header(3, 6) + b"q" * 72  # encoder omitted the extended timestamp here
    assert ChunkDecoder().feed(wire) == [Message(9, 1, ts, b"p" * 128 + b"q" * 72)]


def test_fmt3_new_message_after_extended_timestamp_carries_it() -> None:
    ts = 0x01000000
    wire = header(0, 6, ts=ts, length=2, type_id=9, stream_id=1) + b"ab"
    wire += header(3, 6) + struct.pack(">I", ts) + b"cd"
    assert [(m.timestamp, m.payload) for m in ChunkDecoder().feed(wire)] == [
        (ts, b"ab"),
        (2 * ts, b"cd"),
    ]


def test_extended_delta_on_fmt1() -> None:
    wire = header(0, 4, ts=10, length=1, type_id=8, stream_id=1) + b"a"
    wire += header(1, 4, ts=0x01000000, length=1, type_id=8) + b"b"
    assert [m.timestamp for m in ChunkDecoder().feed(wire)] == [10, 10 + 0x01000000]


def test_set_chunk_size_takes_effect_for_the_next_chunk_in_the_same_feed() -> None:
    big = Message(9, 1, 0, b"B" * 10000)
    wire = encode(set_chunk_size_message(4096), 128, 2) + encode(big, 4096, 6)
    decoder = ChunkDecoder()
    messages = decoder.feed(wire)
    assert messages[1] == big and decoder.chunk_size == 4096


def test_interleaved_chunk_streams_reassemble_independently() -> None:
    audio = encode_message(8, 1, 0, b"A" * 256, 128, 4)
    video = encode_message(9, 1, 0, b"V" * 256, 128, 6)
    # audio chunk, video chunk, audio chunk, video chunk
    wire = audio[:140] + video[:140] + audio[140:] + video[140:]
    got = ChunkDecoder().feed(wire)
    assert [(m.type_id, m.payload) for m in got] == [(8, b"A" * 256), (9, b"V" * 256)]


def test_abort_drops_the_partial_message() -> None:
    partial = encode_message(9, 1, 0, b"X" * 256, 128, 6)[:140]
    fresh = Message(9, 1, 7, b"fresh")
    wire = partial + encode(abort_message(6), 128, 2) + encode(fresh, 128, 6)
    got = ChunkDecoder().feed(wire)
    assert got[-1] == fresh and len(got) == 2


@pytest.mark.parametrize("size", [0, 0x1000000, 0x7FFFFFFF])
def test_chunk_size_out_of_range_is_rejected(size: int) -> None:
    wire = encode_message(1, 0, 0, struct.pack(">I", size), 128, 2)
    with pytest.raises(ProtocolError, match="chunk size"):
        ChunkDecoder().feed(wire)


def test_chunk_size_top_bit_is_masked() -> None:
    decoder = ChunkDecoder()
    decoder.feed(encode_message(1, 0, 0, struct.pack(">I", 0x80001000), 128, 2))
    assert decoder.chunk_size == 0x1000


def test_message_length_above_limit_is_rejected_before_buffering() -> None:
    decoder = ChunkDecoder(max_message_size=1000)
    with pytest.raises(ProtocolError, match="message length 20000 exceeds limit 1000"):
        decoder.feed(header(0, 6, ts=0, length=20000, type_id=9, stream_id=1) + b"x" * 128)


def first_chunk_of_200_byte_message(csid: int) -> bytes:
    wire = encode_message(9, 1, 0, b"x" * 200, 128, csid)
    return wire[: len(wire) - 72 - (1 if csid < 64 else 2)]


def test_too_many_partial_messages_is_rejected() -> None:
    decoder = ChunkDecoder(max_partial_messages=64)
    assert decoder.feed(b"".join(first_chunk_of_200_byte_message(c) for c in range(3, 67))) == []
    assert decoder.buffered == 0
    with pytest.raises(ProtocolError, match="more than 64 partial messages"):
        decoder.feed(first_chunk_of_200_byte_message(100))


@pytest.mark.parametrize("fmt", [2, 3])
def test_chunk_stream_starting_without_full_header_is_rejected(fmt: int) -> None:
    with pytest.raises(ProtocolError, match="no previous header"):
        ChunkDecoder().feed(header(fmt, 5, ts=1 if fmt == 2 else None) + b"x")


def test_length_change_in_the_middle_of_a_message_is_rejected() -> None:
    wire = header(0, 6, ts=0, length=200, type_id=9, stream_id=1) + b"p" * 128
    wire += header(1, 6, ts=0, length=300, type_id=9) + b"q" * 72
    with pytest.raises(ProtocolError, match="length changed"):
        ChunkDecoder().feed(wire)


def test_encode_message_single_chunk_layout() -> None:
    wire = encode_message(8, 1, 0x123456, b"ab", 128, 4)
    assert wire == b"\x04\x12\x34\x56\x00\x00\x02\x08\x01\x00\x00\x00ab"


def test_media_type_ids_and_their_chunk_streams_are_declared_once() -> None:
    from srv.app import packet
    from srv.media import flv
    from srv.rtmp.chunk import CSID_AUDIO, CSID_DATA, CSID_VIDEO, media_csid
    from srv.rtmp.client import ClientSession
    from srv.rtmp.messages import Message, MessageType

    assert (packet.AUDIO, packet.VIDEO, packet.DATA) == (flv.TAG_AUDIO, flv.TAG_VIDEO, flv.TAG_SCRIPT)
    assert packet.AUDIO is flv.TAG_AUDIO is MessageType.AUDIO
    assert packet.VIDEO is flv.TAG_VIDEO is MessageType.VIDEO
    assert packet.DATA is flv.TAG_SCRIPT is MessageType.DATA_AMF0
    # a publishing client and the packets players get put each type on the same chunk stream
    for type_id, csid in ((8, CSID_AUDIO), (9, CSID_VIDEO), (18, CSID_DATA)):
        assert media_csid(type_id) == csid
        assert packet.Packet(type_id, 0, b"\x00\x00").rtmp(128)[0] & 0x3F == csid
        client = ClientSession("live", "rtmp://h/live")
        client.send_media(Message(type_id, 1, 0, b"\x00\x00"))
        assert client.data_to_send()[0] & 0x3F == csid
