"""Media helpers shared by the codec and muxer tests: running ffmpeg, and building HEVC
decoder configuration records and access units from x265's Annex B output, as an Enhanced
RTMP publisher would send them."""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

from srv.media.flv import TAG_AUDIO, TAG_VIDEO, FlvTag

LAVFI_VIDEO = ["-f", "lavfi", "-i", "testsrc=size={size}:rate=25"]


def ffmpeg(*args: str) -> None:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.fail(f"ffmpeg {' '.join(args)} failed: {done.stderr}")


_START_CODE = re.compile(b"\x00\x00\x01")


def annexb_nals(data: bytes) -> list[bytes]:
    starts = [m.end() for m in _START_CODE.finditer(data)]
    nals = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nals.append(data[start:end].rstrip(b"\x00"))
    return nals


def hevc_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def hvcc(vps: bytes, sps: bytes, pps: bytes) -> bytes:
    # Fixed part: the profile_tier_level bytes are copied from the SPS; the rest is filler a
    # parser of this record must step over (22 bytes, then numOfArrays).
    head = bytes((1,)) + sps[3:15] + b"\xf0\x00\xfc\xfd\xf8\xf8\x00\x00\x0f"
    arrays = b"".join(
        bytes((0x80 | hevc_type(nal),)) + struct.pack(">HH", 1, len(nal)) + nal
        for nal in (vps, sps, pps)
    )
    return head + bytes((3,)) + arrays


def hevc_access_units(data: bytes) -> list[list[bytes]]:
    units: list[list[bytes]] = []
    for nal in annexb_nals(data):
        if hevc_type(nal) == 35:  # access unit delimiter
            units.append([])
        elif units:
            units[-1].append(nal)
    return units


def encode_h264_aac_flv(path: Path, seconds: int = 4) -> Path:
    """What a publisher sends: ffmpeg's FLV of testsrc + a sine, x264 with B-frames (so
    composition offsets are not zero) and a keyframe every second, AAC-LC 44.1 kHz mono."""
    if not path.exists():
        ffmpeg(
            *LAVFI_VIDEO[:3], LAVFI_VIDEO[3].format(size="320x240"),
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-g", "25", "-bf", "2",
            "-c:a", "aac", "-f", "flv", str(path),
        )
    return path


def hevc_enhanced_tags(media_dir: Path, seconds: int = 2) -> list[FlvTag]:
    """x265's Annex B output as an Enhanced RTMP publisher sends it: a SequenceStart with the
    hvcC, then one CodedFramesX message per access unit (25 fps, a keyframe every second)."""
    raw = media_dir / "x265.hevc"
    if not raw.exists():
        ffmpeg(
            *LAVFI_VIDEO[:3], LAVFI_VIDEO[3].format(size="322x182"), "-t", str(seconds),
            "-pix_fmt", "yuv420p", "-c:v", "libx265",
            "-x265-params", "keyint=25:min-keyint=25:open-gop=0:bframes=0:aud=1:log-level=error",
            "-f", "hevc", str(raw),
        )
    units = hevc_access_units(raw.read_bytes())
    params = {hevc_type(n): n for n in units[0] if hevc_type(n) in (32, 33, 34)}
    tags = [FlvTag(TAG_VIDEO, 0, b"\x90hvc1" + hvcc(params[32], params[33], params[34]))]
    for i, unit in enumerate(units):
        irap = any(16 <= hevc_type(n) <= 23 for n in unit)
        body = b"".join(struct.pack(">I", len(n)) + n for n in unit if hevc_type(n) < 32)
        tags.append(FlvTag(TAG_VIDEO, i * 40, bytes((0x80 | (1 if irap else 2) << 4 | 3,)) + b"hvc1" + body))
    return tags


