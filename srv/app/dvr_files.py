"""DVR files on disk: writing, finishing, recovering, listing, retention. Blocking: every
function here runs in a disk thread (`srv.app.diskio`), never on the event loop.

A recording is written to ``<final>.tmp`` (unbuffered: what `append` returns from is in the
kernel, so a killed process loses nothing it wrote) and `finish` makes it the final file:
- FLV: the file is scanned tag by tag; the head is rebuilt with `duration`, `filesize` and the
  keyframe index into ``<final>.tmp.close`` followed by the tags (a copy), which is renamed
  over the final name. A tag cut short by a crash is left out. When the copy cannot be made
  (a full disk) the placeholders are patched in place and the temp file is renamed as is.
- MP4: the file is cut after its last whole fragment, mvhd/mehd get the duration and the srv
  box its end, in place, and the file is renamed.
`recover_under` finishes every ``.tmp`` a crash left (at start) and removes ``.tmp.close``
copies a crash interrupted (their ``.tmp`` is still there and is finished again).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from srv import log as srvlog
from srv.app.diskio import TEMP_SUFFIX, remove_quietly
from srv.media import mp4_file
from srv.media.codec import audio_is_sequence_header, video_is_sequence_header
from srv.media.flv import HEADER_SIZE, TAG_HEADER_SIZE, TAG_SCRIPT, TAG_VIDEO
from srv.media.flv_file import (
    RecordingInfo,
    info_of,
    metadata_head,
    metadata_values,
    read_tag_head,
    starts_picture,
)

log = logging.getLogger("srv.dvr")

CLOSE_SUFFIX = TEMP_SUFFIX + ".close"
CONTAINERS = (".flv", ".mp4")
COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class DvrFile:
    """One finished recording, as the API lists it."""

    path: str
    vhost: str
    app: str
    stream: str
    start_ms: float
    duration: float  # seconds
    size: int
    recovered: bool = False

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration * 1000

    @property
    def key(self) -> str:
        return f"{self.vhost}/{self.app}/{self.stream}"


def container_of(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def temp_name(final: str, pid: int) -> str:
    """The name a recording has while process `pid` writes it: ``<final>.<pid>.tmp``. The pid
    says whose it is: a starting worker finishes the files of dead writers, never a live one."""
    return f"{final}.{pid}{TEMP_SUFFIX}"


def _temp_parts(name: str) -> tuple[str, int] | None:
    """(final, writer pid) of a temp name, None for any other file."""
    if not name.endswith(TEMP_SUFFIX):
        return None
    stem, dot, tail = name[:-len(TEMP_SUFFIX)].rpartition(".")
    if not dot or not tail.isdigit() or container_of(stem) not in CONTAINERS:
        return None
    return stem, int(tail)


def writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dvr_template(path: str) -> str:
    """dvr_path as a file template: a folder (no .flv/.mp4) gets SRS's default name."""
    if container_of(path) in CONTAINERS:
        return path
    return path.rstrip("/") + "/[app]/[stream].[timestamp].flv"


def dvr_root(path: str) -> str:
    """The folder a dvr_path's files all live under: up to the first variable."""
    template = dvr_template(path)
    fixed = template.split("[", 1)[0]
    return os.path.dirname(fixed) or "."


