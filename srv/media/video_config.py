"""Video sequence headers: AVCDecoderConfigurationRecord and HEVCDecoderConfigurationRecord
(ISO/IEC 14496-15), and the first SPS inside them (H.264 7.3.2.1, H.265 7.3.2.2) for the
coded picture size after cropping, profile and level.

Accepts legacy FLV (codec id 7 / 12, AvcPacketType 0) and Enhanced RTMP SequenceStart
(`avc1` / `hvc1`) message bodies. Untrusted input: answers None, never raises.
"""

from __future__ import annotations

from typing import NamedTuple

from srv.media.codec import VideoPacketType, parse_ex_video_header


class VideoConfig(NamedTuple):
    """Picture size in pixels after cropping; profile_idc and level_idc as coded.

    H.264 level_idc is ten times the level (31 = 3.1); H.265 general_level_idc is thirty
    times it (93 = 3.1). Use `avc_profile_name` / `hevc_level_name` and friends for text.
    """

    width: int
    height: int
    profile: int
    level: int


class _Truncated(Exception):
    pass


class _BitReader:
    """MSB-first bit reader over an RBSP (emulation prevention bytes already removed)."""

    __slots__ = ("value", "left")

    def __init__(self, rbsp: bytes) -> None:
        self.value = int.from_bytes(rbsp, "big")
        self.left = len(rbsp) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise _Truncated
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        if n > self.left:
            raise _Truncated
        self.left -= n

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:  # no legal syntax element is this long: garbage
                raise _Truncated
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    # 00 00 03 -> 00 00; bytes.replace does not rescan its output, as the standard requires.
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


# --- H.264 --------------------------------------------------------------------------------

_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))
# chroma_format_idc -> (SubWidthC, SubHeightC)
_CHROMA_SUBSAMPLING = {1: (2, 2), 2: (2, 1), 3: (1, 1)}

AVC_PROFILE_NAMES: dict[int, str] = {
    66: "Baseline",
    77: "Main",
    88: "Extended",
    100: "High",
    110: "High(10)",
    122: "High(422)",
    244: "High(444)",
}

HEVC_PROFILE_NAMES: dict[int, str] = {1: "Main", 2: "Main10", 3: "Main Still Picture", 4: "RExt"}


def avc_profile_name(profile_idc: int) -> str:
    return AVC_PROFILE_NAMES.get(profile_idc, "Other")


def avc_level_name(level_idc: int) -> str:
    """31 -> "3.1", 30 -> "3" as SRS writes them."""
    if level_idc <= 0:
        return "Other"
    major, minor = divmod(level_idc, 10)
    return f"{major}.{minor}" if minor else str(major)


def hevc_profile_name(profile_idc: int) -> str:
    return HEVC_PROFILE_NAMES.get(profile_idc, "Other")


