"""Fragmented MP4 recording files (DVR), the pure part: head, box walking, fragment reading.

A recorded .mp4 is fragmented (ISO/IEC 14496-12 8.8) so that whatever reached the disk plays,
whatever happened after (kill -9, power cut, full disk)::

    ftyp | free "srvdvr" + JSON (whose recording, fixed size, rewritten at close)
    | moov (mvhd, a trak per track, mvex: mehd + trex) | moof mdat | moof mdat | ...

The fragments are `srv.media.fmp4`'s (the HLS muxer's): one per keyframe or second. At close
(or when a crash left the file unfinished) the movie's duration is written into mvhd and mehd
in place, and the JSON gets `end` and `recovered`; nothing moves, so finishing needs no room.

`fragments` reads the fragments back as samples (track, dts, cts, duration, sync, where the
bytes are), for time-range playback and for the duration of a file left by a crash.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from srv.media.fmp4 import MOVIE_TIMESCALE, box, ftyp, full_box, init_segment
from srv.media.frames import AudioTrack, VideoTrack

SRV_BOX_SIZE = 512  # the free box with srv's JSON: fixed, so it is rewritten in place
SRV_MAGIC = b"srvdvr"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I32 = struct.Struct(">i")


def srv_box(values: dict[str, Any]) -> bytes:
    text = SRV_MAGIC + json.dumps(values, separators=(",", ":")).encode()
    if len(text) > SRV_BOX_SIZE - 8:
        raise ValueError("recording info too long for its box")
    return box(b"free", text.ljust(SRV_BOX_SIZE - 8, b" "))


def read_srv_box(payload: bytes) -> dict[str, Any] | None:
    if not payload.startswith(SRV_MAGIC):
        return None
    try:
        found = json.loads(payload[len(SRV_MAGIC):].decode())
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def file_head(video: VideoTrack | None, audio: AudioTrack | None, values: dict[str, Any]) -> bytes:
    """ftyp + srv box + moov (with mehd) for the tracks known when the file starts."""
    init = init_segment(video, audio)
    head = ftyp()
    moov = init[len(head):]
    # mvex: mehd (version 1, 64-bit fragment_duration) before the trex boxes, patched at close
    mvex_at = _find(moov, 8, len(moov), b"mvex")
    assert mvex_at is not None
    start, size = mvex_at
    mehd = full_box(b"mehd", 1, 0, _U64.pack(0))
    mvex = box(b"mvex", mehd, moov[start + 8:start + size])
    body = moov[8:start] + mvex + moov[start + size:]
    return head + srv_box(values) + box(b"moov", body)


def boxes(data: bytes | bytearray, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of each whole box in data[start:end]; stops at a partial one."""
    end = len(data) if end is None else end
    pos = start
    while end - pos >= 8:
        size = _U32.unpack_from(data, pos)[0]
        kind = bytes(data[pos + 4:pos + 8])
        if size == 1 and end - pos >= 16:
            size = _U64.unpack_from(data, pos + 8)[0]
        if size < 8 or pos + size > end:
            return
        yield kind, pos, size
        pos += size