class RecordingFile:
    """The temp file of one recording while it is written."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.temp = temp_name(final, os.getpid())
        os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
        self.f = open(self.temp, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        self.size = 0

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self.f.write(view)
            if n is None or n <= 0:
                raise OSError("short write")
            view = view[n:]
            self.size += n

    def close(self) -> None:
        self.f.close()


# ---- finishing ---------------------------------------------------------------------------------


def finish(temp: str, final: str, recovered: bool = False) -> DvrFile | None:
    """Make `temp` the playable `final`; its listing entry (None: nothing worth keeping)."""
    if container_of(final) == ".mp4":
        return _finish_mp4(temp, final, recovered)
    return _finish_flv(temp, final, recovered)


@dataclass(slots=True)
class _FlvScan:
    values: dict[str, Any]
    meta_end: int  # where the tags after onMetaData start
    valid_end: int  # end of the last whole tag
    keyframes: list[tuple[float, int]]  # (ms, offset in the temp file)
    first_ts: int
    last_ts: int
    last_step: int  # the last gap between two frames of one track: the last frame's duration
    has_audio: bool
    has_video: bool


def scan_flv(path: str) -> _FlvScan | None:
    """Walk an FLV file's tags by their headers; None when it has no onMetaData first."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEADER_SIZE + 4)
        if len(head) < HEADER_SIZE + 4 or head[:3] != b"FLV":
            return None
        pos = HEADER_SIZE + 4
        scan = _FlvScan({}, pos, pos, [], -1, -1, 0, False, False)
        last_by_type: dict[int, int] = {}
        first = True
        while True:
            f.seek(pos)
            tag = f.read(TAG_HEADER_SIZE + 16)
            if len(tag) < TAG_HEADER_SIZE:
                break
            kind, data_size, ts = read_tag_head(tag)
            end = pos + TAG_HEADER_SIZE + data_size + 4
            if end > size:
                break
            if first:
                if kind != TAG_SCRIPT:
                    return None
                f.seek(pos + TAG_HEADER_SIZE)
                scan.values = metadata_values(f.read(data_size))
                scan.meta_end = end
                first = False
            elif kind in (8, 9):
                body = tag[TAG_HEADER_SIZE:TAG_HEADER_SIZE + data_size]
                if kind == TAG_VIDEO:
                    scan.has_video = True
                else:
                    scan.has_audio = True
                header_like = (video_is_sequence_header(body) if kind == TAG_VIDEO
                               else audio_is_sequence_header(body))
                if not header_like:
                    if scan.first_ts < 0:
                        scan.first_ts = ts
                    if kind in last_by_type and ts > last_by_type[kind]:
                        scan.last_step = ts - last_by_type[kind]
                    last_by_type[kind] = ts
                    scan.last_ts = max(scan.last_ts, ts)
                    if starts_picture(kind, body):
                        scan.keyframes.append((float(ts), pos))
            scan.valid_end = end
            pos = end
        return None if first else scan


def _flv_duration(scan: _FlvScan) -> float:
    if scan.first_ts < 0:
        return 0.0
    return (scan.last_ts - scan.first_ts + scan.last_step) / 1000


def _finish_flv(temp: str, final: str, recovered: bool) -> DvrFile | None:
    scan = scan_flv(temp)
    if scan is None:
        remove_quietly(temp)
        return None
    info = info_of(scan.values)
    if info is None:
        info = RecordingInfo("", "", "", os.stat(temp).st_mtime * 1000)
    duration = _flv_duration(scan)
    body = scan.valid_end - scan.meta_end
    times = [(t - max(scan.first_ts, 0)) / 1000 for t, _ in scan.keyframes]

    def head(size: int, positions: list[int]) -> bytes:
        return metadata_head(scan.values, info, has_audio=scan.has_audio, has_video=scan.has_video,
                             duration=duration, filesize=size, keyframes=(times, positions), recovered=recovered)

    placeholder = head(0, [0] * len(times))
    shift = len(placeholder) - scan.meta_end
    positions = [p + shift for _, p in scan.keyframes]
    total = len(placeholder) + body
    new_head = head(total, positions)
    assert len(new_head) == len(placeholder)
    part = temp + ".close"
    try:
        with open(temp, "rb") as src, open(part, "wb") as out:
            out.write(new_head)
            src.seek(scan.meta_end)
            left = body
            while left > 0:
                chunk = src.read(min(COPY_CHUNK, left))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)
        os.replace(part, final)
        remove_quietly(temp)
    except OSError as e:
        remove_quietly(part)
        log.log(srvlog.INFO, "dvr: %s: no room to add the keyframe index (%s); duration patched in place",
                final, e)
        _patch_flv_in_place(temp, scan, info, duration, recovered)
        os.replace(temp, final)
        total = scan.valid_end
    return DvrFile(final, info.vhost, info.app, info.stream, info.start_ms, duration, total, recovered)


