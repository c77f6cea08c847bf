"""FLV tag bodies to the tracks and frames a segment muxer needs (MPEG-TS, fMP4).

`FrameReader.read(tag_type, timestamp, payload)` takes what the hub keeps of a published
message (a `Packet`'s fields, or an `FlvTag`'s) in publishing order and answers a `Frame` for a
coded picture or audio frame, None for everything else: sequence headers (which update
`video` / `audio`, and bump `generation` when they really change), AVC/HEVC end of sequence,
command frames, metadata, multitrack messages (only a stream's default track is muxed),
codecs no segment format here carries, frames before their sequence header, and garbage.
Legacy FLV (AVC 7, HEVC 12, AV1 13, AAC 10) and Enhanced RTMP (`avc1`, `hvc1`, `av01`,
`mp4a`, `Opus`) are read; the decoder configuration records are kept as they came and
parsed with the project's parsers (srv/media/video_config.py, audio_config.py).

Untrusted input: nothing here raises. Timestamps are passed through in milliseconds: a
caller that runs past 2^32 ms unwraps them before (the segment formats count in 33 or 64
bits).
"""

from __future__ import annotations

from dataclasses import dataclass

from srv.media.audio_config import parse_audio_specific_config, parse_opus_head
from srv.media.codec import (
    AudioPacketType,
    AvcPacketType,
    FrameKind,
    VideoPacketType,
    parse_ex_audio_header,
    parse_ex_video_header,
)
from srv.media.flv import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO
from srv.media.metadata import decode_metadata
from srv.media.video_config import avc_config_nals, hevc_config_nals, parse_avc_sps, parse_hevc_sps

# Legacy FLV video codec id -> codec, and the Enhanced RTMP FourCCs muxed here.
_LEGACY_VIDEO = {7: "H264", 12: "HEVC", 13: "AV1"}
_VIDEO_FOURCC = {b"avc1": "H264", b"hvc1": "HEVC", b"av01": "AV1"}
_AUDIO_FOURCC = {b"mp4a": "AAC", b"Opus": "Opus"}
_SOUND_FORMAT_AAC = 10


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """A video track: `codec` "H264", "HEVC" or "AV1"; `record` the decoder configuration
    record (avcC, hvcC or av1C contents); `parameter_sets` the NAL units in the record (SPS,
    PPS; VPS, SPS, PPS) for in-band use, empty for AV1; picture size from the SPS (0 if
    unknown: AV1, whose size is left to the decoder)."""

    codec: str
    record: bytes
    width: int
    height: int
    nal_length_size: int = 4
    parameter_sets: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """An audio track: `codec` "AAC" (config = AudioSpecificConfig) or "Opus" (config =
    OpusHead); `sample_rate` the decoder's output rate (the fMP4 timescale)."""

    codec: str
    config: bytes
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Frame:
    """One coded picture (AVCC/HVCC length-prefixed NAL units, or AV1 OBUs) or one audio
    frame (raw AAC or Opus). `dts` and `cts` (composition offset) in milliseconds."""

    is_video: bool
    dts: int
    cts: int
    keyframe: bool
    data: bytes


def _si24(p: bytes, i: int) -> int:
    value = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2]
    return value - 0x1000000 if value & 0x800000 else value


def video_track(codec: str, record: bytes, size: tuple[int, int] = (0, 0)) -> VideoTrack | None:
    """Build a track from a decoder configuration record; None if it is malformed. `size`
    is the picture size onMetaData announced, used for AV1 only (H.264/HEVC: the SPS's)."""
    if codec == "AV1":
        # av1C: marker 1 + version 1 (0x81), then profile/level, flags, delay; config OBUs.
        if len(record) < 4 or record[0] != 0x81:
            return None
        return VideoTrack("AV1", bytes(record), size[0], size[1])
    h264 = codec == "H264"
    found = avc_config_nals(record) if h264 else hevc_config_nals(record)
    if found is None:
        return None
    length_size, nals = found
    configs = (parse_avc_sps(nal) if h264 else parse_hevc_sps(nal) for nal in nals)
    config = next((c for c in configs if c is not None), None)
    if config is None:
        return None
    return VideoTrack(codec, record, config.width, config.height, length_size, tuple(nals))