def _find(data: bytes | bytearray, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, pos, size in boxes(data, start, end):
        if k == kind:
            return pos, size
    return None


def _child(data: bytes | bytearray, parent: tuple[int, int], kind: bytes) -> tuple[int, int] | None:
    pos, size = parent
    return _find(data, pos + 8, pos + size, kind)


def timescales(moov: bytes) -> dict[int, int]:
    """track id -> its media timescale, from a moov box's bytes."""
    found: dict[int, int] = {}
    for kind, pos, size in boxes(moov, 8):
        if kind != b"trak":
            continue
        tkhd = _child(moov, (pos, size), b"tkhd")
        mdia = _child(moov, (pos, size), b"mdia")
        mdhd = _child(moov, mdia, b"mdhd") if mdia else None
        if tkhd is None or mdhd is None:
            continue
        v_tkhd = moov[tkhd[0] + 8]
        track_id = _U32.unpack_from(moov, tkhd[0] + (28 if v_tkhd == 1 else 20))[0]
        v_mdhd = moov[mdhd[0] + 8]
        found[track_id] = _U32.unpack_from(moov, mdhd[0] + (28 if v_mdhd == 1 else 20))[0]
    return found


def patch_duration(moov: bytearray, duration_ms: int) -> None:
    """Write the movie's duration (ms: mvhd's timescale is 1000) into mvhd and mehd, in place."""
    mvhd = _find(moov, 8, len(moov), b"mvhd")
    if mvhd is not None:
        if moov[mvhd[0] + 8] == 1:
            _U64.pack_into(moov, mvhd[0] + 32, duration_ms)
        else:
            _U32.pack_into(moov, mvhd[0] + 24, min(duration_ms, 0xFFFFFFFF))
    mvex = _find(moov, 8, len(moov), b"mvex")
    mehd = _child(moov, mvex, b"mehd") if mvex else None
    if mehd is not None and moov[mehd[0] + 8] == 1:
        _U64.pack_into(moov, mehd[0] + 12, duration_ms)


def _field(data: bytes, pos: int, present: int, default: int = 0, fmt: struct.Struct = _U32) -> tuple[int, int]:
    """An optional box field: (its value or `default`, the position after it)."""
    if not present:
        return default, pos
    return int(fmt.unpack_from(data, pos)[0]), pos + fmt.size


@dataclass(slots=True)
class SampleRef:
    """One sample of a recorded fragment: times in its track's timescale, bytes by position."""

    track_id: int
    dts: int
    cts: int
    duration: int
    sync: bool
    offset: int  # in the file
    size: int


def fragment_samples(moof: bytes, moof_offset: int) -> list[SampleRef]:
    """The samples a moof describes (tfhd default-base-is-moof and explicit data offsets, as
    srv.media.fmp4 writes them; trun fields read by their flags)."""
    out: list[SampleRef] = []
    for kind, pos, size in boxes(moof, 8):
        if kind != b"traf":
            continue
        track_id, base, dts = 0, moof_offset, 0
        default_duration = default_size = default_flags = 0
        runs = []
        for k, p, _s in boxes(moof, pos + 8, pos + size):
            flags = _U32.unpack_from(moof, p + 8)[0] & 0xFFFFFF
            version = moof[p + 8]
            if k == b"tfhd":
                track_id = _U32.unpack_from(moof, p + 12)[0]
                q = p + 16
                base, q = _field(moof, q, flags & 0x01, base, _U64)
                q += 4 if flags & 0x02 else 0  # sample_description_index
                default_duration, q = _field(moof, q, flags & 0x08)
                default_size, q = _field(moof, q, flags & 0x10)
                default_flags, q = _field(moof, q, flags & 0x20)
            elif k == b"tfdt":
                dts = _U64.unpack_from(moof, p + 12)[0] if version == 1 else _U32.unpack_from(moof, p + 12)[0]
            elif k == b"trun":
                runs.append((p, flags, version))
        for p, flags, version in runs:
            count = _U32.unpack_from(moof, p + 12)[0]
            q = p + 16
            delta, q = _field(moof, q, flags & 0x01, 0, _I32)
            offset = base + delta
            first_flags, q = _field(moof, q, flags & 0x04, -1)
            for i in range(count):
                duration, q = _field(moof, q, flags & 0x100, default_duration)
                sample_size, q = _field(moof, q, flags & 0x200, default_size)
                sample_flags, q = _field(moof, q, flags & 0x400, first_flags if i == 0 and first_flags >= 0
                                         else default_flags)
                cts, q = _field(moof, q, flags & 0x800, 0, _I32 if version else _U32)
                sync = not sample_flags & 0x00010000
                out.append(SampleRef(track_id, dts, cts, duration, sync, offset, sample_size))
                dts += duration
                offset += sample_size
    return out


def movie_duration_ms(ends: dict[int, int], scales: dict[int, int]) -> int:
    """The movie's duration: the latest track end (track timescale units) in ms."""
    return max((end * MOVIE_TIMESCALE // scales[t] for t, end in ends.items() if scales.get(t)), default=0)
