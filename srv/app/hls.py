"""The HLS writer: one published stream's segments and playlist under ``hls_path``.

Made by the hub's recorder factory in the worker that owns the publisher (`StreamHub.recorders`,
wired in srv/worker.py); it reads the stream as an internal consumer of the source (FLV tags,
the same bytes HTTP-FLV players get, so it never has a queue of its own), cuts segments with
`Segmenter` and lists them in a `Playlist` (srv/app/hls_playlist.py). Every file operation runs
in the recording's `DiskLane` (srv/app/diskio.py), off the loop and in order:

- a segment is written (temp file + rename) before the playlist that names it, so a player
  never sees a URI that is not there, nor half a file;
- temp files a crash left for this stream are swept when the writer starts;
- a segment that leaves the window (``hls_window``) is deleted only after its duration plus
  the playlist's have passed (RFC 8216 6.2.2), unless ``hls_cleanup off``; so the files stay
  bounded and a player that just read the playlist never gets a 404;
- when the publisher stops, the last segment is written and the playlist gets EXT-X-ENDLIST;
  ``hls_dispose`` seconds later everything is removed, unless a new publish has taken the
  playlist over (a republish reads the playlist back and goes on with it, after a
  discontinuity, whichever worker it lands on).

A write error (a full disk, a lane that cannot keep up) is said once and handled by
``hls_on_error``: ``continue`` drops that segment and goes on (the next one listed follows a
discontinuity), ``ignore`` stops HLS for the stream, ``disconnect`` also ends the publish.
Players of RTMP and HTTP-FLV never notice.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from srv import log as srvlog
from srv.app.diskio import TEMP_SUFFIX, DiskLane, DiskPool, LaneFull, folder_lock, remove_quietly, write_atomic
from srv.app.hls_ll import PARTIAL_SUFFIX, PartEvent, PartListener, part_path, split_part
from srv.app.hls_parts import PartWriter
from srv.app.hls_playlist import (
    VERSION_FMP4,
    VERSION_LL,
    VERSION_TS,
    LowLatency,
    Playlist,
    Segment,
    parse,
    render,
    target_duration,
    too_long,
)
from srv.app.hls_segmenter import Chunk, Cut, Event, Opening, Segmenter
from srv.app.packet import FLV
from srv.app.paths import VARIABLES, UnsafePath, expand, place_under, safe_name
from srv.app.source import Consumer, LiveSource
from srv.conf.model import HlsConfig, VhostConfig
from srv.media.flv import FlvError, FlvReader

log = logging.getLogger("srv.hls")

#: upper bounds (seconds) of the segment duration histogram (API and exporter)
DURATION_BUCKETS = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0)

_PARTS = "\0parts"  # a path to delete ending so: the LL-HLS parts of that segment

# the HLS writer of each playlist path in this worker, so a republish here cancels its dispose
_writers: dict[str, HlsWriter] = {}


@dataclass(frozen=True, slots=True)
class SegmentEvent:
    """One segment written and listed: what SRS's on_hls tells (paths as configured, URLs as
    listed)."""

    vhost: str
    app: str
    stream: str
    seq: int
    duration: float
    file: str  # hls_path + the segment's path
    url: str  # as listed in the playlist
    m3u8: str  # hls_path + the playlist's path
    m3u8_url: str  # the playlist's path under hls_path


def stream_files(hls: HlsConfig, vhost: str, app: str, stream: str) -> tuple[str, str]:
    """(absolute playlist path, its path under hls_path); UnsafePath if it would leave it."""
    relative = expand(hls.m3u8_file, vhost=vhost, app=app, stream=stream)
    return place_under(hls.path, relative), os.path.relpath(place_under(hls.path, relative),
                                                             os.path.abspath(hls.path))


def temp_files(hls: HlsConfig, vhost: str = "", app: str = "", stream: str = "") -> list[str]:
    """The temp files a crash may have left under hls_path for a stream's playlist, init and
    segments, and LL-HLS parts under way (every variable but the names is a wildcard; an
    empty name is one too)."""
    root = os.path.abspath(hls.path)
    names = {"[vhost]": vhost, "[app]": app, "[stream]": stream}
    found: set[str] = set()
    for template in (hls.m3u8_file, hls.ts_file, hls.init_file, hls.fmp4_file):
        pattern = template
        for variable in VARIABLES:
            name = names.get(variable, "")
            pattern = pattern.replace(variable, glob.escape(safe_name(name)) if name else "*")
        base = os.path.join(root, pattern.lstrip("/"))
        for path in glob.glob(base + TEMP_SUFFIX) + glob.glob(part_path(base, "*") + PARTIAL_SUFFIX):
            if os.path.normpath(path).startswith(root + os.sep):
                found.add(path)
    return sorted(found)


def part_files(segment_path: str) -> list[str]:
    """The LL-HLS part files of a segment on disk, complete or not (a blocking call)."""
    found = glob.glob(part_path(glob.escape(segment_path), "*")) + glob.glob(
        part_path(glob.escape(segment_path), "*") + PARTIAL_SUFFIX)
    return [f for f in found if (split_part(f.removesuffix(PARTIAL_SUFFIX)) or ("", 0))[0] == segment_path]


ENDLIST = "#EXT-X-ENDLIST"


def claim_playlist(m3u8: str) -> str | None:
    """The playlist a publish before left (None: none readable), claimed for a republish: an
    ended one is written back at once without EXT-X-ENDLIST, under the folder's lock, so the old
    writer's `dispose_files` (on any worker) sees it taken over and removes nothing. Read and
    claim are one step for the other workers: a dispose runs wholly before (the files are gone
    and nothing is read) or wholly after (it finds the claim). A blocking call."""
    with folder_lock(os.path.dirname(m3u8)):
        try:
            with open(m3u8, encoding="utf-8") as f:
                text = f.read()
        except (FileNotFoundError, UnicodeDecodeError, IsADirectoryError):
            return None
        lines = text.splitlines(keepends=True)
        if any(line.strip() == ENDLIST for line in lines):
            write_atomic(m3u8, "".join(line for line in lines if line.strip() != ENDLIST).encode())
        return text


def dispose_files(m3u8: str, ours: str, paths: list[str]) -> bool:
    """hls_dispose's removal: the playlist and `paths` (a path ending in `_PARTS`: that segment's
    LL-HLS parts), unless the playlist is no longer `ours` (a republish claimed it); whether they
    were removed. Under the folder's lock (see `claim_playlist`). A blocking call."""
    with folder_lock(os.path.dirname(m3u8)):
        try:
            with open(m3u8, encoding="utf-8") as f:
                if f.read() != ours:
                    return False
        except FileNotFoundError:
            pass
        for path in [*paths, m3u8]:
            for each in part_files(path.removesuffix(_PARTS)) if path.endswith(_PARTS) else [path]:
                remove_quietly(each)
        return True


