"""Codec sniffing of RTMP audio (type 8) and video (type 9) message bodies, i.e. FLV tag bodies.

Two kinds of functions live here:

- hot-path predicates (`video_is_keyframe`, `video_is_sequence_header`,
  `audio_is_sequence_header`), called for every published message: they look at one or two
  bytes and only take the slow path for the rare Enhanced RTMP ModEx/Multitrack packets;
- `parse_video` / `parse_audio`, which describe one message fully for stats and the API.

Both legacy FLV (video codec ids 7 AVC, 12 HEVC and 13 AV1 as used by Chinese CDNs and SRS;
audio sound format 10 AAC) and Enhanced RTMP v1/v2 (FourCC signalling, ModEx, Multitrack)
are understood. The bytes come from publishers and are not trusted: nothing here raises on
truncated or malformed input, it answers False or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from srv.media.audio_config import (
    AudioConfig,
    parse_audio_specific_config,
    parse_flac_streaminfo,
    parse_opus_head,
)


class FrameKind(IntEnum):
    """FLV VideoFrameType (legacy UB[4], enhanced UB[3])."""

    KEY = 1
    INTER = 2
    DISPOSABLE_INTER = 3
    GENERATED_KEY = 4
    COMMAND = 5  # video info/command frame: carries no picture, never a keyframe


class AvcPacketType(IntEnum):
    """Legacy AVC/HEVC packet type, the byte after the video tag header."""

    SEQUENCE_HEADER = 0
    NALU = 1
    END_OF_SEQUENCE = 2


class VideoPacketType(IntEnum):
    """Enhanced RTMP VideoPacketType (low nibble of the first byte when bit 7 is set)."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    CODED_FRAMES_X = 3  # CodedFrames with an implied composition time of zero
    METADATA = 4
    MPEG2TS_SEQUENCE_START = 5
    MULTITRACK = 6
    MOD_EX = 7


