"""The MPEG-TS muxer: byte-level checks of what HLS players rely on (PSI with right CRCs,
continuity counters across segments, PCR, ADTS, AUD and parameter sets before IDRs), then
ffmpeg's FLV muxed into keyframe-cut segments that ffprobe and ffmpeg read without a word."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from media_tools import (
    encode_h264_aac_flv,
    ffmpeg_decode_errors,
    ffprobe_packets,
    ffprobe_streams,
    hevc_enhanced_tags,
)

from srv.media.audio_config import adts_fields
from srv.media.codec import video_is_keyframe, video_is_sequence_header
from srv.media.flv import TAG_AUDIO, TAG_VIDEO, FlvTag, read_flv_file
from srv.media.mpegts import (
    PID_AUDIO,
    PID_PAT,
    PID_PMT,
    PID_VIDEO,
    TsMuxer,
    UnsupportedCodec,
    crc32_mpeg2,
    pat_section,
)


@dataclass
class TsPacket:
    pid: int
    start: bool  # payload_unit_start_indicator
    cc: int
    has_payload: bool
    adaptation: bytes  # after the length byte
    payload: bytes

    @property
    def pcr(self) -> int | None:
        if len(self.adaptation) >= 7 and self.adaptation[0] & 0x10:
            a = self.adaptation
            return (a[1] << 25) | (a[2] << 17) | (a[3] << 9) | (a[4] << 1) | (a[5] >> 7)
        return None

    @property
    def random_access(self) -> bool:
        return bool(self.adaptation) and bool(self.adaptation[0] & 0x40)


def ts_packets(data: bytes) -> list[TsPacket]:
    assert len(data) % 188 == 0
    packets = []
    for pos in range(0, len(data), 188):
        p = data[pos : pos + 188]
        assert p[0] == 0x47
        control = (p[3] >> 4) & 3
        body = 4
        adaptation = b""
        if control & 2:
            length = p[4]
            adaptation = p[5 : 5 + length]
            body = 5 + length
        assert body <= 188
        packets.append(TsPacket(((p[1] & 0x1F) << 8) | p[2], bool(p[1] & 0x40), p[3] & 0x0F,
                                bool(control & 1), adaptation, p[body:] if control & 1 else b""))
    return packets


def pes_units(packets: list[TsPacket], pid: int) -> list[bytes]:
    units: list[bytearray] = []
    for p in packets:
        if p.pid != pid:
            continue
        if p.start:
            units.append(bytearray())
        units[-1] += p.payload
    return [bytes(u) for u in units]


def pes_timestamps(pes: bytes) -> tuple[int, int]:
    """(pts, dts) of a PES header."""
    def stamp(b: bytes) -> int:
        return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
    assert pes[:3] == b"\x00\x00\x01"
    pts = stamp(pes[9:14])
    return pts, stamp(pes[14:19]) if pes[7] & 0x40 else pts


def pes_payload(pes: bytes) -> bytes:
    return pes[9 + pes[8] :]


def section_of(packet: TsPacket) -> bytes:
    pointer = packet.payload[0]
    rest = packet.payload[1 + pointer :]
    length = ((rest[1] & 0x0F) << 8) | rest[2]
    return rest[: 3 + length]


def is_cut(tag: FlvTag) -> bool:
    """A keyframe picture: not a sequence header, nor an end of sequence (flagged "key" too)."""
    p = tag.payload
    if tag.tag_type != TAG_VIDEO or not video_is_keyframe(p) or video_is_sequence_header(p):
        return False
    return p[0] & 0x0F in (1, 3) if p[0] & 0x80 else p[1] == 1


def mux_segments(tags: list[FlvTag]) -> list[bytes]:
    """Cut on every keyframe (after the first), as the HLS writer will: PAT/PMT first."""
    muxer = TsMuxer()
    segments: list[bytearray] = [bytearray()]
    started = False
    for tag in tags:
        if is_cut(tag) and muxer.frames.video is not None and started:
            segments.append(bytearray(muxer.start_segment()))
        started = started or is_cut(tag)
        segments[-1] += muxer.push(tag.tag_type, tag.timestamp, tag.payload)
    return [bytes(s) for s in segments]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mpegts")


@pytest.fixture(scope="module")
def h264_tags(media_dir: Path) -> list[FlvTag]:
    return list(read_flv_file(encode_h264_aac_flv(media_dir / "h264_aac.flv")))


@pytest.fixture(scope="module")
def h264_segments(h264_tags: list[FlvTag], media_dir: Path) -> list[Path]:
    paths = []
    for i, data in enumerate(mux_segments(h264_tags)):
        path = media_dir / f"seg-{i}.ts"
        path.write_bytes(data)
        paths.append(path)
    return paths


# --- byte level ---------------------------------------------------------------------------


def test_crc32_mpeg2_is_the_standard_one() -> None:
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # the catalogued check value
    assert crc32_mpeg2(pat_section()) == 0  # a section followed by its CRC checks to zero


def test_each_segment_starts_with_pat_and_pmt_with_valid_crcs(h264_segments: list[Path]) -> None:
    assert len(h264_segments) == 4  # 4 s, a keyframe every second
    for path in h264_segments:
        packets = ts_packets(path.read_bytes())
        assert [p.pid for p in packets[:2]] == [PID_PAT, PID_PMT]
        pat, pmt = section_of(packets[0]), section_of(packets[1])
        assert crc32_mpeg2(pat) == 0 and crc32_mpeg2(pmt) == 0
        assert pat[0] == 0 and int.from_bytes(pat[10:12], "big") & 0x1FFF == PID_PMT
        assert pmt[0] == 2
        assert int.from_bytes(pmt[8:10], "big") & 0x1FFF == PID_VIDEO  # PCR PID
        streams = [(pmt[i], int.from_bytes(pmt[i + 1 : i + 3], "big") & 0x1FFF) for i in (12, 17)]
        assert streams == [(0x1B, PID_VIDEO), (0x0F, PID_AUDIO)]


def test_continuity_counters_run_on_across_segments(h264_segments: list[Path]) -> None:
    packets = [p for path in h264_segments for p in ts_packets(path.read_bytes())]
    last: dict[int, int] = {}
    for p in packets:
        assert p.has_payload
        if p.pid in last:
            assert p.cc == (last[p.pid] + 1) % 16, f"PID {p.pid:#x}"
        last[p.pid] = p.cc
    second = ts_packets(h264_segments[1].read_bytes())
    assert second[0].cc == 1  # the PAT's counter did not start again at 0


def test_pcr_on_the_video_pid_at_every_frame_equals_its_dts(h264_segments: list[Path]) -> None:
    packets = ts_packets(b"".join(p.read_bytes() for p in h264_segments))
    starts = [p for p in packets if p.pid == PID_VIDEO and p.start]
    assert starts and all(p.pcr is not None for p in starts)
    units = pes_units(packets, PID_VIDEO)
    assert [p.pcr for p in starts] == [pes_timestamps(u)[1] for u in units]
    assert not any(p.pcr is not None for p in packets if p.pid == PID_AUDIO)


def test_keyframes_have_aud_parameter_sets_and_random_access(
    h264_segments: list[Path], h264_tags: list[FlvTag]
) -> None:
    keys = 0
    for path in h264_segments:
        packets = ts_packets(path.read_bytes())
        starts = [p for p in packets if p.pid == PID_VIDEO and p.start]
        for packet, unit in zip(starts, pes_units(packets, PID_VIDEO), strict=True):
            es = pes_payload(unit)
            assert es.startswith(b"\x00\x00\x00\x01\x09\xf0")  # AUD on every picture
            nal_types = [es[i + 4] & 0x1F for i in range(len(es) - 4) if es[i : i + 4] == b"\x00\x00\x00\x01"]
            if 5 in nal_types:  # IDR
                keys += 1
                assert nal_types[:3] == [9, 7, 8] and packet.random_access
            else:
                assert 7 not in nal_types and not packet.random_access
        assert starts[0].random_access  # the segment starts on a keyframe
    assert keys == sum(1 for t in h264_tags if is_cut(t)) == 4


def test_adts_headers_repeat_the_audio_specific_config(h264_segments: list[Path], h264_tags: list[FlvTag]) -> None:
    asc = next(t.payload[2:] for t in h264_tags if t.tag_type == TAG_AUDIO)
    raw = [t.payload[2:] for t in h264_tags if t.tag_type == TAG_AUDIO][1:]
    packets = [p for path in h264_segments for p in ts_packets(path.read_bytes())]
    frames = [pes_payload(u) for u in pes_units(packets, PID_AUDIO)]
    assert len(frames) == len(raw)
    for frame, body in zip(frames, raw, strict=True):
        h = frame[:7]
        assert h[0] == 0xFF and h[1] == 0xF1  # sync, MPEG-4, no CRC
        assert h[2] >> 6 == 1  # profile: object type 2 (LC) - 1
        assert (h[2] >> 2) & 0x0F == 4  # 44100 Hz
        assert ((h[2] & 1) << 2) | (h[3] >> 6) == 1  # mono
        assert ((h[3] & 3) << 11) | (h[4] << 3) | (h[5] >> 5) == 7 + len(body)
        assert frame[7:] == body
    assert adts_fields(asc) == (1, 4, 1)


def test_he_aac_is_written_as_its_lc_core() -> None:
    # HE-AAC explicit SBR: object type 5, core 22050 Hz (index 7), stereo, extension 44100 (4), LC.
    he = bytes((0x2B, 0x92, 0x08, 0x00))
    assert adts_fields(he) == (1, 7, 2)
    assert adts_fields(b"\x17\x80\x00\x00\x00\x00") is None  # explicit 24-bit rate: no ADTS form


def test_audio_only_stream_carries_pcr_on_audio(h264_tags: list[FlvTag]) -> None:
    muxer = TsMuxer()
    data = b"".join(muxer.push(t.tag_type, t.timestamp, t.payload) for t in h264_tags if t.tag_type == TAG_AUDIO)
    packets = ts_packets(data)
    pmt = section_of(packets[1])
    assert int.from_bytes(pmt[8:10], "big") & 0x1FFF == PID_AUDIO
    assert all(p.pcr is not None for p in packets if p.pid == PID_AUDIO and p.start)
    assert not any(p.pid == PID_VIDEO for p in packets)


def test_a_track_appearing_later_gets_a_new_pmt_version(h264_tags: list[FlvTag]) -> None:
    muxer = TsMuxer()
    video = [t for t in h264_tags if t.tag_type == TAG_VIDEO]
    audio = [t for t in h264_tags if t.tag_type == TAG_AUDIO]
    first = ts_packets(b"".join(muxer.push(t.tag_type, t.timestamp, t.payload) for t in video[:3]))
    then = ts_packets(b"".join(muxer.push(t.tag_type, t.timestamp, t.payload) for t in audio[:3]))
    assert [p.pid for p in then[:2]] == [PID_PAT, PID_PMT]
    versions = [(section_of(p)[5] >> 1) & 0x1F for p in (first[1], then[1])]
    assert versions == [0, 1]
    assert len(section_of(then[1])) == len(section_of(first[1])) + 5  # one more stream


@pytest.mark.parametrize(
    ("tag_type", "sequence_header", "codec"),
    [
        (TAG_VIDEO, b"\x90av01\x81\x00\x0c\x00", "AV1"),
        (TAG_AUDIO, b"\x90Opus" + b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00", "Opus"),
    ],
)
def test_av1_and_opus_are_refused_with_a_clear_error(tag_type: int, sequence_header: bytes, codec: str) -> None:
    muxer = TsMuxer()
    assert muxer.push(tag_type, 0, sequence_header) == b""
    frame = (b"\x91av01" if tag_type == TAG_VIDEO else b"\x91Opus") + b"\x12\x00\x0a"
    with pytest.raises(UnsupportedCodec, match=f"{codec} .* MPEG-TS .*fMP4"):
        muxer.push(tag_type, 0, frame)
    with pytest.raises(UnsupportedCodec):
        muxer.start_segment()


def test_garbage_and_frames_before_headers_give_no_bytes_and_no_exception(h264_tags: list[FlvTag]) -> None:
    muxer = TsMuxer()
    frame = next(t for t in h264_tags if is_cut(t))
    assert muxer.push(TAG_VIDEO, 0, frame.payload) == b""  # no sequence header yet
    rng = os.urandom(4096)
    for i in range(0, 4000, 37):
        for tag_type in (TAG_AUDIO, TAG_VIDEO, 18):
            payload = bytes((0x17, 0x01)) + rng[i : i + 40] if i % 2 else rng[i : i + 40]
            muxer.push(tag_type, i, payload)
    header = next(t for t in h264_tags if t.tag_type == TAG_VIDEO)
    muxer.push(TAG_VIDEO, 0, header.payload)
    truncated = frame.payload[:5] + b"\x00\x00\xff\xff" + frame.payload[9:40]  # NAL length past the end
    muxer.push(TAG_VIDEO, 0, truncated)  # must not raise
    assert muxer.push(TAG_VIDEO, 40, frame.payload)


# --- ffmpeg reads it ----------------------------------------------------------------------


def test_ffprobe_and_ffmpeg_read_every_segment_and_the_whole(h264_segments: list[Path], media_dir: Path) -> None:
    whole = media_dir / "whole.ts"
    whole.write_bytes(b"".join(p.read_bytes() for p in h264_segments))
    for path in [*h264_segments, whole]:
        streams = ffprobe_streams(path)
        assert [s["codec_name"] for s in streams] == ["h264", "aac"], path
        assert (streams[0]["width"], streams[0]["height"]) == (320, 240)
        assert (streams[1]["sample_rate"], streams[1]["channels"]) == ("44100", 1)
        assert ffmpeg_decode_errors(path) == "", path


def test_segments_start_on_keyframes_and_pts_runs_on_across_boundaries(h264_segments: list[Path]) -> None:
    previous_end = None
    for path in h264_segments:
        video = ffprobe_packets(path, "v")
        assert video[0][2], f"{path.name} does not start with a keyframe"
        pts = sorted(p[0] for p in video)
        assert all(b - a == 3600 for a, b in zip(pts, pts[1:], strict=False))  # 25 fps, 90 kHz
        if previous_end is not None:
            assert pts[0] - previous_end == 3600, path.name  # within one frame of the last one
        previous_end = pts[-1]
        audio = ffprobe_packets(path, "a")
        assert all(0 < b[1] - a[1] <= 2 * 2090 for a, b in zip(audio, audio[1:], strict=False))


def test_hevc_goes_in_as_stream_type_0x24_and_decodes(media_dir: Path) -> None:
    segments = mux_segments(hevc_enhanced_tags(media_dir))
    assert len(segments) == 2
    for i, data in enumerate(segments):
        packets = ts_packets(data)
        pmt = section_of(packets[1])
        assert (pmt[12], int.from_bytes(pmt[13:15], "big") & 0x1FFF) == (0x24, PID_VIDEO)
        es = pes_payload(pes_units(packets, PID_VIDEO)[0])
        nal_types = [(es[i + 4] >> 1) & 0x3F for i in range(len(es) - 4) if es[i : i + 4] == b"\x00\x00\x00\x01"]
        assert nal_types[:4] == [35, 32, 33, 34]  # AUD, VPS, SPS, PPS before the IRAP picture
        path = media_dir / f"hevc-{i}.ts"
        path.write_bytes(data)
        streams = ffprobe_streams(path)
        assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [("hevc", 322, 182)]
        assert ffmpeg_decode_errors(path) == ""
        assert ffprobe_packets(path, "v")[0][2]