def audio_track(codec: str, config: bytes) -> AudioTrack | None:
    """Build a track from an AudioSpecificConfig or OpusHead; None if it is malformed."""
    parsed = parse_audio_specific_config(config) if codec == "AAC" else parse_opus_head(config)
    if parsed is None:
        return None
    return AudioTrack(codec, bytes(config), parsed.sample_rate, parsed.channels)


class FrameReader:
    """Tracks and frames of one published stream, fed its messages in order."""

    def __init__(self) -> None:
        self.video: VideoTrack | None = None
        self.audio: AudioTrack | None = None
        self.generation = 0  # +1 each time a track appears or its configuration changes
        self.unsupported: str | None = None  # the last codec seen that no muxer here takes
        self._meta_size = (0, 0)  # onMetaData width, height

    def read(self, tag_type: int, timestamp: int, payload: bytes) -> Frame | None:
        if tag_type == TAG_VIDEO:
            return self._video(timestamp, payload)
        if tag_type == TAG_AUDIO:
            return self._audio(timestamp, payload)
        if tag_type == TAG_SCRIPT:
            meta = decode_metadata(payload)
            if meta is not None and meta.width and meta.height:
                self._meta_size = (meta.width, meta.height)
        return None

    def _set_video(self, track: VideoTrack | None) -> None:
        if track is not None and track != self.video:
            self.video = track
            self.generation += 1

    def _set_audio(self, track: AudioTrack | None) -> None:
        if track is not None and track != self.audio:
            self.audio = track
            self.generation += 1

    def _video(self, timestamp: int, p: bytes) -> Frame | None:
        if len(p) < 2:
            return None
        cts = 0
        if p[0] & 0x80:
            header = parse_ex_video_header(p)
            if header is None or header.is_multitrack or header.frame_type == FrameKind.COMMAND:
                return None
            codec = _VIDEO_FOURCC.get(header.fourcc)
            if codec is None:
                self.unsupported = header.fourcc.decode("latin-1")
                return None
            body = header.body
            if header.packet_type == VideoPacketType.SEQUENCE_START:
                self._set_video(video_track(codec, p[body:], self._meta_size))
                return None
            if header.packet_type == VideoPacketType.CODED_FRAMES and codec != "AV1":
                if body + 3 > len(p):
                    return None
                cts = _si24(p, body)
                body += 3
            elif header.packet_type not in (VideoPacketType.CODED_FRAMES, VideoPacketType.CODED_FRAMES_X):
                return None
            frame_type = header.frame_type
        else:
            frame_type, codec_id = p[0] >> 4, p[0] & 0x0F
            codec = _LEGACY_VIDEO.get(codec_id)
            if codec is None:
                self.unsupported = str(codec_id)
                return None
            if len(p) < 5 or frame_type == FrameKind.COMMAND:
                return None
            if p[1] == AvcPacketType.SEQUENCE_HEADER:
                self._set_video(video_track(codec, p[5:], self._meta_size))
                return None
            if p[1] != AvcPacketType.NALU:
                return None  # end of sequence: no picture
            cts = _si24(p, 2)
            body = 5
        video = self.video
        if video is None or video.codec != codec or body >= len(p):
            return None
        return Frame(True, timestamp, cts, frame_type == FrameKind.KEY, p[body:])

    def _audio(self, timestamp: int, p: bytes) -> Frame | None:
        if len(p) < 2:
            return None
        sound_format = p[0] >> 4
        if sound_format == _SOUND_FORMAT_AAC:
            codec = "AAC"
            if p[1] == 0:
                self._set_audio(audio_track(codec, p[2:]))
                return None
            if p[1] != 1:
                return None
            body = 2
        elif sound_format == 9:  # Enhanced RTMP ExHeader
            header = parse_ex_audio_header(p)
            if header is None or header.is_multitrack:
                return None
            found = _AUDIO_FOURCC.get(header.fourcc)
            if found is None:
                self.unsupported = header.fourcc.decode("latin-1")
                return None
            codec, body = found, header.body
            if header.packet_type == AudioPacketType.SEQUENCE_START:
                self._set_audio(audio_track(codec, p[body:]))
                return None
            if header.packet_type != AudioPacketType.CODED_FRAMES:
                return None
        else:
            self.unsupported = f"sound format {sound_format}"
            return None
        audio = self.audio
        if audio is None or audio.codec != codec or body >= len(p):
            return None
        return Frame(False, timestamp, 0, True, p[body:])
