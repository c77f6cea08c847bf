"""FLV header/tag encoding and the sans-I/O FlvReader: whole, byte by byte, trailing data."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srv.media.flv import (
    FLV_HEADER,
    TAG_AUDIO,
    TAG_SCRIPT,
    TAG_VIDEO,
    FlvError,
    FlvReader,
    FlvTag,
    TrackGuess,
    encode_tag,
    read_flv_file,
)

TAGS = [
    FlvTag(TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09"),
    FlvTag(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"),
    FlvTag(TAG_AUDIO, 0, b"\xaf\x00\x12\x10"),
    FlvTag(TAG_VIDEO, 40, b"\x17\x01\x00\x00\x00" + bytes(300)),
    FlvTag(TAG_AUDIO, 0x01234567, b"\xaf\x01" + bytes(20)),  # needs the extended byte
    FlvTag(TAG_VIDEO, 0xFFFFFFFF, b""),
]


def stream(tags: list[FlvTag] = TAGS) -> bytes:
    return FLV_HEADER() + b"".join(encode_tag(t.tag_type, t.timestamp, t.payload) for t in tags)


def test_header_flags() -> None:
    assert FLV_HEADER() == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert FLV_HEADER(has_audio=False)[4] == 0x01
    assert FLV_HEADER(has_video=False)[4] == 0x04


def test_encode_tag_layout() -> None:
    tag = encode_tag(TAG_VIDEO, 0x01234567, b"abc")
    assert tag == b"\x09\x00\x00\x03\x23\x45\x67\x01\x00\x00\x00abc" + struct.pack(">I", 14)
    assert encode_tag(TAG_AUDIO, 1 << 32 | 5, b"")[4:8] == b"\x00\x00\x05\x00"  # wraps
    with pytest.raises(ValueError):
        encode_tag(TAG_VIDEO, 0, bytes(1 << 24))


def test_reader_whole_stream() -> None:
    reader = FlvReader()
    assert reader.feed(stream()) == TAGS
    assert reader.header is not None and reader.header.has_audio and reader.header.has_video
    assert reader.pending == 0
    reader.finish()


def test_reader_byte_by_byte() -> None:
    reader = FlvReader()
    tags: list[FlvTag] = []
    for i, byte in enumerate(stream()):
        tags += reader.feed(bytes((byte,)))
        if i < 12:
            assert reader.header is None
    assert tags == TAGS
    reader.finish()


def test_reader_keeps_trailing_partial_tag() -> None:
    data = stream()
    extra = encode_tag(TAG_VIDEO, 80, b"\x27\x01" + bytes(50))
    reader = FlvReader()
    assert reader.feed(data + extra[:20]) == TAGS
    assert reader.pending == 20
    with pytest.raises(FlvError) as failure:
        reader.finish()
    assert failure.value.reason == "truncated"
    assert reader.feed(extra[20:]) == [FlvTag(TAG_VIDEO, 80, b"\x27\x01" + bytes(50))]
    reader.finish()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), max_size=40))
def test_reader_any_split_gives_the_same_tags(cuts: list[int]) -> None:
    data = stream()
    reader = FlvReader()
    tags: list[FlvTag] = []
    pos = 0
    for cut in cuts:
        tags += reader.feed(data[pos : pos + cut])
        pos += cut
    tags += reader.feed(data[pos:])
    assert tags == TAGS


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            FlvTag,
            st.sampled_from([TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT]),
            st.integers(min_value=0, max_value=0xFFFFFFFF),
            st.binary(max_size=200),
        ),
        max_size=10,
    )
)
def test_encode_then_read_round_trips(tags: list[FlvTag]) -> None:
    assert FlvReader().feed(stream(tags)) == tags


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"FLX\x01\x05\x00\x00\x00\x09", "signature"),
        (b"FLV\x01\x05\x00\x00\x00\x03\x00\x00\x00\x00", "data_offset"),
        (b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x07", "previous_tag_size"),
        (FLV_HEADER() + b"\x07" + bytes(10), "tag_type"),
        (FLV_HEADER() + b"\x28" + bytes(10), "encrypted"),
        (FLV_HEADER() + encode_tag(TAG_VIDEO, 0, b"ab")[:-1] + b"\x99", "previous_tag_size"),
    ],
)
def test_reader_errors_name_the_reason(data: bytes, reason: str) -> None:
    reader = FlvReader()
    with pytest.raises(FlvError) as failure:
        reader.feed(data)
    assert failure.value.reason == reason
    assert isinstance(failure.value, ValueError)
    with pytest.raises(FlvError):  # stays failed
        reader.feed(b"")


def test_lax_reader_accepts_wrong_previous_tag_sizes() -> None:
    data = FLV_HEADER() + encode_tag(TAG_VIDEO, 0, b"ab")[:-4] + b"\x00\x00\x00\x00"
    assert FlvReader(check_previous_tag_size=False).feed(data) == [FlvTag(TAG_VIDEO, 0, b"ab")]


def test_header_with_larger_data_offset() -> None:
    data = b"FLV\x01\x01\x00\x00\x00\x0c" + b"xyz" + b"\x00\x00\x00\x00"
    data += encode_tag(TAG_VIDEO, 1, b"v")
    reader = FlvReader()
    assert reader.feed(data) == [FlvTag(TAG_VIDEO, 1, b"v")]
    assert reader.header is not None and not reader.header.has_audio


def test_finish_inside_header_is_truncated() -> None:
    reader = FlvReader()
    reader.feed(b"FLV\x01")
    with pytest.raises(FlvError):
        reader.finish()


def test_read_flv_file(tmp_path: Path) -> None:
    path = tmp_path / "x.flv"
    path.write_bytes(stream())
    assert list(read_flv_file(path, chunk_size=7)) == TAGS
    path.write_bytes(stream()[:-3])
    with pytest.raises(FlvError):
        list(read_flv_file(path))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_reader_on_garbage_raises_only_flv_error(data: bytes) -> None:
    reader = FlvReader()
    try:
        reader.feed(FLV_HEADER() + data)
        reader.feed(data)
    except FlvError:
        pass


def _tag(t: FlvTag) -> bytes:
    return encode_tag(t.tag_type, t.timestamp, t.payload)


META, VSH, ASH = TAGS[0], TAGS[1], TAGS[2]


def _frames(kind: int, count: int, step: int) -> list[bytes]:
    payload = b"\xaf\x01" + bytes(8) if kind == TAG_AUDIO else b"\x27\x01\x00\x00\x00" + bytes(8)
    return [_tag(FlvTag(kind, i * step, payload)) for i in range(count)]


def test_track_guess_waits_for_the_first_frame_and_counts_sequence_headers() -> None:
    g = TrackGuess()
    assert not g.feed(_tag(META)) and not g.feed(_tag(VSH)) and not g.feed(_tag(ASH))
    assert g.feed(_frames(TAG_VIDEO, 1, 40)[0])  # the first frame decides
    assert g.has_audio and g.has_video  # the audio sequence header came before it


@pytest.mark.parametrize("kind", [TAG_AUDIO, TAG_VIDEO])
def test_track_guess_of_a_one_track_stream(kind: int) -> None:
    g = TrackGuess()
    sh = ASH if kind == TAG_AUDIO else VSH
    assert g.feed(b"".join([_tag(META), _tag(sh), *_frames(kind, 3, 23)]))
    assert (g.has_audio, g.has_video) == (kind == TAG_AUDIO, kind == TAG_VIDEO)


def test_track_guess_ignores_a_sequence_header_whose_frames_never_come() -> None:
    # a joining player's GOP cache: 2 s of video frames and no audio frame, yet an audio header
    g = TrackGuess()
    assert g.feed(b"".join([_tag(META), _tag(VSH), _tag(ASH), *_frames(TAG_VIDEO, 50, 40)]))
    assert g.has_video and not g.has_audio
    # one frame in: too early to call the audio track missing
    g = TrackGuess()
    assert g.feed(b"".join([_tag(VSH), _tag(ASH), *_frames(TAG_VIDEO, 1, 40)]))
    assert g.has_video and g.has_audio
