"""FLV tags and codec sniffing: pure functions over RTMP audio/video message bodies.

Codecs pass through the server untouched; this package only finds what the stream hub needs
(keyframes, sequence headers, codec ids) and what the API reports (codec, profile, level,
resolution, sample rate). Every parser takes attacker-controlled publisher bytes and never
raises on garbage: it answers None or False instead.
"""

from srv.media.audio_config import AudioConfig, parse_audio_specific_config
from srv.media.codec import (
    AudioInfo,
    AudioPacketType,
    AvcPacketType,
    FrameKind,
    VideoInfo,
    VideoPacketType,
    audio_is_sequence_header,
    parse_audio,
    parse_video,
    video_is_keyframe,
    video_is_sequence_header,
)
from srv.media.flv import (
    FLV_HEADER,
    TAG_AUDIO,
    TAG_SCRIPT,
    TAG_VIDEO,
    FlvError,
    FlvReader,
    FlvTag,
    encode_tag,
    read_flv_file,
)
from srv.media.metadata import StreamMetadata, describe_stream
from srv.media.video_config import (
    VideoConfig,
    parse_avc_sequence_header,
    parse_hevc_sequence_header,
    parse_video_sequence_header,
)

__all__ = [
    "FLV_HEADER",
    "TAG_AUDIO",
    "TAG_SCRIPT",
    "TAG_VIDEO",
    "AudioConfig",
    "AudioInfo",
    "AudioPacketType",
    "AvcPacketType",
    "FlvError",
    "FlvReader",
    "FlvTag",
    "FrameKind",
    "StreamMetadata",
    "VideoConfig",
    "VideoInfo",
    "VideoPacketType",
    "audio_is_sequence_header",
    "describe_stream",
    "encode_tag",
    "parse_audio",
    "parse_audio_specific_config",
    "parse_avc_sequence_header",
    "parse_hevc_sequence_header",
    "parse_video",
    "parse_video_sequence_header",
    "read_flv_file",
    "video_is_keyframe",
    "video_is_sequence_header",
]
