"""Codec sniffing on hand-built legacy FLV and Enhanced RTMP (v1/v2) message bodies."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srv.media.audio_config import (
    parse_audio_specific_config,
    parse_flac_streaminfo,
    parse_opus_head,
)
from srv.media.codec import (
    AudioPacketType,
    FrameKind,
    VideoPacketType,
    audio_is_sequence_header,
    parse_audio,
    parse_video,
    video_is_keyframe,
    video_is_sequence_header,
)
from srv.media.video_config import (
    avc_level_name,
    avc_profile_name,
    hevc_level_name,
    parse_avc_sequence_header,
    parse_avc_sps,
    parse_hevc_sequence_header,
    parse_video_sequence_header,
)


class BitWriter:
    """Just enough of an H.264 bitstream writer to build SPS test vectors."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        length = code.bit_length()
        return self.u(length - 1, 0).u(length, code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bytes(self) -> bytes:
        bits = self.bits + [1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def avc_sps(
    width_mbs: int,
    height_units: int,
    profile: int = 66,
    level: int = 30,
    crop: tuple[int, int, int, int] | None = None,
    frame_mbs_only: int = 1,
    chroma_format_idc: int = 1,
    scaling_lists: bool = False,
    poc_type: int = 0,
) -> bytes:
    w = BitWriter().u(8, profile).u(8, 0).u(8, level).ue(0)
    if profile in (100, 110, 122, 244):
        w.ue(chroma_format_idc)
        if chroma_format_idc == 3:
            w.u(1, 0)
        w.ue(0).ue(0).u(1, 0)
        w.u(1, 1 if scaling_lists else 0)
        if scaling_lists:
            for i in range(8 if chroma_format_idc != 3 else 12):
                w.u(1, 1)
                for _ in range(16 if i < 6 else 64):
                    w.se(1)
    w.ue(0).ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    elif poc_type == 1:
        w.u(1, 0).se(-1).se(2).ue(2).se(1).se(-3)
    w.ue(1).u(1, 0).ue(width_mbs - 1).ue(height_units - 1).u(1, frame_mbs_only)
    if not frame_mbs_only:
        w.u(1, 0)
    w.u(1, 1)
    if crop:
        w.u(1, 1)
        for c in crop:
            w.ue(c)
    else:
        w.u(1, 0)
    w.u(1, 0)  # vui_parameters_present_flag
    rbsp = w.bytes()
    # Emulation prevention, as an encoder would add it.
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return b"\x67" + bytes(out)


def avc_record(sps: bytes) -> bytes:
    return (
        bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1))
        + struct.pack(">H", len(sps))
        + sps
        + (b"\x01\x00\x04\x68\xce\x38\x80")
    )


def legacy_avc_sh(sps: bytes) -> bytes:
    return b"\x17\x00\x00\x00\x00" + avc_record(sps)


SPS_320x240 = avc_sps(20, 15)
AVC_SH = legacy_avc_sh(SPS_320x240)
AVC_KEY = b"\x17\x01\x00\x00\x28" + b"\x00\x00\x00\x05\x65\x88\x84\x00\x00"
AVC_INTER = b"\x27\x01\x00\x00\x50" + b"\x00\x00\x00\x03\x41\x9a\x02"
AVC_EOS = b"\x17\x02\x00\x00\x00"
AVC_COMMAND = b"\x57\x00"  # video info/command frame: seek start


def ex_video(frame: int, packet_type: int, fourcc: bytes, body: bytes = b"") -> bytes:
    return bytes((0x80 | frame << 4 | packet_type,)) + fourcc + body


def mod_ex(data: bytes, then_packet_type: int, mod_ex_type: int = 0) -> bytes:
    if len(data) <= 255:
        size = bytes((len(data) - 1,))
    else:
        size = b"\xff" + struct.pack(">H", len(data) - 1)
    return size + data + bytes((mod_ex_type << 4 | then_packet_type,))


# --- legacy video -------------------------------------------------------------------------


def test_legacy_avc_sequence_header_is_found_and_is_a_keyframe() -> None:
    assert video_is_sequence_header(AVC_SH)
    assert video_is_keyframe(AVC_SH)
    info = parse_video(AVC_SH)
    assert info is not None
    assert (info.codec, info.is_sequence_header, info.is_enhanced) == ("H264", True, False)


def test_legacy_avc_frames() -> None:
    assert video_is_keyframe(AVC_KEY) and not video_is_sequence_header(AVC_KEY)
    assert not video_is_keyframe(AVC_INTER) and not video_is_sequence_header(AVC_INTER)
    key = parse_video(AVC_KEY)
    inter = parse_video(AVC_INTER)
    assert key is not None and inter is not None
    assert key.composition_time == 40 and inter.composition_time == 80
    assert inter.frame_type == FrameKind.INTER
    eos = parse_video(AVC_EOS)
    assert eos is not None and not eos.is_sequence_header and eos.packet_type == 2