def hevc_level_name(level_idc: int) -> str:
    """93 -> "3.1", 90 -> "3" (general_level_idc is 30 x level)."""
    return avc_level_name(level_idc // 3) if level_idc > 0 else "Other"


def _scaling_list(r: _BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + r.se() + 256) % 256
        last = next_scale or last


def parse_avc_sps(nal: bytes) -> VideoConfig | None:
    """Parse an H.264 SPS NAL unit (with its one-byte NAL header)."""
    if len(nal) < 4 or nal[0] & 0x1F != 7:
        return None
    r = _BitReader(_rbsp(bytes(nal[1:])))
    try:
        profile = r.u(8)
        r.skip(8)  # constraint_set flags
        level = r.u(8)
        r.ue()  # seq_parameter_set_id
        chroma_format_idc = 1
        separate_colour_plane = 0
        if profile in _HIGH_PROFILES:
            chroma_format_idc = r.ue()
            if chroma_format_idc > 3:
                return None
            if chroma_format_idc == 3:
                separate_colour_plane = r.u(1)
            r.ue()  # bit_depth_luma_minus8
            r.ue()  # bit_depth_chroma_minus8
            r.skip(1)  # qpprime_y_zero_transform_bypass_flag
            if r.u(1):  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format_idc != 3 else 12):
                    if r.u(1):
                        _scaling_list(r, 16 if i < 6 else 64)
        r.ue()  # log2_max_frame_num_minus4
        pic_order_cnt_type = r.ue()
        if pic_order_cnt_type == 0:
            r.ue()  # log2_max_pic_order_cnt_lsb_minus4
        elif pic_order_cnt_type == 1:
            r.skip(1)  # delta_pic_order_always_zero_flag
            r.se()  # offset_for_non_ref_pic
            r.se()  # offset_for_top_to_bottom_field
            cycle = r.ue()
            if cycle > 255:
                return None
            for _ in range(cycle):
                r.se()
        elif pic_order_cnt_type != 2:
            return None
        r.ue()  # max_num_ref_frames
        r.skip(1)  # gaps_in_frame_num_value_allowed_flag
        width_mbs = r.ue() + 1
        height_map_units = r.ue() + 1
        frame_mbs_only = r.u(1)
        if not frame_mbs_only:
            r.skip(1)  # mb_adaptive_frame_field_flag
        r.skip(1)  # direct_8x8_inference_flag
        crop_left = crop_right = crop_top = crop_bottom = 0
        if r.u(1):  # frame_cropping_flag
            crop_left, crop_right, crop_top, crop_bottom = r.ue(), r.ue(), r.ue(), r.ue()
    except _Truncated:
        return None
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    if chroma_array_type == 0:
        crop_unit_x, crop_unit_y = 1, 2 - frame_mbs_only
    else:
        sub_width, sub_height = _CHROMA_SUBSAMPLING[chroma_array_type]
        crop_unit_x, crop_unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        return None
    return VideoConfig(width, height, profile, level)


def _record_offset(payload: bytes, legacy_codec_id: int, fourcc: bytes) -> int | None:
    """Where the decoder configuration record starts in a sequence header message."""
    if len(payload) < 2:
        return None
    if payload[0] & 0x80:
        header = parse_ex_video_header(payload)
        if (
            header is None
            or header.fourcc != fourcc
            or header.packet_type != VideoPacketType.SEQUENCE_START
            or header.is_multitrack
        ):
            return None
        return header.body
    if payload[0] & 0x0F != legacy_codec_id or payload[1] != 0:
        return None
    return 5  # frame/codec byte, AvcPacketType, SI24 composition time


def avc_config_nals(record: bytes) -> tuple[int, list[bytes]] | None:
    """(NAL unit length size, [SPS..., PPS...]) from an AVCDecoderConfigurationRecord: what
    a muxer writes in band before an IDR (MPEG-TS). None if the record is malformed."""
    # configurationVersion, profile, compatibility, level, lengthSizeMinusOne, numOfSPS
    if len(record) < 7 or record[0] != 1:
        return None
    nals: list[bytes] = []
    pos = 5
    for mask in (0x1F, 0xFF):  # numOfSequenceParameterSets (5 bits), numOfPictureParameterSets
        if pos >= len(record):
            return None
        count = record[pos] & mask
        pos += 1
        for _ in range(count):
            if pos + 2 > len(record):
                return None
            length = (record[pos] << 8) | record[pos + 1]
            nal = bytes(record[pos + 2 : pos + 2 + length])
            if len(nal) != length or length == 0:
                return None
            nals.append(nal)
            pos += 2 + length
    return (record[4] & 0x03) + 1, nals


def parse_avc_sequence_header(payload: bytes) -> VideoConfig | None:
    """Width, height, profile_idc, level_idc from an H.264 sequence header message."""
    sps = _first_sps(payload, hevc=False)
    return parse_avc_sps(sps) if sps is not None else None


# --- H.265 --------------------------------------------------------------------------------

_HEVC_NAL_SPS = 33


