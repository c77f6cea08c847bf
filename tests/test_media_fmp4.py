"""The fMP4 (CMAF) muxer: box nesting and sizes, sample entries, moof/trun fields, then
ffmpeg's FLV muxed into an init segment and keyframe-cut media segments that ffprobe and
ffmpeg read without a word."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from media_tools import (
    av1_enhanced_tags,
    encode_h264_aac_flv,
    ffmpeg_decode_errors,
    ffprobe_packets,
    ffprobe_streams,
    hevc_enhanced_tags,
    opus_enhanced_tags,
)

from srv.media.flv import TAG_AUDIO, TAG_VIDEO, FlvTag, read_flv_file
from srv.media.fmp4 import SAMPLE_NON_SYNC, SAMPLE_SYNC, Fmp4Muxer

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf"}
SAMPLE_ENTRY_HEADER = {b"avc1": 78, b"hvc1": 78, b"av01": 78, b"mp4a": 28, b"Opus": 28}

Box = tuple[bytes, bytes, list["Box"]]  # type, payload, children


def boxes(data: bytes) -> list[Box]:
    """Parse a box sequence; every size must add up exactly (the test of sizes and nesting)."""
    out: list[Box] = []
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8 and pos + size <= len(data), f"{kind!r} of {size} bytes at {pos} overruns"
        payload = data[pos + 8 : pos + size]
        children: list[Box] = []
        if kind in CONTAINERS:
            children = boxes(payload)
        elif kind == b"stsd":
            children = boxes(payload[8:])
        elif kind in SAMPLE_ENTRY_HEADER:
            children = boxes(payload[SAMPLE_ENTRY_HEADER[kind] :])
        elif kind == b"dref":
            children = boxes(payload[8:])
        out.append((kind, payload, children))
        pos += size
    assert pos == len(data)
    return out


def find(tree: list[Box], path: str) -> list[Box]:
    first, _, rest = path.partition("/")
    found = [b for b in tree if b[0] == first.encode()]
    if not rest:
        return found
    return [x for b in found for x in find(b[2], rest)]


def kinds(tree: list[Box]) -> list[bytes]:
    return [b[0] for b in tree]


def trun_samples(payload: bytes) -> tuple[int, list[tuple[int, int, int, int]]]:
    """(data_offset, [(duration, size, flags, composition offset)]) of a trun with all fields."""
    version_flags, count, offset = struct.unpack_from(">IIi", payload)
    assert version_flags == 0x01000F01
    return offset, [struct.unpack_from(">IIIi", payload, 12 + 16 * i) for i in range(count)]


def is_cut(tag: FlvTag) -> bool:
    p = tag.payload
    if tag.tag_type != TAG_VIDEO or p[0] & 0x70 != 0x10:
        return False
    return p[0] & 0x0F in (1, 3) if p[0] & 0x80 else p[1] == 1


def mux(tags: list[FlvTag]) -> tuple[Fmp4Muxer, list[bytes]]:
    """Cut on every keyframe: push it, then take the fragment (the keyframe is held back)."""
    muxer = Fmp4Muxer()
    segments = []
    for tag in tags:
        muxer.push(tag.tag_type, tag.timestamp, tag.payload)
        if is_cut(tag) and (segment := muxer.fragment()):
            segments.append(segment)
    segments.append(muxer.flush())
    return muxer, segments


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fmp4")


@pytest.fixture(scope="module")
def h264_tags(media_dir: Path) -> list[FlvTag]:
    return list(read_flv_file(encode_h264_aac_flv(media_dir / "h264_aac.flv")))


@pytest.fixture(scope="module")
def h264_muxed(h264_tags: list[FlvTag]) -> tuple[bytes, list[bytes]]:
    muxer, segments = mux(h264_tags)
    return muxer.init_segment(), segments


# --- byte level ---------------------------------------------------------------------------


def test_init_segment_nesting_and_sample_entries(
    h264_muxed: tuple[bytes, list[bytes]], h264_tags: list[FlvTag]
) -> None:
    init, _ = h264_muxed
    tree = boxes(init)
    assert kinds(tree) == [b"ftyp", b"moov"]
    assert kinds(tree[1][2]) == [b"mvhd", b"trak", b"trak", b"mvex"]
    assert [struct.unpack_from(">I", b[1], 4)[0] for b in find(tree, "moov/mvex/trex")] == [1, 2]
    video_sh = next(t.payload for t in h264_tags if t.tag_type == TAG_VIDEO)
    audio_sh = next(t.payload for t in h264_tags if t.tag_type == TAG_AUDIO)
    avc1 = find(tree, "moov/trak/mdia/minf/stbl/stsd/avc1")
    assert len(avc1) == 1 and struct.unpack_from(">HH", avc1[0][1], 24) == (320, 240)
    assert find(avc1[0][2], "avcC")[0][1] == video_sh[5:]  # the record as the publisher sent it
    mp4a = find(tree, "moov/trak/mdia/minf/stbl/stsd/mp4a")
    channels, _, _, _, rate = struct.unpack_from(">HHHHI", mp4a[0][1], 16)
    assert (channels, rate >> 16) == (1, 44100)
    esds = find(mp4a[0][2], "esds")[0][1]
    assert esds.endswith(b"\x05\x80\x80\x80" + bytes((len(audio_sh) - 2,)) + audio_sh[2:] + b"\x06\x80\x80\x80\x01\x02")
    timescales = [struct.unpack_from(">I", b[1], 12)[0] for b in find(tree, "moov/trak/mdia/mdhd")]
    assert timescales == [90000, 44100]
    assert [b[1][8:12] for b in find(tree, "moov/trak/mdia/hdlr")] == [b"vide", b"soun"]


def test_media_segments_moof_trun_and_mdat(h264_muxed: tuple[bytes, list[bytes]], h264_tags: list[FlvTag]) -> None:
    _, segments = h264_muxed
    assert len(segments) == 4
    pictures = [t for t in h264_tags if t.tag_type == TAG_VIDEO and t.payload[1] == 1]
    video_samples = []
    for number, segment in enumerate(segments, 1):
        tree = boxes(segment)
        assert kinds(tree) == [b"moof", b"mdat"]
        assert struct.unpack_from(">I", find(tree, "moof/mfhd")[0][1], 4)[0] == number
        moof_size = len(segment) - len(tree[1][1]) - 8
        trafs = find(tree, "moof/traf")
        assert [struct.unpack_from(">I", t[2][0][1], 4)[0] for t in trafs] == [1, 2]  # tfhd track ids
        expected_offset = moof_size + 8
        for traf in trafs:
            offset, samples = trun_samples(find(traf[2], "trun")[0][1])
            assert offset == expected_offset  # the data offset points into the mdat
            expected_offset += sum(s[1] for s in samples)
            if traf is trafs[0]:
                base = struct.unpack_from(">Q", find(traf[2], "tfdt")[0][1], 4)[0]
                data = segment[offset:]
                for duration, size, flags, cts in samples:
                    video_samples.append((base, duration, data[:size], flags, cts))
                    base += duration
                    data = data[size:]
        assert expected_offset == len(segment)
    assert len(video_samples) == len(pictures)  # no sample for the header nor the end of sequence
    for i, (dts, duration, data, flags, cts) in enumerate(video_samples):
        tag = pictures[i]
        assert dts == tag.timestamp * 90
        assert data == tag.payload[5:]
        assert cts == int.from_bytes(tag.payload[2:5], "big", signed=True) * 90
        assert flags == (SAMPLE_SYNC if tag.payload[0] >> 4 == 1 else SAMPLE_NON_SYNC)
        if i + 1 < len(pictures):
            assert duration == (pictures[i + 1].timestamp - tag.timestamp) * 90  # from the next DTS
    assert video_samples[0][3] == SAMPLE_SYNC


def test_a_message_with_the_same_dts_is_part_of_the_picture_not_a_sample(h264_tags: list[FlvTag]) -> None:
    header = next(t for t in h264_tags if t.tag_type == TAG_VIDEO)
    pictures = [t for t in h264_tags if t.tag_type == TAG_VIDEO and t.payload[1] == 1][:3]
    muxer = Fmp4Muxer()
    muxer.push(TAG_VIDEO, 0, header.payload)
    sei = b"\x00\x00\x00\x05\x06\x05\x01\x00\x80"
    muxer.push(TAG_VIDEO, 0, pictures[0].payload)
    muxer.push(TAG_VIDEO, 0, b"\x27\x01\x00\x00\x00" + sei)
    muxer.push(TAG_VIDEO, 0, b"\x17\x02\x00\x00\x00")  # end of sequence: no picture
    muxer.push(TAG_VIDEO, 40, pictures[1].payload)
    tree = boxes(muxer.fragment())
    _, samples = trun_samples(find(tree, "moof/traf/trun")[0][1])
    assert [(s[0], s[1]) for s in samples] == [(3600, len(pictures[0].payload) - 5 + len(sei))]
    assert muxer.fragment() == b""  # the newest sample waits for its duration
    tree = boxes(muxer.flush())
    _, samples = trun_samples(find(tree, "moof/traf/trun")[0][1])
    assert [s[0] for s in samples] == [3600]  # the last sample lasts as long as the one before


def test_opus_sample_entry_has_dops_from_the_opus_head() -> None:
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, -256, 0)
    muxer = Fmp4Muxer()
    muxer.push(TAG_AUDIO, 0, b"\x90Opus" + head)
    for i in range(3):
        muxer.push(TAG_AUDIO, i * 20, b"\x91Opus" + b"\xfc\xff\xfe")
    tree = boxes(muxer.init_segment())
    opus = find(tree, "moov/trak/mdia/minf/stbl/stsd/Opus")
    assert len(opus) == 1 and struct.unpack_from(">H", opus[0][1], 16)[0] == 2
    assert struct.unpack_from(">I", opus[0][1], 24)[0] >> 16 == 48000
    assert find(opus[0][2], "dOps")[0][1] == struct.pack(">BBHIhB", 0, 2, 312, 48000, -256, 0)
    assert [struct.unpack_from(">I", b[1], 12)[0] for b in find(tree, "moov/trak/mdia/mdhd")] == [48000]
    _, samples = trun_samples(find(boxes(muxer.fragment()), "moof/traf/trun")[0][1])
    assert [(s[0], s[1], s[2]) for s in samples] == [(960, 3, SAMPLE_SYNC)] * 2


def test_av1_sample_entry_carries_the_av1c_record_and_metadata_size() -> None:
    from srv.rtmp import amf0

    muxer = Fmp4Muxer()
    muxer.push(18, 0, amf0.encode("onMetaData", {"width": 640.0, "height": 360.0}))
    record = b"\x81\x04\x0c\x00\x0a\x0b\x00\x00\x00\x24\xc4\xff\xdf\x00\x68\x02"
    muxer.push(TAG_VIDEO, 0, b"\x90av01" + record)
    tree = boxes(muxer.init_segment())
    av01 = find(tree, "moov/trak/mdia/minf/stbl/stsd/av01")
    assert struct.unpack_from(">HH", av01[0][1], 24) == (640, 360)
    assert find(av01[0][2], "av1C")[0][1] == record


# --- ffmpeg reads it ----------------------------------------------------------------------


def write_segments(media_dir: Path, name: str, init: bytes, segments: list[bytes]) -> tuple[list[Path], Path]:
    """Each media segment behind the init segment (what a player fetches), and the whole."""
    paths = []
    for i, segment in enumerate(segments):
        path = media_dir / f"{name}-{i}.mp4"
        path.write_bytes(init + segment)
        paths.append(path)
    whole = media_dir / f"{name}.mp4"
    whole.write_bytes(init + b"".join(segments))
    return paths, whole


def test_ffprobe_and_ffmpeg_read_init_plus_segments(h264_muxed: tuple[bytes, list[bytes]], media_dir: Path) -> None:
    paths, whole = write_segments(media_dir, "h264", *h264_muxed)
    for path in [*paths, whole]:
        streams = ffprobe_streams(path)
        assert [s["codec_name"] for s in streams] == ["h264", "aac"], path
        assert (streams[0]["width"], streams[0]["height"]) == (320, 240)
        assert (streams[1]["sample_rate"], streams[1]["channels"]) == ("44100", 1)
        assert ffmpeg_decode_errors(path) == "", path


def test_segments_start_on_keyframes_and_pts_runs_on_across_boundaries(
    h264_muxed: tuple[bytes, list[bytes]], media_dir: Path
) -> None:
    paths, whole = write_segments(media_dir, "h264-pts", *h264_muxed)
    previous_end = None
    for path in paths:
        video = ffprobe_packets(path, "v")
        assert video[0][2], f"{path.name} does not start with a keyframe"
        pts = sorted(p[0] for p in video)
        assert all(b - a == 3600 for a, b in zip(pts, pts[1:], strict=False))
        if previous_end is not None:
            assert pts[0] - previous_end == 3600, path.name
        previous_end = pts[-1]
    audio = ffprobe_packets(whole, "a")
    assert all(1000 <= b[1] - a[1] <= 1100 for a, b in zip(audio, audio[1:], strict=False))  # 1024 +- ms rounding


def test_hevc_goes_in_as_hvc1_and_decodes(media_dir: Path) -> None:
    muxer, segments = mux(hevc_enhanced_tags(media_dir))
    init = muxer.init_segment()
    hvc1 = find(boxes(init), "moov/trak/mdia/minf/stbl/stsd/hvc1")
    assert len(hvc1) == 1 and find(hvc1[0][2], "hvcC")
    paths, whole = write_segments(media_dir, "hevc", init, segments)
    assert len(paths) == 2
    for path in [*paths, whole]:
        streams = ffprobe_streams(path)
        assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [("hevc", 322, 182)]
        assert ffmpeg_decode_errors(path) == "", path
        assert ffprobe_packets(path, "v")[0][2]


def test_av1_and_opus_go_in_as_av01_and_opus_and_decode(media_dir: Path) -> None:
    video, audio = av1_enhanced_tags(media_dir), opus_enhanced_tags(media_dir)
    tags = sorted([*video, *audio], key=lambda t: (t.timestamp, t.tag_type != TAG_VIDEO))
    muxer, segments = mux(tags)
    init = muxer.init_segment()
    entries = find(boxes(init), "moov/trak/mdia/minf/stbl/stsd")
    assert [e[2][0][0] for e in entries] == [b"av01", b"Opus"]
    paths, whole = write_segments(media_dir, "av1-opus", init, segments)
    assert len(paths) == 2
    for path in [*paths, whole]:
        streams = ffprobe_streams(path)
        assert [s["codec_name"] for s in streams] == ["av1", "opus"], path
        assert (streams[0]["width"], streams[0]["height"]) == (320, 240)
        assert (streams[1]["sample_rate"], streams[1]["channels"]) == ("48000", 2)
        assert ffmpeg_decode_errors(path) == "", path
        assert ffprobe_packets(path, "v")[0][2]


def test_a_dts_that_does_not_advance_is_dropped_not_a_negative_duration(h264_tags: list[FlvTag]) -> None:
    header, *frames = [t for t in h264_tags if t.tag_type == TAG_AUDIO][:5]
    muxer = Fmp4Muxer()
    for tag in (header, frames[0], frames[1], frames[1], frames[2]):  # a repeated audio frame
        muxer.push(tag.tag_type, tag.timestamp, tag.payload)
    muxer.push(TAG_AUDIO, frames[1].timestamp - 5, frames[3].payload)  # back in time
    _, samples = trun_samples(find(boxes(muxer.flush()), "moof/traf/trun")[0][1])
    assert [s[1] for s in samples] == [len(f.payload) - 2 for f in frames[:3]]
    assert all(1000 <= s[0] <= 1100 for s in samples)  # ~1024 samples at 44.1 kHz