def test_video_command_frame_is_neither_keyframe_nor_sequence_header() -> None:
    for payload in (AVC_COMMAND, ex_video(5, 0, b"", b"\x00"), b"\xd7\x00\x01\x00\x02"):
        assert not video_is_keyframe(payload), payload
        assert not video_is_sequence_header(payload), payload
        info = parse_video(payload)
        assert info is not None and not info.is_keyframe and not info.is_sequence_header


def test_negative_composition_time_is_signed() -> None:
    info = parse_video(b"\x27\x01\xff\xff\xd8\x00")
    assert info is not None and info.composition_time == -40


def test_legacy_hevc_codec_id_12_and_av1_codec_id_13() -> None:
    assert video_is_sequence_header(b"\x1c\x00\x00\x00\x00\x01")
    assert video_is_sequence_header(b"\x1d\x00\x00\x00\x00\x81")
    info = parse_video(b"\x2c\x01\x00\x00\x00")
    assert info is not None and info.codec == "HEVC" and not info.is_keyframe


def test_sequence_header_needs_a_key_frame_type_and_a_config_codec() -> None:
    assert not video_is_sequence_header(b"\x27\x00\x00\x00\x00")
    assert not video_is_sequence_header(b"\x12\x00\x00\x00\x00")  # H.263 byte 1 is data
    assert not video_is_sequence_header(b"\x17")


# --- enhanced video -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fourcc", "codec"),
    [(b"hvc1", "HEVC"), (b"av01", "AV1"), (b"vp09", "VP9"), (b"avc1", "H264")],
)
def test_enhanced_sequence_start_and_frames(fourcc: bytes, codec: str) -> None:
    sh = ex_video(1, VideoPacketType.SEQUENCE_START, fourcc, b"\x01\x02\x03")
    key = ex_video(1, VideoPacketType.CODED_FRAMES, fourcc, b"\x00\x00\x00\xaa")
    inter = ex_video(2, VideoPacketType.CODED_FRAMES_X, fourcc, b"\xbb")
    end = ex_video(1, VideoPacketType.SEQUENCE_END, fourcc)
    assert video_is_sequence_header(sh) and video_is_keyframe(sh)
    assert video_is_keyframe(key) and not video_is_sequence_header(key)
    assert not video_is_keyframe(inter) and not video_is_sequence_header(inter)
    assert not video_is_sequence_header(end)
    for payload in (sh, key, inter, end):
        info = parse_video(payload)
        assert info is not None
        assert (info.codec, info.fourcc, info.is_enhanced) == (codec, fourcc.decode(), True)
    sh_info = parse_video(sh)
    assert sh_info is not None and sh_info.is_sequence_header


def test_enhanced_mpeg2ts_sequence_start_counts_as_sequence_header() -> None:
    assert video_is_sequence_header(ex_video(1, VideoPacketType.MPEG2TS_SEQUENCE_START, b"av01"))


def test_enhanced_metadata_frame_is_not_a_sequence_header() -> None:
    meta = ex_video(5, VideoPacketType.METADATA, b"hvc1", b"\x02\x00\x09colorInfo\x03\x00\x00\x09")
    assert not video_is_sequence_header(meta) and not video_is_keyframe(meta)
    info = parse_video(meta)
    assert info is not None and info.packet_type == VideoPacketType.METADATA
    assert info.codec == "HEVC"


