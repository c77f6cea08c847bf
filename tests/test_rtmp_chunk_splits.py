"""The chunk decoder against random chunk streams cut at random places.

A test-side encoder writes random messages the way any peer may: interleaved chunk streams,
fmt 0-3 headers compressed against each stream's previous message, 1- to 3-byte basic headers,
extended timestamps (repeated on fmt 3 chunks), Set Chunk Size messages changing the size of
the chunks that follow them, messages of every length around the chunk size (including empty
ones). What it must decode to is known by construction; the decoder is fed the bytes whole,
one byte at a time and cut at random places, so every fast path (a whole message in one read,
a chunk split across reads, a header split across reads) is checked against the same answer.
"""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from srv.rtmp.chunk import ChunkDecoder
from srv.rtmp.messages import Message

_EXT = 0xFFFFFF


class _Stream:
    """A chunk stream as the decoder will see it: what the next header compresses against."""

    def __init__(self) -> None:
        self.seen = False
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.ext: int | None = None  # the extended field of the last fmt 0-2 header


def _basic(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def _ts_field(value: int) -> tuple[bytes, int | None]:
    if value >= _EXT:
        return b"\xff\xff\xff", value
    return value.to_bytes(3, "big"), None


def random_chunk_stream(rng: random.Random) -> tuple[bytes, list[Message]]:
    """Random chunk-stream bytes and the messages, in completion order, they decode to."""
    streams: dict[int, _Stream] = {}
    chunk_size = 128
    out = bytearray()
    expected: list[Message] = []
    # messages still being sent: csid -> (message, bytes of its payload sent)
    active: dict[int, tuple[Message, int]] = {}
    csids = [2, 3, 4, 5, 6, 7, 63, 64, 300, 319, 320, 1000]
    for _ in range(rng.randint(1, 40)):
        # finish some chunks of messages in progress, in random order: interleaving
        while active and rng.random() < 0.6:
            csid = rng.choice(list(active))
            _continue(out, streams[csid], csid, active, chunk_size, expected)
        if rng.random() < 0.1 and 2 not in active:
            # Set Chunk Size, sent whole in chunks of the old size; the chunks after it use the new
            new_size = rng.choice([1, 2, 7, 64, 128, 129, 4096, 60000])
            msg = Message(1, 0, rng.randrange(1000), struct.pack(">I", new_size))
            _start(out, streams.setdefault(2, _Stream()), 2, msg, rng, active, chunk_size, expected)
            while 2 in active:
                _continue(out, streams[2], 2, active, chunk_size, expected)
            chunk_size = new_size
            continue
        csid = rng.choice([c for c in csids if c not in active] or [None])  # type: ignore[list-item]
        if csid is None:
            continue
        length = rng.choice([0, 1, 5, chunk_size - 1, chunk_size, chunk_size + 1, 2 * chunk_size + 3,
                             rng.randrange(1, 3000)])
        length = max(0, min(length, 5000))
        ts = rng.choice([0, 40, rng.randrange(_EXT), _EXT - 1, _EXT, _EXT + 5, 0xFFFFFFFF])
        msg = Message(rng.choice([8, 9, 18, 20]), rng.choice([0, 1, 1, 1, 0x01020304]), ts,
                      rng.randbytes(length))
        _start(out, streams.setdefault(csid, _Stream()), csid, msg, rng, active, chunk_size, expected)
    while active:
        csid = rng.choice(list(active))
        _continue(out, streams[csid], csid, active, chunk_size, expected)
    return bytes(out), expected


def _start(out: bytearray, s: _Stream, csid: int, msg: Message, rng: random.Random,
           active: dict[int, tuple[Message, int]], chunk_size: int, expected: list[Message]) -> None:
    """Write the first chunk of `msg`, with the most compressed header a random peer would use."""
    delta = (msg.timestamp - s.timestamp) & 0xFFFFFFFF
    fmts = [0]
    if s.seen and msg.stream_id == s.stream_id:
        fmts.append(1)
        if len(msg.payload) == s.length and msg.type_id == s.type_id:
            fmts.append(2)
            if delta == s.delta:
                fmts.append(3)
    fmt = rng.choice(fmts)
    head = bytearray(_basic(fmt, csid))
    n = len(msg.payload)
    if fmt == 0:
        field, ext = _ts_field(msg.timestamp)
        head += field + n.to_bytes(3, "big") + bytes([msg.type_id]) + msg.stream_id.to_bytes(4, "little")
        s.delta = msg.timestamp
    elif fmt == 1:
        field, ext = _ts_field(delta)
        head += field + n.to_bytes(3, "big") + bytes([msg.type_id])
        s.delta = delta
    elif fmt == 2:
        field, ext = _ts_field(delta)
        head += field
        s.delta = delta
    else:
        ext = s.ext  # fmt 3 repeats the extended field of the last header that had one
    if ext is not None:
        head += struct.pack(">I", ext)
    if fmt < 3:
        s.ext = ext
    s.seen = True
    s.timestamp, s.length, s.type_id, s.stream_id = msg.timestamp, n, msg.type_id, msg.stream_id
    take = min(n, chunk_size)
    out += head + msg.payload[:take]
    if take == n:
        expected.append(msg)
    else:
        active[csid] = (msg, take)


def _continue(out: bytearray, s: _Stream, csid: int, active: dict[int, tuple[Message, int]],
              chunk_size: int, expected: list[Message]) -> None:
    msg, sent = active[csid]
    take = min(len(msg.payload) - sent, chunk_size)
    out += _basic(3, csid) + (struct.pack(">I", s.ext) if s.ext is not None else b"")
    out += msg.payload[sent:sent + take]
    if sent + take == len(msg.payload):
        del active[csid]
        expected.append(msg)
    else:
        active[csid] = (msg, sent + take)


def decode(data: bytes, cuts: list[int]) -> list[Message]:
    decoder = ChunkDecoder()
    got: list[Message] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        got += decoder.feed(data[start:cut])
        start = cut
    assert decoder.buffered == 0 and decoder.partial_bytes == 0
    return got


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ncuts=st.integers(0, 60))
def test_random_chunk_streams_decode_the_same_however_the_reads_cut_them(seed: int, ncuts: int) -> None:
    rng = random.Random(seed)
    data, expected = random_chunk_stream(rng)
    assert decode(data, []) == expected
    cuts = [rng.randrange(len(data) + 1) for _ in range(ncuts)]
    assert decode(data, cuts) == expected


