"""Time-range playback of DVR recordings: ONE fragmented MP4 cut from the files that cover a
wall-clock range, produced piece by piece (a generator: never the whole in memory). Blocking:
each `next()` runs in a disk thread.

The output starts on the last keyframe at or before `start` (so its first frame decodes) and
ends before `start + duration`; its time starts at 0 there. Files are FLV (their tags are
muxed by `srv.media.fmp4.Fmp4Muxer`) or fragmented MP4 (their samples are copied into new
fragments); a file's time is placed on the wall clock from its recorded start.
"""

from __future__ import annotations

from collections.abc import Iterator

from srv.app.dvr_files import DvrFile, container_of, scan_flv, scan_mp4
from srv.media.codec import audio_is_sequence_header, video_is_sequence_header
from srv.media.flv import TAG_AUDIO, TAG_VIDEO, read_flv_file
from srv.media.flv_file import starts_picture
from srv.media.fmp4 import Fmp4Muxer, Sample, TrackFragment, ftyp, media_segment
from srv.media.mp4_file import patch_duration

FRAGMENT_MS = 1000


def covering(files: list[DvrFile], start_ms: float, end_ms: float) -> list[DvrFile]:
    """The files of one stream that overlap [start_ms, end_ms), oldest first."""
    return [f for f in sorted(files, key=lambda f: f.start_ms) if f.start_ms < end_ms and f.end_ms > start_ms]


def range_mp4(files: list[DvrFile], start_ms: float, end_ms: float) -> Iterator[bytes]:
    """The MP4 of [start_ms, end_ms) from `files` (see the module docstring)."""
    if files and all(container_of(f.path) == ".mp4" for f in files):
        yield from _from_mp4(files, start_ms, end_ms)
    else:
        yield from _from_flv([f for f in files if container_of(f.path) == ".flv"], start_ms, end_ms)


def _from_flv(files: list[DvrFile], start_ms: float, end_ms: float) -> Iterator[bytes]:
    muxer = Fmp4Muxer()
    base: float | None = None
    init_sent = False
    last_out = -1
    last_fragment = 0
    for f in files:
        scan = scan_flv(f.path)
        if scan is None or scan.first_ts < 0:
            continue
        first = scan.first_ts
        begin_ts = first
        if base is None:
            before = [t for t, _ in scan.keyframes if f.start_ms + t - first <= start_ms]
            begin_ts = int(before[-1]) if before else int(scan.keyframes[0][0]) if scan.keyframes else first
            base = f.start_ms + begin_ts - first
        started = False
        for tag in read_flv_file(f.path, check_previous_tag_size=False):
            if tag.tag_type not in (TAG_AUDIO, TAG_VIDEO):
                continue
            wall = f.start_ms + tag.timestamp - first
            keyframe = starts_picture(tag.tag_type, tag.payload)
            if _is_header(tag.payload, tag.tag_type):
                muxer.push(tag.tag_type, 0, tag.payload)
                continue
            if not started:
                if tag.timestamp < begin_ts or (tag.tag_type == TAG_VIDEO and not keyframe and last_out < 0):
                    continue
                started = True
            if wall >= end_ms:
                break
            out = max(int(wall - base), 0)
            if not init_sent:
                init = muxer.init_segment()
                if not init:
                    continue
                yield init
                init_sent = True
            muxer.push(tag.tag_type, out, tag.payload)
            last_out = max(last_out, out)
            if keyframe or out - last_fragment >= FRAGMENT_MS:
                fragment = muxer.fragment()
                if fragment:
                    last_fragment = out
                    yield fragment
    if init_sent:
        yield muxer.flush()


def _is_header(payload: bytes, tag_type: int) -> bool:
    return video_is_sequence_header(payload) if tag_type == TAG_VIDEO else audio_is_sequence_header(payload)


def _from_mp4(files: list[DvrFile], start_ms: float, end_ms: float) -> Iterator[bytes]:
    sequence = 0
    base: float | None = None
    for f in files:
        scan = scan_mp4(f.path)
        if scan is None or not scan.samples:
            continue
        scales = scan.scales
        first_ms = min(s.dts * 1000 / scales[s.track_id] for s in scan.samples if scales.get(s.track_id))

        def wall(s_dts: int, track: int, f: DvrFile = f, first_ms: float = first_ms,
                 scales: dict[int, int] = scales) -> float:
            return f.start_ms + s_dts * 1000 / scales[track] - first_ms

        samples = [s for s in scan.samples if scales.get(s.track_id)]
        if base is None:
            syncs = [wall(s.dts, s.track_id) for s in samples if s.track_id == 1 and s.sync]
            before = [w for w in syncs if w <= start_ms]
            base = before[-1] if before else (syncs[0] if syncs else wall(samples[0].dts, samples[0].track_id))
            moov = bytearray(scan.moov)
            patch_duration(moov, 0)  # the first file's duration is not the range's: unknown (0)
            yield ftyp() + bytes(moov)
        with open(f.path, "rb") as src:
            batch: dict[int, list[Sample]] = {}
            batch_start: float | None = None
            for s in samples:
                w = wall(s.dts, s.track_id)
                if w < base - 0.5 or w >= end_ms:
                    continue
                scale = scales[s.track_id]
                src.seek(s.offset)
                data = src.read(s.size)
                dts = int(round((w - base) * scale / 1000))
                if batch_start is None:
                    batch_start = w
                elif (s.track_id == 1 and s.sync) or w - batch_start >= FRAGMENT_MS:
                    sequence += 1
                    yield media_segment(sequence, [TrackFragment(t, v) for t, v in sorted(batch.items())])
                    batch, batch_start = {}, w
                batch.setdefault(s.track_id, []).append(Sample(dts, s.cts, s.sync, data, s.duration))
            if batch:
                sequence += 1
                yield media_segment(sequence, [TrackFragment(t, v) for t, v in sorted(batch.items())])