@pytest.mark.parametrize("size", [1, 3, 256, 300, 65536])
def test_mod_ex_modifiers_are_skipped_to_the_real_packet_type(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sh = bytes((0x80 | 0x10 | VideoPacketType.MOD_EX,)) + mod_ex(data, 0) + b"hvc1\x01"
    frame = bytes((0x80 | 0x20 | VideoPacketType.MOD_EX,)) + mod_ex(data, 3) + b"hvc1\x01"
    assert video_is_sequence_header(sh)
    assert not video_is_sequence_header(frame)
    info = parse_video(sh)
    assert info is not None and info.fourcc == "hvc1" and info.is_sequence_header
    info = parse_video(frame)
    assert info is not None and info.packet_type == VideoPacketType.CODED_FRAMES_X


def test_chained_mod_ex_and_truncated_mod_ex() -> None:
    chained = b"\x97" + mod_ex(b"\x00\x00\x01", 7) + mod_ex(b"\x02", 0) + b"av01\x81"
    assert video_is_sequence_header(chained)
    for cut in range(1, len(chained) - 4):
        assert not video_is_sequence_header(chained[:cut])
        assert parse_video(chained[:cut]) is None


def test_multitrack_video_detects_sequence_start_of_first_track() -> None:
    one = b"\x96" + bytes((0x00 << 4 | 0,)) + b"av01" + b"\x00" + b"\x81\x00"
    many = b"\x96" + bytes((0x01 << 4 | 1,)) + b"hvc1" + b"\x00\x00\x00\x04" + b"data"
    codecs = b"\x96" + bytes((0x02 << 4 | 0,)) + b"avc1" + b"\x00\x00\x00\x02" + b"\x01\x64"
    assert video_is_sequence_header(one) and video_is_sequence_header(codecs)
    assert not video_is_sequence_header(many) and video_is_keyframe(many)
    for payload, fourcc in ((one, "av01"), (many, "hvc1"), (codecs, "avc1")):
        info = parse_video(payload)
        assert info is not None and info.is_multitrack and info.fourcc == fourcc
    assert parse_video(b"\x96\x06av01\x00") is None  # nested multitrack is invalid


def test_truncated_enhanced_headers_are_rejected() -> None:
    for payload in (b"\x90", b"\x90hv", b"\x91hvc", b"\x96", b"\x96\x00av0", b"\x97"):
        assert not video_is_sequence_header(payload)
        assert parse_video(payload) is None


# --- audio --------------------------------------------------------------------------------

AAC_LC_44100_STEREO = b"\xaf\x00\x12\x10"


def test_legacy_aac_sequence_header_and_raw_frame() -> None:
    assert audio_is_sequence_header(AAC_LC_44100_STEREO)
    assert not audio_is_sequence_header(b"\xaf\x01\x21\x00")
    info = parse_audio(AAC_LC_44100_STEREO)
    assert info is not None
    assert (info.codec, info.sample_rate, info.channels, info.aac_object_type) == (
        "AAC",
        44100,
        2,
        2,
    )
    raw = parse_audio(b"\xaf\x01\x21\x00")
    assert raw is not None and not raw.is_sequence_header and raw.sample_rate is None


def test_he_aac_reports_the_sbr_output_rate() -> None:
    # object 5 (SBR), 24 kHz core, stereo, extension rate 48 kHz, then object 2
    asc = parse_audio_specific_config(bytes((0b00101011, 0b00010001, 0b10001000)))
    assert asc is not None and (asc.object_type, asc.sample_rate, asc.channels) == (5, 48000, 2)


def test_aac_escape_object_type_and_explicit_rate() -> None:
    # object 31 -> 32 + 0 (= 32), rate index 15 + 24-bit 12345, channels 1
    bits = "11111" + "000000" + "1111" + format(12345, "024b") + "0001"
    bits += "0" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    asc = parse_audio_specific_config(data)
    assert asc is not None and (asc.object_type, asc.sample_rate, asc.channels) == (32, 12345, 1)
    assert parse_audio_specific_config(b"\x17") is None
    assert parse_audio_specific_config(b"\x17\xf8") is None  # reserved rate index 14


def test_legacy_mp3_speex_and_pcm() -> None:
    mp3 = parse_audio(b"\x2f\xff\xfb")
    assert mp3 is not None and (mp3.codec, mp3.sample_rate, mp3.channels) == ("MP3", 44100, 2)
    speex = parse_audio(b"\xb2\x00")
    assert speex is not None and (speex.codec, speex.sample_rate, speex.channels) == (
        "Speex",
        16000,
        1,
    )
    assert not audio_is_sequence_header(b"\x2f\x00")


OPUS_HEAD = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
FLAC_STREAMINFO = (
    bytes.fromhex("1000100000000e000020") + bytes((0x0A, 0xC4, 0x42, 0xF0)) + bytes(20)
)


def test_enhanced_audio_sequence_start_with_codec_config() -> None:
    opus = b"\x90Opus" + OPUS_HEAD
    flac = b"\x90fLaC" + FLAC_STREAMINFO
    aac = b"\x90mp4a" + b"\x11\x90"  # LC, 48 kHz, stereo
    for payload, codec, rate, channels in (
        (opus, "Opus", 48000, 2),
        (flac, "FLAC", 44100, 2),
        (aac, "AAC", 48000, 2),
    ):
        assert audio_is_sequence_header(payload)
        info = parse_audio(payload)
        assert info is not None and info.is_enhanced
        assert (info.codec, info.sample_rate, info.channels) == (codec, rate, channels)
    for fourcc, codec in ((b"ac-3", "AC3"), (b"ec-3", "EAC3"), (b".mp3", "MP3")):
        frame = b"\x91" + fourcc + b"\x0b\x77"
        assert not audio_is_sequence_header(frame)
        info = parse_audio(frame)
        assert info is not None and info.codec == codec and not info.is_sequence_header


def test_enhanced_audio_mod_ex_and_multitrack() -> None:
    mod = b"\x97" + mod_ex(b"\x00\x01\x02", AudioPacketType.SEQUENCE_START) + b"Opus" + OPUS_HEAD
    assert audio_is_sequence_header(mod)
    info = parse_audio(mod)
    assert info is not None and info.sample_rate == 48000
    multi = b"\x95" + bytes((0x00 << 4 | 0,)) + b"Opus\x00" + OPUS_HEAD
    assert audio_is_sequence_header(multi)
    frames = b"\x95" + bytes((0x01 << 4 | 1,)) + b"Opus\x00\x00\x00\x01\xfc"
    assert not audio_is_sequence_header(frames)
    info = parse_audio(frames)
    assert info is not None and info.codec == "Opus" and info.packet_type == 1
    channel_config = b"\x94Opus\x01\x02\x00\x00\x00\x03"
    assert not audio_is_sequence_header(channel_config)


def test_audio_config_parsers_reject_garbage() -> None:
    assert parse_opus_head(b"OpusHead\x01") is None
    assert parse_opus_head(b"OpusTags" + bytes(11)) is None
    assert parse_flac_streaminfo(b"fLaC\x00\x00\x00\x22" + FLAC_STREAMINFO) is not None
    assert parse_flac_streaminfo(FLAC_STREAMINFO[:20]) is None


# --- SPS ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sps", "expected"),
    [
        (avc_sps(20, 15), (320, 240, 66, 30)),
        (avc_sps(120, 68, 100, 40, crop=(0, 0, 0, 4)), (1920, 1080, 100, 40)),
        (avc_sps(80, 23, 77, 31, crop=(0, 0, 0, 2), frame_mbs_only=0), (1280, 728, 77, 31)),
        (avc_sps(20, 15, 100, 31, crop=(1, 2, 0, 1), scaling_lists=True), (314, 238, 100, 31)),
        (avc_sps(20, 15, 244, 13, chroma_format_idc=3, crop=(1, 1, 1, 1)), (318, 238, 244, 13)),
        (avc_sps(20, 15, 122, 21, chroma_format_idc=2, crop=(1, 0, 1, 0)), (318, 239, 122, 21)),
        (avc_sps(20, 15, poc_type=1), (320, 240, 66, 30)),
        (avc_sps(20, 15, poc_type=2), (320, 240, 66, 30)),
    ],
)
def test_avc_sps_gives_the_cropped_picture_size(
    sps: bytes, expected: tuple[int, int, int, int]
) -> None:
    assert parse_avc_sps(sps) == expected
    assert parse_avc_sequence_header(legacy_avc_sh(sps)) == expected
    enhanced = ex_video(1, 0, b"avc1", avc_record(sps))
    assert parse_avc_sequence_header(enhanced) == expected
    assert parse_video_sequence_header(enhanced) == expected