def ffprobe_packets(path: Path, stream: str) -> list[tuple[int, int, bool]]:
    """(pts, dts, keyframe) of each packet of the first `stream` ("v" or "a"), in stream time base."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", f"{stream}:0", "-show_entries", "packet=pts,dts,flags",
         "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    packets = []
    for line in out.split():
        pts, dts, flags = line.split(",")[:3]
        packets.append((int(pts), int(dts), "K" in flags))
    return packets


def ffprobe_streams(path: Path) -> list[dict[str, str]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,sample_rate,channels",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    streams: list[dict[str, str]] = json.loads(out)["streams"]
    return streams


def ffmpeg_decode_errors(path: Path) -> str:
    """What `ffmpeg -v error -i path -f null -` prints: empty when the file decodes cleanly."""
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True,
    )
    return done.stderr + ("" if done.returncode == 0 else f"exit status {done.returncode}")


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("leb128 too long")


def av1_obus(frame: bytes) -> list[tuple[int, bytes]]:
    """(obu_type, whole OBU) of a low-overhead bitstream temporal unit (sizes present)."""
    obus = []
    pos = 0
    while pos < len(frame):
        header = frame[pos]
        start = pos + 1 + (1 if header & 0x04 else 0)
        size, body = _leb128(frame, start)
        obus.append(((header >> 3) & 0x0F, frame[pos : body + size]))
        pos = body + size
    return obus


def av1c(sequence_header_obu: bytes) -> bytes:
    """AV1CodecConfigurationRecord for an 8-bit 4:2:0 stream without timing info (what SVT-AV1
    writes), with the sequence header as its config OBU."""
    _, body = _leb128(sequence_header_obu, 1)
    bits = int.from_bytes(sequence_header_obu[body : body + 4], "big")
    profile = bits >> 29
    assert not (bits >> 26) & 1, "timing info present: not handled here"
    level = (bits >> 7) & 0x1F  # after profile 3, still 1, reduced 1, timing 1, delay 1, count 5, idc 12
    return bytes((0x81, profile << 5 | level, 0x0C, 0)) + sequence_header_obu


def av1_enhanced_tags(media_dir: Path, seconds: int = 2) -> list[FlvTag]:
    """SVT-AV1's IVF output as an Enhanced RTMP publisher sends it: SequenceStart with the
    av1C, then CodedFrames without temporal delimiters (as ffmpeg's FLV muxer writes AV1)."""
    raw = media_dir / "svtav1.ivf"
    if not raw.exists():
        ffmpeg(*LAVFI_VIDEO[:3], LAVFI_VIDEO[3].format(size="320x240"), "-t", str(seconds),
               "-pix_fmt", "yuv420p", "-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-f", "ivf", str(raw))
    data = raw.read_bytes()
    pos = struct.unpack_from("<H", data, 6)[0]
    frames = []
    while pos + 12 <= len(data):
        size = struct.unpack_from("<I", data, pos)[0]
        frames.append(av1_obus(data[pos + 12 : pos + 12 + size]))
        pos += 12 + size
    sequence_header = next(obu for t, obu in frames[0] if t == 1)
    tags = [FlvTag(TAG_VIDEO, 0, b"\x90av01" + av1c(sequence_header))]
    for i, obus in enumerate(frames):
        key = any(t == 1 for t, _ in obus)
        body = b"".join(obu for t, obu in obus if t != 2)
        tags.append(FlvTag(TAG_VIDEO, i * 40, bytes((0x80 | (1 if key else 2) << 4 | 1,)) + b"av01" + body))
    return tags


def ogg_packets(data: bytes) -> list[bytes]:
    """The packets of a single-stream Ogg file (RFC 3533 lacing)."""
    packets, current = [], b""
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS"
        count = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + count]
        pos += 27 + count
        for size in lacing:
            current += data[pos : pos + size]
            pos += size
            if size < 255:
                packets.append(current)
                current = b""
    return packets


def opus_enhanced_tags(media_dir: Path, seconds: int = 2) -> list[FlvTag]:
    """libopus output as an Enhanced RTMP publisher sends it: SequenceStart with the OpusHead,
    then one CodedFrames message per 20 ms packet."""
    raw = media_dir / "sine.opus"
    if not raw.exists():
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds), "-ac", "2",
               "-c:a", "libopus", "-frame_duration", "20", "-f", "ogg", str(raw))
    packets = ogg_packets(raw.read_bytes())
    assert packets[0].startswith(b"OpusHead") and packets[1].startswith(b"OpusTags")
    tags = [FlvTag(TAG_AUDIO, 0, b"\x90Opus" + packets[0])]
    tags += [FlvTag(TAG_AUDIO, i * 20, b"\x91Opus" + p) for i, p in enumerate(packets[2:])]
    return tags
