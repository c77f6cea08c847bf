"""onMetaData values and the SRS-style stream description served by the HTTP API.

onMetaData is whatever the publisher's encoder wrote: numbers may arrive as floats, strings
or booleans, codec ids as legacy numbers (7), FourCC numbers (1752589105.0 == 'hvc1') or
FourCC strings. `StreamMetadata.from_amf` turns that into clean optional values.

`describe` builds a stream's `StreamDescription` (what SRS's /api/v1/streams shows as "video"
and "audio", SrsStatisticStream::dumps): codec/profile/level/width/height and
codec/sample_rate/channel/profile, preferring what the sequence headers say over onMetaData.
The hub computes it once each time a stream's headers change and the API is sent that small
frozen value; `describe_stream` is the same in the API's dict shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from srv.media.audio_config import AAC_OBJECT_NAMES
from srv.media.codec import (
    AUDIO_FORMAT_NAMES,
    AUDIO_FOURCC_NAMES,
    VIDEO_CODEC_NAMES,
    VIDEO_FOURCC_NAMES,
    parse_audio,
    parse_video,
)
from srv.media.video_config import (
    avc_level_name,
    avc_profile_name,
    hevc_level_name,
    hevc_profile_name,
    parse_video_sequence_header,
)
from srv.rtmp import amf0


def metadata_number(value: object) -> float | None:
    """A finite number from an AMF value: int/float, or a numeric string; not a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str | bytes):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def metadata_int(value: object) -> int | None:
    """A non-negative integer (width, height, rate) from an AMF value, else None."""
    number = metadata_number(value)
    if number is None or number < 0 or number > 1 << 31:
        return None
    return int(number)


def _codec_name(
    value: object, legacy: Mapping[int, str], fourccs: Mapping[bytes, str]
) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 4 and text.encode("latin-1", "replace") in fourccs:
            return fourccs[text.encode("latin-1")]
        if text in legacy.values():
            return text
    number = metadata_int(value)
    if number is None:
        return None
    if number < 256:
        return legacy.get(number)
    if number <= 0xFFFFFFFF:
        return fourccs.get(number.to_bytes(4, "big"))
    return None


def metadata_video_codec(value: object) -> str | None:
    """videocodecid -> "H264", "HEVC", "AV1", ... or None."""
    return _codec_name(value, VIDEO_CODEC_NAMES, VIDEO_FOURCC_NAMES)


def metadata_audio_codec(value: object) -> str | None:
    """audiocodecid -> "AAC", "MP3", "Opus", ... or None."""
    return _codec_name(value, AUDIO_FORMAT_NAMES, AUDIO_FOURCC_NAMES)


@dataclass(frozen=True, slots=True)
class StreamMetadata:
    """The onMetaData fields the server reports; None where absent or nonsense."""

    width: int | None = None
    height: int | None = None
    framerate: float | None = None
    video_codec: str | None = None
    video_data_rate: float | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_data_rate: float | None = None
    encoder: str | None = None

    @classmethod
    def from_amf(cls, meta: Mapping[str, object]) -> StreamMetadata:
        """Pick the known fields out of an onMetaData object / ECMA array."""
        framerate = metadata_number(meta.get("framerate", meta.get("fps")))
        channels = metadata_int(meta.get("audiochannels"))
        if channels is None and isinstance(meta.get("stereo"), bool):
            channels = 2 if meta["stereo"] else 1
        encoder = meta.get("encoder")
        return cls(
            width=metadata_int(meta.get("width")),
            height=metadata_int(meta.get("height")),
            framerate=framerate if framerate is not None and framerate >= 0 else None,
            video_codec=metadata_video_codec(meta.get("videocodecid")),
            video_data_rate=metadata_number(meta.get("videodatarate")),
            audio_codec=metadata_audio_codec(meta.get("audiocodecid")),
            audio_sample_rate=metadata_int(meta.get("audiosamplerate")),
            audio_channels=channels,
            audio_data_rate=metadata_number(meta.get("audiodatarate")),
            encoder=encoder if isinstance(encoder, str) else None,
        )


