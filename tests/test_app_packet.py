"""What a batch of packets puts on the wire: `wire_parts` joined is exactly the packets' own
encodings joined, for every encoding and every shape of message (one chunk or many, extended
timestamps, another message stream id, an encoding already cached on the packet)."""

from __future__ import annotations

import random

from srv.app.packet import AUDIO, DATA, FLV, VIDEO, Packet, rtmp_encoding, wire_parts
from srv.rtmp.chunk import ChunkDecoder, encode_message, one_chunk_header


def random_packets(rng: random.Random, n: int) -> list[Packet]:
    out = []
    for _ in range(n):
        kind = rng.choice([AUDIO, VIDEO, DATA])
        size = rng.choice([0, 1, 127, 128, 129, 4095, 4096, 4097, rng.randrange(20000), 60001])
        ts = rng.choice([0, 40, rng.randrange(0xFFFFFF), 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF])
        out.append(Packet(kind, ts, rng.randbytes(size)))
    return out


def test_wire_parts_join_to_the_packets_encodings() -> None:
    rng = random.Random(18)
    for _ in range(40):
        packets = random_packets(rng, rng.randrange(1, 30))
        for enc in (FLV, rtmp_encoding(128), rtmp_encoding(4096), rtmp_encoding(60000),
                    rtmp_encoding(4096, stream_id=3)):
            for p in rng.sample(packets, len(packets) // 3):
                p.encoded(rng.choice([enc, rtmp_encoding(128)]))  # some already cached, some at another size
            want = b"".join(p.encoded(enc) for p in packets)
            assert b"".join(wire_parts(packets, enc)) == want


def test_one_chunk_header_and_payload_are_the_message_encoding_and_decode_back() -> None:
    decoder = ChunkDecoder()
    decoder.set_chunk_size(60000)
    for type_id, sid, ts, csid in [(9, 1, 0, 6), (8, 1, 0xFFFFFE, 4), (18, 0x01020304, 12345, 5), (9, 0, 7, 63)]:
        payload = bytes(range(200))
        head = one_chunk_header(type_id, sid, ts, len(payload), csid)
        assert head is not None
        assert head + payload == encode_message(type_id, sid, ts, payload, 60000, csid)
        (msg,) = decoder.feed(head + payload)
        assert (msg.type_id, msg.stream_id, msg.timestamp, msg.payload) == (type_id, sid, ts, payload)
    # what one fmt 0 header of 12 bytes cannot say: left to encode_message
    assert one_chunk_header(9, 1, 0xFFFFFF, 10, 6) is None
    assert one_chunk_header(9, 1, 0, 10, 64) is None