def test_truncated_sps_and_records_give_none() -> None:
    for cut in range(13 + len(SPS_320x240)):
        assert parse_avc_sequence_header(AVC_SH[:cut]) is None
    assert parse_avc_sps(b"\x68\x42\x00\x1e") is None  # a PPS, not an SPS
    assert parse_hevc_sequence_header(b"\x1c\x00\x00\x00\x00\x01") is None
    assert parse_video_sequence_header(b"\x1d\x00\x00\x00\x00") is None  # AV1: no parser


def test_profile_and_level_names_follow_srs() -> None:
    assert (avc_profile_name(100), avc_level_name(31), avc_level_name(30)) == ("High", "3.1", "3")
    assert avc_profile_name(1) == "Other" and hevc_level_name(93) == "3.1"


# --- garbage never raises -----------------------------------------------------------------

_PREFIXES = [
    b"",
    b"\x17\x00",
    b"\x1c\x00\x00\x00\x00\x01",
    b"\x90",
    b"\x97",
    b"\x96",
    b"\x95",
    b"\xaf\x00",
    b"\x9f",
    b"\x90hvc1",
    b"\x90avc1\x01",
    b"\x17\x00\x00\x00\x00\x01",
]


def _all_parsers(data: bytes) -> None:
    video_is_keyframe(data)
    video_is_sequence_header(data)
    audio_is_sequence_header(data)
    parse_video(data)
    parse_audio(data)
    parse_avc_sequence_header(data)
    parse_hevc_sequence_header(data)
    parse_video_sequence_header(data)
    parse_audio_specific_config(data)
    parse_avc_sps(data)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(_PREFIXES), st.binary(max_size=80))
def test_garbage_never_raises(prefix: bytes, tail: bytes) -> None:
    _all_parsers(prefix + tail)


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=len(AVC_SH) - 1), st.binary(min_size=1, max_size=4))
def test_corrupted_sequence_header_never_raises(position: int, noise: bytes) -> None:
    corrupted = AVC_SH[:position] + noise + AVC_SH[position + len(noise) :]
    _all_parsers(corrupted)
    _all_parsers(corrupted[:position])