def _skip_profile_tier_level(r: _BitReader, max_sub_layers_minus1: int) -> tuple[int, int]:
    r.skip(2)  # general_profile_space
    r.skip(1)  # general_tier_flag
    profile = r.u(5)
    r.skip(32 + 4 + 43 + 1)  # compatibility flags, source flags, constraint flags
    level = r.u(8)
    present = [(r.u(1), r.u(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        if profile_present:
            r.skip(88)
        if level_present:
            r.skip(8)
    return profile, level


def parse_hevc_sps(nal: bytes) -> VideoConfig | None:
    """Parse an H.265 SPS NAL unit (with its two-byte NAL header)."""
    if len(nal) < 15 or (nal[0] >> 1) & 0x3F != _HEVC_NAL_SPS:
        return None
    r = _BitReader(_rbsp(bytes(nal[2:])))
    try:
        r.skip(4)  # sps_video_parameter_set_id
        max_sub_layers_minus1 = r.u(3)
        if max_sub_layers_minus1 > 6:
            return None
        r.skip(1)  # sps_temporal_id_nesting_flag
        profile, level = _skip_profile_tier_level(r, max_sub_layers_minus1)
        r.ue()  # sps_seq_parameter_set_id
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            return None
        separate_colour_plane = r.u(1) if chroma_format_idc == 3 else 0
        width = r.ue()
        height = r.ue()
        if r.u(1):  # conformance_window_flag
            left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
            chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
            sub_width, sub_height = _CHROMA_SUBSAMPLING.get(chroma_array_type, (1, 1))
            width -= sub_width * (left + right)
            height -= sub_height * (top + bottom)
    except _Truncated:
        return None
    if width <= 0 or height <= 0:
        return None
    return VideoConfig(width, height, profile, level)


def hevc_config_nals(record: bytes) -> tuple[int, list[bytes]] | None:
    """(NAL unit length size, [VPS, SPS, PPS, ...] in record order) from an
    HEVCDecoderConfigurationRecord. None if the record is malformed."""
    if len(record) < 23 or record[0] != 1:
        return None
    num_arrays = record[22]
    pos = 23
    nals: list[bytes] = []
    for _ in range(num_arrays):
        if pos + 3 > len(record):
            return None
        count = (record[pos + 1] << 8) | record[pos + 2]
        pos += 3
        for _ in range(count):
            if pos + 2 > len(record):
                return None
            length = (record[pos] << 8) | record[pos + 1]
            pos += 2
            nal = bytes(record[pos : pos + length])
            pos += length
            if len(nal) != length or length < 2:
                return None
            nals.append(nal)
    return (record[21] & 0x03) + 1, nals


def parse_hevc_sequence_header(payload: bytes) -> VideoConfig | None:
    """Width, height, general profile_idc and level_idc from an H.265 sequence header
    message (legacy codec id 12 or Enhanced RTMP `hvc1`)."""
    sps = _first_sps(payload, hevc=True)
    return parse_hevc_sps(sps) if sps is not None else None


def _first_sps(payload: bytes, hevc: bool) -> bytes | None:
    """The first SPS NAL unit in an H.264 or H.265 sequence header message."""
    i = _record_offset(payload, 12, b"hvc1") if hevc else _record_offset(payload, 7, b"avc1")
    if i is None:
        return None
    found = hevc_config_nals(payload[i:]) if hevc else avc_config_nals(payload[i:])
    if found is None:
        return None
    for nal in found[1]:
        if ((nal[0] >> 1) & 0x3F == _HEVC_NAL_SPS) if hevc else (nal[0] & 0x1F == 7):
            return nal
    return None


def parse_video_sequence_header(payload: bytes) -> VideoConfig | None:
    """Dispatch on the codec of a video sequence header; None for codecs without a parser
    here (AV1, VP9: take their size from onMetaData)."""
    if len(payload) < 1:
        return None
    if payload[0] & 0x80:
        header = parse_ex_video_header(payload)
        fourcc = header.fourcc if header is not None else b""
        if fourcc == b"hvc1":
            return parse_hevc_sequence_header(payload)
        if fourcc == b"avc1":
            return parse_avc_sequence_header(payload)
        return None
    codec_id = payload[0] & 0x0F
    if codec_id == 7:
        return parse_avc_sequence_header(payload)
    if codec_id == 12:
        return parse_hevc_sequence_header(payload)
    return None