def decode_metadata(payload: bytes | None) -> StreamMetadata | None:
    """The onMetaData of a type-18 payload (`"onMetaData", {...}`), or None."""
    if not payload:
        return None
    try:
        values = amf0.decode(payload)
    except Exception:  # noqa: BLE001 - whatever a publisher sent, no description is the answer
        return None
    for v in values:
        if isinstance(v, dict):
            return StreamMetadata.from_amf(v)
    return None


@dataclass(frozen=True, slots=True)
class VideoDescription:
    codec: str
    profile: str | None
    level: str | None
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class AudioDescription:
    codec: str
    sample_rate: int
    channel: int
    profile: str


@dataclass(frozen=True, slots=True)
class StreamDescription:
    """A stream's codecs as the API reports them; a kind the stream lacks is None."""

    video: VideoDescription | None = None
    audio: AudioDescription | None = None

    def as_api(self) -> dict[str, dict[str, object] | None]:
        """{"video": {...} | None, "audio": {...} | None}, the shape of SRS's /api/v1/streams."""
        return {"video": asdict(self.video) if self.video else None,
                "audio": asdict(self.audio) if self.audio else None}


def _describe_video(video: bytes | None, meta: StreamMetadata) -> VideoDescription | None:
    info = parse_video(video) if video else None
    codec = info.codec if info is not None and info.codec != "Unknown" else meta.video_codec
    if codec is None:
        return None
    config = parse_video_sequence_header(video) if video else None
    profile: str | None
    level: str | None
    if codec == "H264":
        profile = avc_profile_name(config.profile) if config else "Other"
        level = avc_level_name(config.level) if config else "Other"
    elif codec == "HEVC":
        profile = hevc_profile_name(config.profile) if config else "Other"
        level = hevc_level_name(config.level) if config else "Other"
    elif codec in ("AV1", "VP9"):
        profile = level = None
    else:
        profile = level = "Other"
    return VideoDescription(codec, profile, level, config.width if config else meta.width or 0,
                            config.height if config else meta.height or 0)


def _describe_audio(audio: bytes | None, meta: StreamMetadata) -> AudioDescription | None:
    info = parse_audio(audio) if audio else None
    if info is not None:
        codec: str | None = info.codec
        sample_rate = info.sample_rate or meta.audio_sample_rate or 0
        channels = info.channels or meta.audio_channels or 0
        object_type = info.aac_object_type
    else:
        codec = meta.audio_codec
        sample_rate = meta.audio_sample_rate or 0
        channels = meta.audio_channels or 0
        object_type = None
    if codec is None:
        return None
    return AudioDescription(codec, sample_rate, channels, AAC_OBJECT_NAMES.get(object_type or 0, "Other"))


def describe(video: bytes | None = None, audio: bytes | None = None,
             metadata: StreamMetadata | None = None) -> StreamDescription:
    """A stream's description from its sequence headers (for codecs that have none, such as
    MP3, any recent message of that kind) and its onMetaData."""
    meta = metadata if metadata is not None else StreamMetadata()
    return StreamDescription(_describe_video(video, meta), _describe_audio(audio, meta))


def describe_stream(
    video: bytes | None = None,
    audio: bytes | None = None,
    metadata: Mapping[str, object] | StreamMetadata | None = None,
) -> dict[str, dict[str, object] | None]:
    """The "video" and "audio" objects of an SRS /api/v1/streams entry.

    `video` / `audio` are the stream's cached sequence headers (for codecs that have none,
    such as MP3, any recent message of that kind); `metadata` its onMetaData. Shape:
    {"video": {"codec": "H264", "profile": "High", "level": "3.1", "width": 320,
    "height": 240}, "audio": {"codec": "AAC", "sample_rate": 44100, "channel": 2,
    "profile": "LC"}}; a kind the stream lacks is None (JSON null), as in SRS.
    """
    if metadata is not None and not isinstance(metadata, StreamMetadata):
        metadata = StreamMetadata.from_amf(metadata)
    return describe(video, audio, metadata).as_api()
