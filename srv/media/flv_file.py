"""FLV recording files (DVR), the pure part: the head of a file and how it reads back.

A recorded .flv is laid out as SRS writes one::

    FLV header (audio/video flags) | onMetaData | video sequence header | audio sequence
    header | the frames, from a keyframe

`onMetaData` is the publisher's values plus `duration`, `filesize` and srv's own keys
(`srvvhost`, `srvapp`, `srvstream`: whose recording it is; `srvstart`: the wall-clock ms of
its first frame; `srvrecovered`: finished after a crash). At close the head is rebuilt with
the final `duration` and `filesize` and a `keyframes` object (`times` in seconds,
`filepositions` in bytes: the index players seek with, as yamdi/flvmeta write it). AMF0
numbers are fixed-size, so `metadata_head` built twice with the same keyframe count has the
same length: the positions it gives are computed against that length.

`starts_picture` is the cut test: a keyframe with a picture in it (not a sequence header,
an AVC/HEVC end of sequence, a command frame).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from srv.media.codec import (
    AvcPacketType,
    VideoPacketType,
    parse_ex_video_header,
    video_is_keyframe,
    video_is_sequence_header,
)
from srv.media.flv import FLV_HEADER, TAG_SCRIPT, TAG_VIDEO, encode_tag
from srv.rtmp import amf0
from srv.rtmp.amf_values import EcmaArray

TAG_HEAD = struct.Struct(">BBHBHB3x")  # type, size (24 bits as B+H), ts (24 as B+H), ts ext
SRV_KEYS = ("srvvhost", "srvapp", "srvstream", "srvstart", "srvrecovered")


def starts_picture(tag_type: int, payload: bytes) -> bool:
    """True for a video message that is a keyframe holding a picture: where a file may start."""
    if tag_type != TAG_VIDEO or not video_is_keyframe(payload) or video_is_sequence_header(payload):
        return False
    if payload[0] & 0x80:
        header = parse_ex_video_header(payload)
        return header is not None and not header.is_multitrack and header.packet_type in (
            VideoPacketType.CODED_FRAMES, VideoPacketType.CODED_FRAMES_X)
    return payload[1] == AvcPacketType.NALU


def read_tag_head(head: bytes) -> tuple[int, int, int]:
    """(type, data size, timestamp ms) of an 11-byte FLV tag header."""
    kind, s_hi, s_lo, t_hi, t_lo, t_ext = TAG_HEAD.unpack(head[:11])
    return kind & 0x1F, s_hi << 16 | s_lo, t_ext << 24 | t_hi << 16 | t_lo


def metadata_values(payload: bytes | None) -> dict[str, Any]:
    """The onMetaData object of a type-18 payload (empty when there is none or it is garbage)."""
    if not payload:
        return {}
    try:
        values = amf0.decode(payload)
    except Exception:  # noqa: BLE001 - whatever a publisher sent, no values is the answer
        return {}
    return next((dict(v) for v in values if isinstance(v, dict)), {})


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """Whose recording a file is: what the API lists and the hooks name."""

    vhost: str
    app: str
    stream: str
    start_ms: float  # wall clock of the first frame, ms since the epoch


def srv_values(info: RecordingInfo, recovered: bool = False) -> dict[str, Any]:
    return {"srvvhost": info.vhost, "srvapp": info.app, "srvstream": info.stream, "srvstart": float(info.start_ms),
            "srvrecovered": recovered}


def info_of(values: Mapping[str, Any]) -> RecordingInfo | None:
    """The RecordingInfo an onMetaData (or an MP4's srv box) carries; None if it is not ours."""
    try:
        return RecordingInfo(str(values["srvvhost"]), str(values["srvapp"]), str(values["srvstream"]),
                             float(values["srvstart"]))
    except (KeyError, TypeError, ValueError):
        return None


def metadata_head(publisher_values: Mapping[str, Any], info: RecordingInfo, *, has_audio: bool,
                  has_video: bool, duration: float = 0.0, filesize: int = 0,
                  keyframes: tuple[list[float], list[int]] | None = None, recovered: bool = False) -> bytes:
    """FLV header + onMetaData tag. `keyframes`: (times in s, file positions in bytes)."""
    values = EcmaArray({k: v for k, v in publisher_values.items()
                        if k not in ("duration", "filesize", "keyframes", *SRV_KEYS)})
    values["duration"] = float(duration)
    values["filesize"] = float(filesize)
    values.update(srv_values(info, recovered))
    if keyframes is not None:
        times, positions = keyframes
        values["keyframes"] = {"times": [float(t) for t in times], "filepositions": [float(p) for p in positions]}
    return FLV_HEADER(has_audio, has_video) + encode_tag(TAG_SCRIPT, 0, amf0.encode("onMetaData", values))