def test_random_chunk_streams_decode_fed_one_byte_at_a_time() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        data, expected = random_chunk_stream(rng)
        assert decode(data, list(range(len(data)))) == expected


def test_reads_that_cut_right_after_a_whole_message_keep_the_rest_for_the_next_read() -> None:
    """Reads that end exactly on message boundaries, mid-header and mid-payload, in one stream."""
    rng = random.Random(7)
    data, expected = random_chunk_stream(rng)
    for cut in range(0, len(data), max(1, len(data) // 97)):
        assert decode(data, [cut]) == expected



def decode_with_media_callback(data: bytes, cuts: list[int]) -> list[tuple[int, int, bytes]]:
    """Like `decode`, audio and video handed to a callback: each read's callbacks, then the
    messages it returned, must be the messages of that read in the order they were sent."""
    decoder = ChunkDecoder()
    got: list[tuple[int, int, bytes]] = []
    calls = 0
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        called: list[tuple[int, int, bytes]] = []
        returned = decoder.feed(data[start:cut], lambda t, ts, p, into=called: into.append((t, ts, p)))
        start = cut
        calls += len(called)
        assert all(t in (8, 9) for t, _, _ in called)
        # media go to the callback only until the first other message: from it on, all is returned
        assert not returned or returned[0].type_id not in (8, 9)
        got += called + [(m.type_id, m.timestamp, m.payload) for m in returned]
    assert decoder.media_delivered == calls
    assert decoder.buffered == 0 and decoder.partial_bytes == 0
    return got


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ncuts=st.integers(0, 60))
def test_media_handed_to_a_callback_keep_their_order_with_the_returned_messages(seed: int, ncuts: int) -> None:
    """The publisher's hot path (audio and video straight to the source) sees every message
    the plain decode returns, in the same order, however the reads cut the stream."""
    rng = random.Random(seed)
    data, expected = random_chunk_stream(rng)
    want = [(m.type_id, m.timestamp, m.payload) for m in expected]
    assert decode_with_media_callback(data, []) == want
    cuts = [rng.randrange(len(data) + 1) for _ in range(ncuts)]
    assert decode_with_media_callback(data, cuts) == want
    assert decode_with_media_callback(data, list(range(0, len(data), 7))) == want