class AudioPacketType(IntEnum):
    """Enhanced RTMP AudioPacketType (low nibble when SoundFormat is 9, ExHeader)."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    MULTICHANNEL_CONFIG = 4
    MULTITRACK = 5
    MOD_EX = 7


# AvMultitrackType, the high nibble of the byte after a Multitrack packet type.
_ONE_TRACK = 0
_MANY_TRACKS_MANY_CODECS = 2

# Legacy FLV CodecID -> name. 12 (HEVC) and 13 (AV1) are not in Adobe's spec but are what
# SRS, nginx-http-flv and the Chinese CDNs put on the wire.
VIDEO_CODEC_NAMES: dict[int, str] = {
    1: "JPEG",
    2: "H263",
    3: "ScreenVideo",
    4: "VP6",
    5: "VP6A",
    6: "ScreenVideo2",
    7: "H264",
    12: "HEVC",
    13: "AV1",
}
# Legacy codec ids whose byte 1 is an AvcPacketType (0 = sequence header).
_LEGACY_CONFIG_CODECS = frozenset((7, 12, 13))

VIDEO_FOURCC_NAMES: dict[bytes, str] = {
    b"avc1": "H264",
    b"hvc1": "HEVC",
    b"av01": "AV1",
    b"vp09": "VP9",
    b"vp08": "VP8",
}

AUDIO_FORMAT_NAMES: dict[int, str] = {
    0: "PCM",
    1: "ADPCM",
    2: "MP3",
    3: "PCM",
    4: "Nellymoser",
    5: "Nellymoser",
    6: "Nellymoser",
    7: "G711A",
    8: "G711U",
    10: "AAC",
    11: "Speex",
    14: "MP3",
    15: "Native",
}

AUDIO_FOURCC_NAMES: dict[bytes, str] = {
    b"mp4a": "AAC",
    b"Opus": "Opus",
    b"fLaC": "FLAC",
    b"ac-3": "AC3",
    b"ec-3": "EAC3",
    b".mp3": "MP3",
}

_SOUND_RATES = (5512, 11025, 22050, 44100)
# Legacy sound formats whose rate/channels are fixed whatever the header bits say.
_FIXED_AUDIO: dict[int, tuple[int, int]] = {
    4: (16000, 1),
    5: (8000, 1),
    7: (8000, 1),
    8: (8000, 1),
    11: (16000, 1),
    14: (8000, 1),
}

_SOUND_FORMAT_EX_HEADER = 9
_SOUND_FORMAT_AAC = 10


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What one video message is. `codec` is a name such as "H264", "HEVC", "AV1", "VP9"."""

    codec: str
    is_keyframe: bool
    is_sequence_header: bool
    is_enhanced: bool
    fourcc: str | None
    frame_type: int
    packet_type: int | None  # AvcPacketType (legacy 7/12/13) or VideoPacketType (enhanced)
    composition_time: int = 0
    is_multitrack: bool = False


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What one audio message is. Rates/channels are None where the message does not tell:
    an AAC raw frame's FLV header always claims 44.1 kHz stereo, so only the
    AudioSpecificConfig of the sequence header is believed."""

    codec: str
    is_sequence_header: bool
    sample_rate: int | None
    channels: int | None
    is_enhanced: bool = False
    fourcc: str | None = None
    packet_type: int | None = None
    aac_object_type: int | None = None


class ExVideoHeader(NamedTuple):
    """An Enhanced RTMP video tag header once ModEx modifiers have been skipped."""

    frame_type: int
    packet_type: int
    fourcc: bytes  # b"" for a command frame, which carries none
    body: int  # offset of the tag body (for a multitrack message: the first track's body)
    is_multitrack: bool


class ExAudioHeader(NamedTuple):
    """An Enhanced RTMP audio tag header once ModEx modifiers have been skipped."""

    packet_type: int
    fourcc: bytes
    body: int
    is_multitrack: bool


def _skip_mod_ex(p: bytes, i: int, n: int) -> tuple[int, int] | None:
    """Skip ModEx modifier blocks starting at p[i]; return (real packet type, next offset).

    Each block is modExDataSize (UI8 + 1, or UI16 + 1 when the UI8 form says 256), the data,
    then a byte of modExType (high nibble) and the next packet type (low nibble).
    """
    packet_type = 7
    while packet_type == 7:
        if i >= n:
            return None
        size = p[i] + 1
        i += 1
        if size == 256:
            if i + 2 > n:
                return None
            size = ((p[i] << 8) | p[i + 1]) + 1
            i += 2
        i += size
        if i >= n:
            return None
        packet_type = p[i] & 0x0F
        i += 1
    return packet_type, i


def parse_ex_video_header(p: bytes) -> ExVideoHeader | None:
    """Parse an Enhanced RTMP video header (first byte has bit 7 set); None if malformed.

    For a multitrack message only the first track is described; every track of one message
    shares its packet type, which is what sequence start detection needs.
    """
    n = len(p)
    if n < 1 or not p[0] & 0x80:
        return None
    frame_type = (p[0] >> 4) & 0x07
    packet_type = p[0] & 0x0F
    i = 1
    if packet_type == VideoPacketType.MOD_EX:
        skipped = _skip_mod_ex(p, i, n)
        if skipped is None:
            return None
        packet_type, i = skipped
    if frame_type == FrameKind.COMMAND and packet_type != VideoPacketType.METADATA:
        # A command frame carries one UI8 VideoCommand and no FourCC.
        if i + 1 > n:
            return None
        return ExVideoHeader(frame_type, packet_type, b"", i, False)
    multitrack = packet_type == VideoPacketType.MULTITRACK
    found = _fourcc_and_packet_type(p, i, n, packet_type, multitrack)
    if found is None:
        return None
    fourcc, packet_type, i = found
    return ExVideoHeader(frame_type, packet_type, fourcc, i, multitrack)


def _fourcc_and_packet_type(p: bytes, i: int, n: int, packet_type: int,
                            multitrack: bool) -> tuple[bytes, int, int] | None:
    """(FourCC, real packet type, offset after them) for video and audio ExHeaders alike.

    Multitrack (both media share its layout, and its packet-type values 6/7 for video and 5/7
    for audio mean "nested multitrack" and "ModEx", which are not allowed inside it): same-codec
    tracks carry one FourCC here; ManyTracksManyCodecs one per track, which for the first track
    sits at the same place. Then trackId and (not OneTrack) a UI24 size."""
    if multitrack:
        if i >= n:
            return None
        multitrack_type = p[i] >> 4
        inner = p[i] & 0x0F
        i += 1
        if inner == VideoPacketType.MOD_EX or inner == packet_type:
            return None
        packet_type = inner
        fourcc = p[i : i + 4]
        i += 5 if multitrack_type == _ONE_TRACK else 8
        if multitrack_type > _MANY_TRACKS_MANY_CODECS:
            return None
    else:
        fourcc = p[i : i + 4]
        i += 4
    if i > n or len(fourcc) != 4:
        return None
    return bytes(fourcc), packet_type, i


def parse_ex_audio_header(p: bytes) -> ExAudioHeader | None:
    """Parse an Enhanced RTMP audio header (SoundFormat 9); None if malformed."""
    n = len(p)
    if n < 1 or p[0] >> 4 != _SOUND_FORMAT_EX_HEADER:
        return None
    packet_type = p[0] & 0x0F
    i = 1
    if packet_type == AudioPacketType.MOD_EX:
        skipped = _skip_mod_ex(p, i, n)
        if skipped is None:
            return None
        packet_type, i = skipped
    multitrack = packet_type == AudioPacketType.MULTITRACK
    found = _fourcc_and_packet_type(p, i, n, packet_type, multitrack)
    if found is None:
        return None
    fourcc, packet_type, i = found
    return ExAudioHeader(packet_type, fourcc, i, multitrack)


# --- hot path ---------------------------------------------------------------------------


def video_is_keyframe(payload: bytes) -> bool:
    """True if the message's frame type is "key frame" (legacy or enhanced).

    Sequence headers are key frames by this test too (every encoder flags them so); check
    `video_is_sequence_header` first where the difference matters. A video info/command frame
    (type 5) is never a keyframe.
    """
    # Legacy frame type is UB[4] with values 1..5, so bit 7 is clear; enhanced is UB[3].
    return len(payload) > 1 and payload[0] & 0x70 == 0x10


def video_is_sequence_header(payload: bytes) -> bool:
    """True for an AVC/HEVC/AV1 sequence header or an Enhanced RTMP SequenceStart."""
    if len(payload) < 2:
        return False
    b0 = payload[0]
    if b0 & 0x80:
        packet_type = b0 & 0x0F
        if packet_type == 0 or packet_type == 5:  # SequenceStart, MPEG2TSSequenceStart
            return b0 & 0x70 != 0x50 and len(payload) >= 5
        if packet_type < 6:
            return False
        header = parse_ex_video_header(payload)
        return (
            header is not None
            and header.frame_type != FrameKind.COMMAND
            and (header.packet_type == 0 or header.packet_type == 5)
        )
    # Legacy: key frame of codec 7/12/13 with AvcPacketType 0.
    return payload[1] == 0 and b0 >> 4 == 1 and (b0 & 0x0F) in _LEGACY_CONFIG_CODECS


def audio_is_sequence_header(payload: bytes) -> bool:
    """True for an AAC sequence header (AudioSpecificConfig) or an Enhanced SequenceStart."""
    if len(payload) < 2:
        return False
    b0 = payload[0]
    sound_format = b0 >> 4
    if sound_format == _SOUND_FORMAT_AAC:
        return payload[1] == 0
    if sound_format == _SOUND_FORMAT_EX_HEADER:
        packet_type = b0 & 0x0F
        if packet_type == 0:
            return len(payload) >= 5
        if packet_type == AudioPacketType.MULTITRACK or packet_type == AudioPacketType.MOD_EX:
            header = parse_ex_audio_header(payload)
            return header is not None and header.packet_type == AudioPacketType.SEQUENCE_START
    return False


# --- full descriptions ------------------------------------------------------------------


def _fourcc_text(fourcc: bytes) -> str:
    return fourcc.decode("latin-1")


def _si24(p: bytes, i: int) -> int:
    value = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2]
    return value - 0x1000000 if value & 0x800000 else value


def parse_video(payload: bytes) -> VideoInfo | None:
    """Describe one video message; None if it is too short or malformed."""
    p = payload
    if len(p) < 1:
        return None
    b0 = p[0]
    if b0 & 0x80:
        header = parse_ex_video_header(p)
        if header is None:
            return None
        frame_type, packet_type = header.frame_type, header.packet_type
        if frame_type == FrameKind.COMMAND and packet_type != VideoPacketType.METADATA:
            return VideoInfo(
                codec="Unknown",
                is_keyframe=False,
                is_sequence_header=False,
                is_enhanced=True,
                fourcc=None,
                frame_type=frame_type,
                packet_type=packet_type,
            )
        fourcc = header.fourcc
        cts = 0
        if (
            packet_type == VideoPacketType.CODED_FRAMES
            and fourcc in (b"avc1", b"hvc1")
            and not header.is_multitrack
        ):
            if header.body + 3 > len(p):
                return None
            cts = _si24(p, header.body)
        return VideoInfo(
            codec=VIDEO_FOURCC_NAMES.get(fourcc, _fourcc_text(fourcc)),
            is_keyframe=frame_type == FrameKind.KEY,
            is_sequence_header=packet_type
            in (VideoPacketType.SEQUENCE_START, VideoPacketType.MPEG2TS_SEQUENCE_START),
            is_enhanced=True,
            fourcc=_fourcc_text(fourcc),
            frame_type=frame_type,
            packet_type=packet_type,
            composition_time=cts,
            is_multitrack=header.is_multitrack,
        )
    frame_type = b0 >> 4
    codec_id = b0 & 0x0F
    if not 1 <= frame_type <= 5 or codec_id not in VIDEO_CODEC_NAMES:
        return None
    legacy_packet_type: int | None = None
    cts = 0
    if codec_id in _LEGACY_CONFIG_CODECS and frame_type != FrameKind.COMMAND:
        if len(p) < 5:
            return None
        legacy_packet_type = p[1]
        if legacy_packet_type > AvcPacketType.END_OF_SEQUENCE:
            return None
        cts = _si24(p, 2)
    return VideoInfo(
        codec=VIDEO_CODEC_NAMES[codec_id],
        is_keyframe=frame_type == FrameKind.KEY,
        is_sequence_header=legacy_packet_type == AvcPacketType.SEQUENCE_HEADER
        and frame_type == FrameKind.KEY,
        is_enhanced=False,
        fourcc=None,
        frame_type=frame_type,
        packet_type=legacy_packet_type,
        composition_time=cts,
    )


def _audio_config(fourcc: bytes, body: bytes) -> AudioConfig | None:
    if fourcc == b"mp4a":
        return parse_audio_specific_config(body)
    if fourcc == b"Opus":
        return parse_opus_head(body)
    if fourcc == b"fLaC":
        return parse_flac_streaminfo(body)
    return None


def parse_audio(payload: bytes) -> AudioInfo | None:
    """Describe one audio message; None if it is too short or malformed.

    A sequence header's codec configuration (AAC AudioSpecificConfig, OpusHead, FLAC
    STREAMINFO) is parsed for the real sample rate and channel count.
    """
    p = payload
    if len(p) < 1:
        return None
    b0 = p[0]
    sound_format = b0 >> 4
    if sound_format == _SOUND_FORMAT_EX_HEADER:
        header = parse_ex_audio_header(p)
        if header is None:
            return None
        is_sh = header.packet_type == AudioPacketType.SEQUENCE_START
        config = None
        if is_sh and not header.is_multitrack:
            config = _audio_config(header.fourcc, p[header.body :])
        return AudioInfo(
            codec=AUDIO_FOURCC_NAMES.get(header.fourcc, _fourcc_text(header.fourcc)),
            is_sequence_header=is_sh,
            sample_rate=config.sample_rate if config else None,
            channels=config.channels if config else None,
            is_enhanced=True,
            fourcc=_fourcc_text(header.fourcc),
            packet_type=header.packet_type,
            aac_object_type=config.object_type if config and header.fourcc == b"mp4a" else None,
        )
    codec = AUDIO_FORMAT_NAMES.get(sound_format)
    if codec is None:
        return None
    if sound_format == _SOUND_FORMAT_AAC:
        if len(p) < 2 or p[1] > 1:
            return None
        if p[1] != 0:
            return AudioInfo("AAC", False, None, None, packet_type=1)
        asc = parse_audio_specific_config(p[2:])
        if asc is None:
            return None
        return AudioInfo(
            "AAC",
            True,
            asc.sample_rate,
            asc.channels,
            packet_type=0,
            aac_object_type=asc.object_type,
        )
    rate, channels = _FIXED_AUDIO.get(sound_format) or (
        _SOUND_RATES[(b0 >> 2) & 0x03],
        (b0 & 0x01) + 1,
    )
    return AudioInfo(codec, False, rate, channels)