class HlsWriter:
    """A stream's HLS output: a Recording for the hub, a Sink for the source's consumer."""

    kind = "hls"

    def __init__(self, source: LiveSource, hls: HlsConfig, disk: DiskPool,
                 on_segment: Callable[[SegmentEvent], None] | None = None,
                 disconnect: Callable[[str], None] | None = None,
                 on_part: PartListener | None = None) -> None:
        self.source = source
        self.hls = hls
        self.loop = source.loop
        self.vhost, self.app, self.stream = source.key.split("/", 2)
        self.name = f"{self.app}/{self.stream}"
        self.m3u8_path, self.m3u8_url = stream_files(hls, self.vhost, self.app, self.stream)
        self.m3u8_dir = os.path.dirname(self.m3u8_path)
        self.lane: DiskLane = disk.lane(f"hls {source.key}")
        self.on_segment = on_segment
        self.disconnect = disconnect
        self.on_part = on_part  # LL-HLS notices (srv/app/hls_ll.py PartEvent)
        self.segmenter = Segmenter(hls, hls.use_fmp4, hls.part if hls.ll else 0.0)
        self.parts = PartWriter(self, hls.part) if hls.ll and hls.use_fmp4 else None  # LL-HLS
        self.reader = FlvReader(check_previous_tag_size=False, file_header=False)
        self.playlist: Playlist | None = None
        self.previous: Playlist | None = None  # read back from disk: the publish before
        self.loaded = False
        self.early: list[Event] = []  # what was cut before the old playlist was read
        self.file_seq = 0
        self.init_uri = ""
        self.init_path = ""
        self.inits = 0
        self.gap = False  # a segment was lost: the next one listed follows a discontinuity
        self.inflight = 0
        self.stopping = False
        self.stopped = False  # the final playlist (ENDLIST) is queued
        self.disabled = False  # hls_on_error ignore/disconnect after an error
        self.last_text = ""
        self.deletions: dict[int, tuple[asyncio.TimerHandle, list[str]]] = {}  # files due later
        self._deletion_key = 0
        self.dispose_timer: asyncio.TimerHandle | None = None
        # figures
        self.segments = 0
        self.bytes = 0
        self.durations = 0.0
        self.last_duration = 0.0
        self.long_segments = 0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.errors = 0
        self.last_error = ""
        self.said_long_gop = False
        self.said_fallback = False
        old = _writers.get(self.m3u8_path)
        if old is not None:
            old.cancel_dispose()
        _writers[self.m3u8_path] = self
        self.consumer: Consumer | None = None
        self.submit(self._prepare, self._prepared, lambda: self._prepared(None))
        log.log(srvlog.TRACE, "hls %s: writing %s (%s)", self.name, self.m3u8_path,
                ("LL-HLS fMP4" if self.parts else "fMP4") if hls.use_fmp4 else "MPEG-TS")
        # LL-HLS: each message at once, so a part is on disk as soon as its last frame came
        self.consumer = source.add_consumer(self, FLV, internal=True, label="hls writer",
                                            prompt=self.parts is not None)

    # ---- Recording ---------------------------------------------------------------------------

    def stop(self) -> None:
        """The publisher stopped: the segment under way is the last one; then EXT-X-ENDLIST."""
        if self.stopping:
            return
        self.stopping = True
        self._detach()
        if not self.disabled:
            for event in self.segmenter.finish_events():
                self._event(event)
            if self.parts is not None and self.loaded:
                self.parts.flush()
        self.maybe_end()

    def reconfigure(self, vhost: VhostConfig) -> bool:
        new = vhost.hls
        if not new.enabled or self.disabled:
            return False
        placed = ("path", "m3u8_file", "ts_file", "init_file", "fmp4_file", "use_fmp4", "entry_prefix", "ll", "part")
        if any(getattr(new, f) != getattr(self.hls, f) for f in placed):
            return False  # files elsewhere: the hub starts a new writer
        self.hls = new
        self.segmenter.reconfigure(new)
        return True

    def stats(self) -> dict[str, Any]:
        seg = self.segmenter
        p = self.playlist
        return {
            "m3u8": self.m3u8_url,
            "format": "fmp4" if seg.fmp4 else "ts",
            "segments": self.segments,
            "bytes": self.bytes,
            "seq": self.file_seq - 1 if self.segments else None,
            "media_sequence": p.media_sequence if p else 0,
            "discontinuity_sequence": p.discontinuity_sequence if p else 0,
            "target_duration": p.target_duration if p else seg.target,
            "last_duration": round(self.last_duration, 3),
            "avg_duration": round(self.durations / self.segments, 3) if self.segments else 0.0,
            "duration_sum": round(self.durations, 3),
            "gop": round(seg.gop, 3),
            "long_gop": seg.long_gop,
            "long_segments": self.long_segments,
            "duration_buckets": dict(zip([*map(str, DURATION_BUCKETS), "+Inf"], self.buckets, strict=True)),
            "skipped_frames": seg.skipped,
            "timestamp_jumps": seg.discontinuities,
            "errors": self.errors,
            "last_error": self.last_error,
            "writing": not self.disabled and not self.stopping,
            "ll": self.parts is not None,
            "parts": self.parts.parts if self.parts is not None else 0,
        }

    # ---- Sink --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.disabled or self.stopping:
            return
        try:
            tags = self.reader.feed(data)
        except FlvError as e:  # our own source's bytes: not expected
            self.fail(f"cannot read the stream: {e}")
            return
        wall = time.time()
        for tag in tags:
            for event in self.segmenter.push(tag.tag_type, tag.timestamp, tag.payload, wall):
                self._event(event)
        if self.parts is not None and self.loaded:
            self.parts.flush()
        self._say_once()

    def writelines(self, data: list[bytes]) -> None:
        for part in data:
            self.write(part)

    def on_publish(self) -> None:
        pass  # a writer lives for one publish

    def on_unpublish(self) -> None:
        pass  # the source calls stop() first

    def close_slow(self, reason: str) -> None:
        pass  # the writer never pauses its consumer

    # ---- segments ----------------------------------------------------------------------------

    def _say_once(self) -> None:
        seg = self.segmenter
        if seg.long_gop and not self.said_long_gop:
            self.said_long_gop = True
            limit = self.hls.fragment * self.hls.td_ratio
            log.warning("hls %s: the stream's GOP (%.2fs between keyframes) is longer than hls_fragment * "
                        "hls_td_ratio (%gs): segments last a GOP (target duration %ds); set the encoder's "
                        "keyframe interval to at most %gs (ffmpeg -g, OBS keyframe interval)", self.name,
                        seg.gop, limit, seg.target, limit)
        if seg.fallback and not self.said_fallback:
            self.said_fallback = True
            log.warning("hls %s: %s; writing fMP4 segments for this stream", self.name, seg.fallback)

    def _event(self, event: Event) -> None:
        if not self.loaded:
            self.early.append(event)
        elif self.parts is None:
            if isinstance(event, Cut):
                self._cut(event)
        elif isinstance(event, Chunk):
            self.parts.chunk(event)
        elif isinstance(event, Opening):
            self.parts.opening(event)
        else:
            self.parts.cut(event)

    def _cut(self, cut: Cut) -> None:
        p = self.playlist_for(cut.has_video)
        seq = self.file_seq
        self.file_seq += 1
        template = self.hls.fmp4_file if self.segmenter.fmp4 else self.hls.ts_file
        try:
            relative = expand(template, vhost=self.vhost, app=self.app, stream=self.stream, seq=seq,
                              duration_ms=round(cut.duration * 1000), now=cut.wall)
            path = place_under(self.hls.path, relative)
            init = self.init_for(cut.init, seq, cut.wall) if self.segmenter.fmp4 else None
        except UnsafePath as e:
            self.fail(str(e))
            return
        segment = Segment(0, self.uri(path), cut.duration, path, cut.discontinuity or self.gap,
                          cut.wall, self.init_uri, self.init_path)
        data = cut.data

        def job() -> int:
            written = 0
            if init is not None:
                written += self.write_file(init[0], init[1])
            return written + self.write_file(path, data)

        self.inflight += 1
        self.submit(job, lambda written: self.written(p, segment, seq, written),
                     lambda: self._lost())

    def _version(self) -> int:
        if self.parts is not None:
            return VERSION_LL
        return VERSION_FMP4 if self.segmenter.fmp4 else VERSION_TS

    def playlist_for(self, has_video: bool) -> Playlist:
        version = self._version()
        p = self.playlist
        if p is not None and p.version == version:
            return p
        # a new playlist: the first publish, or another format than the one taken over
        seconds = self.hls.fragment * (self.hls.td_ratio if has_video else self.hls.aof_ratio)
        new = Playlist(target_duration(seconds), version)
        if self.parts is not None:
            new.ll = LowLatency(self.hls.part)
        old = p or self.previous
        if old is not None:  # its numbers go on, so no file a player may still read is overwritten
            self.file_seq = max(self.file_seq, old.next_seq, _max_file_seq(old))
            new.media_sequence = old.next_seq
        if p is not None:
            self._retire(p.segments, p.duration)
        self.segmenter.target = new.target_duration
        self.playlist = new
        return new

    def _resume(self, old: Playlist) -> None:
        """A republish goes on with the playlist the last publish left (on any worker), after a
        discontinuity; it is written back at once without EXT-X-ENDLIST, so the old writer's
        hls_dispose sees it was taken over."""
        old.ended = False
        for s in old.segments:
            s.path = self._path_of(s.uri)
            s.map_path = self._path_of(s.map_uri) if s.map_uri else ""
            for part in s.parts:
                part.path = self._path_of(part.uri)
        if self.parts is not None:
            old.ll = LowLatency(self.hls.part)
        self.inits = 1  # the old init (if any) keeps its name; ours gets one of its own
        self.file_seq = max(self.file_seq, old.next_seq, _max_file_seq(old))
        self.gap = True
        self.playlist = old
        self.segmenter.target = old.target_duration
        if old.segments:
            self.write_playlist()

    def init_for(self, init: bytes | None, seq: int, wall: float) -> tuple[str, bytes] | None:
        """Where a new init segment goes (its name made current), with its bytes; None: no new one."""
        if init is None:
            return None
        relative = expand(self.hls.init_file, vhost=self.vhost, app=self.app, stream=self.stream, seq=seq,
                          now=wall)
        if self.inits and "[seq]" not in self.hls.init_file:
            stem, ext = os.path.splitext(relative)
            relative = f"{stem}-{seq}{ext}"  # segments still listed keep the init they were made with
        self.inits += 1
        path = place_under(self.hls.path, relative)
        self.init_path, self.init_uri = path, self.uri(path)
        return path, init

    def uri(self, path: str) -> str:
        relative = os.path.relpath(path, self.m3u8_dir)
        prefix = self.hls.entry_prefix
        if prefix:
            return prefix.rstrip("/") + "/" + relative
        return relative

    def _path_of(self, uri: str) -> str:
        prefix = self.hls.entry_prefix
        if prefix:
            if not uri.startswith(prefix.rstrip("/") + "/"):
                return ""
            uri = uri[len(prefix.rstrip("/")) + 1:]
        try:
            return place_under(self.m3u8_dir, uri)
        except UnsafePath:
            return ""

    def written(self, p: Playlist, segment: Segment, seq: int, written: int,
                after: Callable[[], None] | None = None) -> None:
        """A segment is on disk (`written` bytes): list it; `after` once the playlist is."""
        if self.parts is None:
            self.inflight -= 1
        if self.errors and self.last_error:
            log.log(srvlog.TRACE, "hls %s: writing again after %d errors", self.name, self.errors)
            self.last_error = ""
        self.gap = False
        p.append(segment)
        removed = p.slide(self.hls.window)
        self._retire(removed, p.duration)
        self.segments += 1
        self.bytes += written
        self.durations += segment.duration
        self.last_duration = segment.duration
        self.buckets[next((i for i, b in enumerate(DURATION_BUCKETS) if segment.duration <= b),
                          len(DURATION_BUCKETS))] += 1
        if too_long(segment.duration, p.target_duration):
            self.long_segments += 1
        if self._can_end():
            self.maybe_end(after)  # the last segment: listed with EXT-X-ENDLIST, in one write
        else:
            self.write_playlist(after)
        if self.on_segment is not None:
            self.on_segment(SegmentEvent(
                self.vhost, self.app, self.stream, seq, segment.duration,
                os.path.join(self.hls.path, os.path.relpath(segment.path, os.path.abspath(self.hls.path))),
                segment.uri, os.path.join(self.hls.path, self.m3u8_url), self.m3u8_url))

    def _lost(self) -> None:
        self.inflight -= 1
        self.gap = True
        self.maybe_end()

    def _retire(self, removed: list[Segment], listed: float) -> None:
        """Segments out of the window: their files go once a player that read the playlist just
        before could no longer ask for them (RFC 8216 6.2.2)."""
        if not removed or not self.hls.cleanup:
            return
        still = {s.map_path for s in self.playlist.segments} if self.playlist else set()
        for s in removed:
            paths = [s.path] if s.path else []
            if s.path and self.parts is not None:
                paths.append(s.path + _PARTS)  # its parts, found when they are deleted
            if s.map_path and s.map_path not in still:
                paths.append(s.map_path)
                still.add(s.map_path)
            if paths:
                self._delete_later(s.duration + listed, paths)

    def _delete_later(self, delay: float, paths: list[str]) -> None:
        key = self._deletion_key = self._deletion_key + 1

        def due() -> None:
            self.deletions.pop(key, None)
            self._remove(paths)

        self.deletions[key] = (self.loop.call_later(delay, due), paths)

    def _remove(self, paths: list[str]) -> None:
        def job() -> None:
            for path in paths:
                for each in part_files(path.removesuffix(_PARTS)) if path.endswith(_PARTS) else [path]:
                    remove_quietly(each)

        self.submit(job, lambda _: None, lambda: None, quiet=True)

    def remove_parts(self, segment_path: str) -> None:
        self._remove([segment_path + _PARTS])

    def write_file(self, path: str, data: bytes) -> int:
        """(In a disk job.) A file whole or not at all: temp + rename."""
        return write_atomic(path, data)

    def write_playlist(self, after: Callable[[], None] | None = None) -> None:
        """Render the playlist and queue its write; `after` once it is in place."""
        p = self.playlist
        if p is None:
            return
        if self.parts is not None:
            self.parts.update(p)
        text = self.last_text = render(p)
        path = self.m3u8_path
        self.submit(lambda: write_atomic(path, text.encode()), lambda _: after() if after is not None else None,
                    lambda: None)

    def _can_end(self) -> bool:
        return self.stopping and not self.stopped and not self.inflight and self.loaded and not self.early

    def maybe_end(self, after: Callable[[], None] | None = None) -> None:
        """Once the publisher stopped and every segment is written: EXT-X-ENDLIST (then `after`)."""
        if not self._can_end():
            return
        self.stopped = True
        p = self.playlist
        if p is None or self.hls.dispose <= 0:
            self._forget()
        if p is None:
            return
        p.ended = True

        def ended() -> None:
            if after is not None:
                after()
            if self.parts is not None:
                self._tell_ended()

        self.write_playlist(ended)
        log.log(srvlog.TRACE, "hls %s: ended after %d segments", self.name, self.segments)
        if self.hls.dispose > 0:
            self.dispose_timer = self.loop.call_later(self.hls.dispose, self._dispose)

    def _tell_ended(self) -> None:
        p = self.playlist
        if self.on_part is not None and p is not None:
            self.on_part(PartEvent("ended", self.source.key, self.m3u8_path, self.m3u8_url, p.next_seq, -1))

    def _forget(self) -> None:
        if _writers.get(self.m3u8_path) is self:
            del _writers[self.m3u8_path]

    def cancel_dispose(self) -> None:
        """A new publish of the same playlist in this worker takes it over."""
        if self.dispose_timer is not None:
            self.dispose_timer.cancel()
            self.dispose_timer = None

    def _dispose(self) -> None:
        """hls_dispose after the end: remove the playlist and every file, unless someone (a
        republish, on any worker) has rewritten the playlist since."""
        self.dispose_timer = None
        p = self.playlist
        if p is None:
            return
        paths = [s.path for s in p.segments if s.path] + sorted({s.map_path for s in p.segments if s.map_path})
        paths += [s.path + _PARTS for s in p.segments if s.path]
        for handle, later in self.deletions.values():
            handle.cancel()
            paths += later
        self.deletions.clear()
        m3u8, ours = self.m3u8_path, self.last_text

        def done(removed: bool) -> None:
            self._forget()
            log.log(srvlog.TRACE, "hls %s: %s", self.name,
                    "disposed" if removed else "not disposed: the playlist was taken over")

        self.submit(lambda: dispose_files(m3u8, ours, paths), done, lambda: None)

    # ---- the disk ----------------------------------------------------------------------------

    def _prepare(self) -> str | None:
        """First job: sweep what a crash left of this stream's temp files; read the playlist
        a publish before left (to go on with it)."""
        for path in temp_files(self.hls, self.vhost, self.app, self.stream):
            remove_quietly(path)
        return claim_playlist(self.m3u8_path)

    def _prepared(self, text: str | None) -> None:
        old = self.previous = parse(text) if text else None
        self.loaded = True
        if old is not None and old.version == self._version():
            self._resume(old)
        early, self.early = self.early, []
        for event in early:
            self._event(event)
        if self.parts is not None:
            self.parts.flush()
        self.maybe_end()

    def submit(self, job: Callable[[], Any], done: Callable[[Any], None],
                failed: Callable[[], None] | None = None, quiet: bool = False) -> None:
        try:
            future = self.lane.submit(job)
        except LaneFull as e:
            if not quiet:
                self._error(str(e))
            if failed is not None:
                failed()
            return

        def finished(f: asyncio.Future[Any]) -> None:
            error = f.exception()
            if error is None:
                done(f.result())
                return
            if not quiet:
                self._error(f"{type(error).__name__}: {error}" if not isinstance(error, OSError)
                            else f"{error.strerror or error} ({getattr(error, 'filename', '')})")
            if failed is not None:
                failed()

        future.add_done_callback(finished)

    def _error(self, why: str) -> None:
        """A write failed: say it once, then do what hls_on_error says."""
        self.errors += 1
        first = not self.last_error
        self.last_error = why
        action = self.hls.on_error
        if first:
            log.error("hls %s: write failed: %s; hls_on_error %s: %s", self.name, why, action,
                      {"continue": "segments are skipped until writing works again",
                       "ignore": "HLS stops for this publish",
                       "disconnect": "the publisher is disconnected"}.get(action, action))
        if action in ("ignore", "disconnect") and not self.disabled:
            self.disabled = True
            self._detach()
            if action == "disconnect" and self.disconnect is not None:
                self.disconnect(f"hls write failed: {why}")

    def fail(self, why: str) -> None:
        self._error(why)

    def _detach(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            self.source.remove_consumer(consumer)


def _max_file_seq(p: Playlist) -> int:
    """One past the highest [seq] in the old playlist's file names (they may not be its media
    sequence numbers), so new files never overwrite files a player may still read."""
    best = 0
    for s in p.segments:
        digits = "".join(ch if ch.isdigit() else " " for ch in os.path.basename(s.uri)).split()
        if digits:
            best = max(best, int(digits[-1]) + 1)
    return best