def _patch_flv_in_place(temp: str, scan: _FlvScan, info: RecordingInfo, duration: float, recovered: bool) -> None:
    with open(temp, "r+b") as f:
        f.truncate(scan.valid_end)
        new_head = metadata_head(scan.values, info, has_audio=scan.has_audio, has_video=scan.has_video,
                                 duration=duration, filesize=scan.valid_end, recovered=recovered)
        if len(new_head) == scan.meta_end:  # same keys as written live: the numbers fit in place
            f.seek(0)
            f.write(new_head)


@dataclass(slots=True)
class _Mp4Scan:
    moov_at: int
    moov: bytearray
    srv_at: int
    srv: dict[str, Any]
    valid_end: int
    samples: list[mp4_file.SampleRef]
    scales: dict[int, int]


def scan_mp4(path: str, samples: bool = True) -> _Mp4Scan | None:
    """Walk an fMP4 file's top-level boxes; the samples of every whole moof+mdat pair."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        scan = _Mp4Scan(-1, bytearray(), -1, {}, 0, [], {})
        pending: tuple[int, bytes] | None = None
        while size - pos >= 8:
            f.seek(pos)
            head = f.read(16)
            box_size = int.from_bytes(head[:4], "big")
            kind = head[4:8]
            if box_size == 1:
                box_size = int.from_bytes(head[8:16], "big")
            if box_size < 8 or pos + box_size > size:
                break
            if kind == b"moov":
                f.seek(pos)
                scan.moov_at, scan.moov = pos, bytearray(f.read(box_size))
                scan.scales = mp4_file.timescales(bytes(scan.moov))
            elif kind == b"free" and scan.srv_at < 0:
                f.seek(pos + 8)
                found_srv = mp4_file.read_srv_box(f.read(box_size - 8))
                if found_srv is not None:
                    scan.srv_at, scan.srv = pos, found_srv
            elif kind == b"moof":
                f.seek(pos)
                pending = (pos, f.read(box_size)) if samples else (pos, b"")
            elif kind == b"mdat":
                if pending is not None and samples:
                    scan.samples.extend(mp4_file.fragment_samples(pending[1], pending[0]))
                pending = None
            if kind != b"moof":  # a moof counts once its mdat is whole
                scan.valid_end = pos + box_size
            pos += box_size
        return scan if scan.moov_at >= 0 else None


def mp4_duration(scan: _Mp4Scan) -> float:
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for s in scan.samples:
        starts.setdefault(s.track_id, s.dts)
        ends[s.track_id] = s.dts + s.duration
    if not ends:
        return 0.0
    start_ms = min(v * 1000 / scan.scales[t] for t, v in starts.items() if scan.scales.get(t))
    return max(mp4_file.movie_duration_ms(ends, scan.scales) - start_ms, 0) / 1000


def _finish_mp4(temp: str, final: str, recovered: bool) -> DvrFile | None:
    scan = scan_mp4(temp)
    if scan is None:
        remove_quietly(temp)
        return None
    duration = mp4_duration(scan)
    mp4_file.patch_duration(scan.moov, int(duration * 1000))
    values = dict(scan.srv)
    values.update(duration=duration, recovered=recovered)
    info = info_of({f"srv{k}": v for k, v in values.items()})
    with open(temp, "r+b") as f:
        f.truncate(scan.valid_end)
        f.seek(scan.moov_at)
        f.write(scan.moov)
        if scan.srv_at >= 0:
            f.seek(scan.srv_at)
            f.write(mp4_file.srv_box(values))
    os.replace(temp, final)
    if info is None:
        info = RecordingInfo("", "", "", os.stat(final).st_mtime * 1000)
    return DvrFile(final, info.vhost, info.app, info.stream, info.start_ms, duration, scan.valid_end, recovered)


def recover_under(root: str) -> list[DvrFile]:
    """Finish what crashed writers left under `root`: every ``<final>.<pid>.tmp`` whose writer
    is dead becomes its final file (claimed first by a rename, so of workers starting together
    one does it); copies an interrupted close left are removed. One log line per file."""
    found: list[DvrFile] = []
    if not os.path.isdir(root):
        return found
    me = os.getpid()
    for folder, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.endswith(CLOSE_SUFFIX):
                parts = _temp_parts(name[:-len(".close")])
                if parts is not None and not writer_alive(parts[1]):
                    remove_quietly(path)
                continue
            parts = _temp_parts(name)
            if parts is None or writer_alive(parts[1]):
                continue
            final = os.path.join(folder, parts[0])
            claimed = temp_name(final, me)
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another worker took it
            try:
                done = finish(claimed, final, recovered=True)
            except (OSError, ValueError, IndexError) as e:
                log.error("dvr: cannot recover %s: %s (left as %s)", path, e, claimed)
                continue
            if done is None:
                log.warning("dvr: %s held no media; removed", path)
                continue
            log.warning("dvr: recovered %s (%.3fs, %d bytes) left by a crash", final, done.duration, done.size)
            found.append(done)
    return found


# ---- listing -----------------------------------------------------------------------------------

_CACHE: dict[str, tuple[tuple[int, int], DvrFile | None]] = {}


def read_entry(path: str) -> DvrFile | None:
    """The listing entry of a finished recording (None: not one of srv's)."""
    st = os.stat(path)
    stamp = (st.st_size, st.st_mtime_ns)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    entry: DvrFile | None = None
    try:
        if container_of(path) == ".mp4":
            scan = scan_mp4(path, samples=False)
            if scan is not None:
                values = scan.srv
                info = info_of({f"srv{k}": v for k, v in values.items()})
                if info is not None:
                    entry = DvrFile(path, info.vhost, info.app, info.stream, info.start_ms,
                                    float(values.get("duration", 0.0)), st.st_size, bool(values.get("recovered")))
        else:
            with open(path, "rb") as f:
                head = f.read(HEADER_SIZE + 4 + TAG_HEADER_SIZE)
                if head[:3] == b"FLV" and len(head) == HEADER_SIZE + 4 + TAG_HEADER_SIZE:
                    kind, size, _ = read_tag_head(head[HEADER_SIZE + 4:])
                    if kind == TAG_SCRIPT:
                        values = metadata_values(f.read(size))
                        info = info_of(values)
                        if info is not None:
                            entry = DvrFile(path, info.vhost, info.app, info.stream, info.start_ms,
                                            float(values.get("duration", 0.0)), st.st_size,
                                            bool(values.get("srvrecovered")))
    except (OSError, ValueError, IndexError):
        entry = None
    if len(_CACHE) > 100_000:
        _CACHE.clear()
    _CACHE[path] = (stamp, entry)
    return entry


def list_recordings(roots: list[str]) -> list[DvrFile]:
    """Every finished srv recording under `roots`, oldest first."""
    found: dict[str, DvrFile] = {}
    for root in roots:
        if not os.path.isdir(root):
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                if container_of(name) in CONTAINERS:
                    path = os.path.join(folder, name)
                    try:
                        entry = read_entry(path)
                    except OSError:
                        continue
                    if entry is not None:
                        found[os.path.realpath(path)] = replace(entry, path=path)
    return sorted(found.values(), key=lambda e: (e.start_ms, e.path))


def enforce_keep(root: str, vhost: str, keep: tuple[float, int], now: float | None = None) -> list[DvrFile]:
    """srv's dvr_keep: remove this vhost's oldest recordings under `root` past the age and/or
    the total size. The newest recording is never removed for size."""
    max_age, max_bytes = keep
    if not max_age and not max_bytes:
        return []
    now = time.time() if now is None else now
    files = [e for e in list_recordings([root]) if e.vhost == vhost]
    removed = []
    total = sum(e.size for e in files)
    for e in files:
        too_old = max_age and now * 1000 - e.end_ms > max_age * 1000
        too_big = max_bytes and total > max_bytes and e is not files[-1]
        if too_old or too_big:
            if remove_quietly(e.path):
                removed.append(e)
            total -= e.size
    return removed
