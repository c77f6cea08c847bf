"""Codec sniffing on real encoder output, checked against ffprobe.

The installed ffmpeg (5.1) writes legacy FLV only (H.264/AAC/MP3); Enhanced RTMP FLV needs
ffmpeg >= 6.1. So HEVC, AV1 and VP9 are encoded to raw bitstreams (Annex B, IVF) by ffmpeg
and wrapped here into Enhanced RTMP tags as a publisher such as OBS would, then written as a
real .flv file and read back.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from media_tools import LAVFI_VIDEO, ffmpeg, hevc_access_units, hevc_type, hvcc

from srv.media.codec import (
    audio_is_sequence_header,
    parse_audio,
    parse_video,
    video_is_keyframe,
    video_is_sequence_header,
)
from srv.media.flv import FLV_HEADER, TAG_AUDIO, TAG_VIDEO, FlvTag, encode_tag, read_flv_file
from srv.media.metadata import describe_stream
from srv.media.video_config import parse_hevc_sequence_header, parse_video_sequence_header


def ffprobe_key_flags(path: Path, stream: str = "v") -> list[bool]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return ["K" in line for line in out.split()]


def ffprobe_stream(path: Path, stream: str) -> dict[str, str]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "stream=width,height,sample_rate,channels,profile",
            "-of",
            "default=nw=1",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.split("\n") if "=" in line)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def encode_flv(media_dir: Path, name: str, size: str, *args: str) -> Path:
    path = media_dir / name
    if not path.exists():
        ffmpeg(
            *LAVFI_VIDEO[:3],
            LAVFI_VIDEO[3].format(size=size),
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            "2",
            *args,
            "-f",
            "flv",
            str(path),
        )
    return path


H264_CASES = {
    # name: (size, ffmpeg args, sps profile_idc)
    "high444.flv": ("320x240", ["-c:v", "libx264", "-g", "50", "-c:a", "aac"], 244),
    "high.flv": (
        "320x240",
        [
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-ar",
            "48000",
            "-ac",
            "2",
        ],
        100,
    ),
    "cropped.flv": (
        "318x178",
        [
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "30",
            "-x264-params",
            "cqm=jvt",
            "-c:a",
            "aac",
        ],
        100,
    ),
    "baseline_mp3.flv": (
        "176x144",
        [
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "10",
            "-c:a",
            "libmp3lame",
            "-ar",
            "22050",
        ],
        66,
    ),
}


@pytest.mark.parametrize("name", sorted(H264_CASES))
def test_h264_flv_from_ffmpeg(media_dir: Path, name: str) -> None:
    size, args, profile = H264_CASES[name]
    path = encode_flv(media_dir, name, size, *args)
    tags = list(read_flv_file(path))
    video = [t for t in tags if t.tag_type == TAG_VIDEO]
    audio = [t for t in tags if t.tag_type == TAG_AUDIO]

    # The sequence header comes first and only once; then frames whose keyframes are
    # exactly where ffprobe puts them; ffmpeg ends with an end-of-sequence tag (also "key").
    assert video_is_sequence_header(video[0].payload)
    assert not any(video_is_sequence_header(t.payload) for t in video[1:])
    assert video[-1].payload[:2] == b"\x17\x02"
    frames = video[1:-1]
    assert [video_is_keyframe(t.payload) for t in frames] == ffprobe_key_flags(path)
    assert all(parse_video(t.payload) is not None for t in video)

    width, height = (int(x) for x in size.split("x"))
    config = parse_video_sequence_header(video[0].payload)
    assert config is not None and (config.width, config.height) == (width, height)
    assert config.profile == profile

    probed = ffprobe_stream(path, "a")
    if "aac" in args:
        assert audio_is_sequence_header(audio[0].payload)
        assert not any(audio_is_sequence_header(t.payload) for t in audio[1:])
        sh = parse_audio(audio[0].payload)
        assert sh is not None and sh.codec == "AAC" and sh.aac_object_type == 2
        assert (sh.sample_rate, sh.channels) == (
            int(probed["sample_rate"]),
            int(probed["channels"]),
        )
    else:
        assert not any(audio_is_sequence_header(t.payload) for t in audio)
        info = parse_audio(audio[0].payload)
        assert info is not None and info.codec == "MP3"
        assert (info.sample_rate, info.channels) == (int(probed["sample_rate"]), 1)

    described = describe_stream(video[0].payload, audio[0].payload)
    assert described["video"] is not None and described["audio"] is not None
    assert described["video"]["width"] == width and described["video"]["height"] == height
    assert described["audio"]["sample_rate"] == int(probed["sample_rate"])


# --- Enhanced RTMP from raw bitstreams ------------------------------------------------------

def test_enhanced_hevc_from_x265(media_dir: Path) -> None:
    raw = media_dir / "x265.hevc"
    ffmpeg(
        *LAVFI_VIDEO[:3],
        LAVFI_VIDEO[3].format(size="322x182"),
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx265",
        "-x265-params",
        "keyint=25:min-keyint=25:open-gop=0:aud=1:log-level=error",
        "-f",
        "hevc",
        str(raw),
    )
    units = hevc_access_units(raw.read_bytes())
    params = {hevc_type(n): n for n in units[0] if hevc_type(n) in (32, 33, 34)}
    record = hvcc(params[32], params[33], params[34])

    tags = [FlvTag(TAG_VIDEO, 0, b"\x90hvc1" + record)]
    for i, unit in enumerate(units):
        irap = any(16 <= hevc_type(n) <= 23 for n in unit)
        body = b"".join(struct.pack(">I", len(n)) + n for n in unit if hevc_type(n) < 32)
        frame_type = 1 if irap else 2
        tags.append(
            FlvTag(TAG_VIDEO, i * 40, bytes((0x80 | frame_type << 4 | 3,)) + b"hvc1" + body)
        )
    flv = media_dir / "hevc_enhanced.flv"
    flv.write_bytes(
        FLV_HEADER(has_audio=False)
        + b"".join(encode_tag(t.tag_type, t.timestamp, t.payload) for t in tags)
    )

    read = list(read_flv_file(flv))
    assert read == tags
    assert video_is_sequence_header(read[0].payload)
    assert [video_is_keyframe(t.payload) for t in read[1:]] == ffprobe_key_flags(raw)
    infos = [parse_video(t.payload) for t in read]
    assert all(i is not None and i.codec == "HEVC" and i.is_enhanced for i in infos)

    config = parse_hevc_sequence_header(read[0].payload)
    assert config is not None and (config.width, config.height) == (322, 182)
    assert config.profile == 1  # Main
    legacy = b"\x1c\x00\x00\x00\x00" + record  # the codec id 12 form
    assert video_is_sequence_header(legacy) and parse_hevc_sequence_header(legacy) == config
    described = describe_stream(read[0].payload)["video"]
    assert described == {
        "codec": "HEVC",
        "profile": "Main",
        "level": described["level"],
        "width": 322,
        "height": 182,
    }


def ivf_frames(data: bytes) -> list[bytes]:
    assert data[:4] == b"DKIF"
    pos = struct.unpack_from("<H", data, 6)[0]
    frames = []
    while pos + 12 <= len(data):
        size = struct.unpack_from("<I", data, pos)[0]
        frames.append(data[pos + 12 : pos + 12 + size])
        pos += 12 + size
    return frames


@pytest.mark.parametrize(
    ("fourcc", "codec", "args"),
    [
        (b"av01", "AV1", ["-c:v", "libsvtav1", "-preset", "12", "-g", "25"]),
        (
            b"vp09",
            "VP9",
            ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "25"],
        ),
    ],
)
def test_enhanced_av1_and_vp9(media_dir: Path, fourcc: bytes, codec: str, args: list[str]) -> None:
    raw = media_dir / f"{codec}.ivf"
    ffmpeg(
        *LAVFI_VIDEO[:3],
        LAVFI_VIDEO[3].format(size="320x240"),
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        *args,
        "-f",
        "ivf",
        str(raw),
    )
    keys = ffprobe_key_flags(raw)
    frames = ivf_frames(raw.read_bytes())
    assert len(frames) == len(keys) and keys[0]
    payloads = [bytes((0x90,)) + fourcc + b"\x81\x00\x0c\x00"]  # SequenceStart, config record
    payloads += [
        bytes((0x80 | (1 if k else 2) << 4 | 1,)) + fourcc + f
        for k, f in zip(keys, frames, strict=True)
    ]
    assert video_is_sequence_header(payloads[0])
    assert [video_is_keyframe(p) for p in payloads[1:]] == keys
    assert not any(video_is_sequence_header(p) for p in payloads[1:])
    infos = [parse_video(p) for p in payloads]
    assert all(i is not None and i.codec == codec and i.fourcc == fourcc.decode() for i in infos)
    described = describe_stream(payloads[0], None, {"width": 320.0, "height": "240"})
    assert described["video"] == {
        "codec": codec,
        "profile": None,
        "level": None,
        "width": 320,
        "height": 240,
    }
    assert described["audio"] is None
