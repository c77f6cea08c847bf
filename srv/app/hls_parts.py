"""The LL-HLS half of the HLS writer (``hls_ll on``): partial segments on disk and in the
playlist, and the notices the serving side waits for.

`PartWriter` takes the segmenter's LL events (srv/app/hls_segmenter.py `Opening`, `Chunk`,
`Cut`) from its `HlsWriter` (srv/app/hls.py) and turns them into jobs of the writer's disk
lane, so every file call stays off the loop and in order:

- the chunks of the part under way are appended to ``<part>.partial`` once per batch the
  writer reads (each consumer flush), and a complete part is renamed to its final name
  (srv/app/hls_ll.py: the final name existing is the completion signal);
- once a part has its final name, the playlist listing it (and hinting the next one) is
  written (temp + rename), then ``part`` is told; the last part of a segment is listed with
  the segment itself: the segment file (its parts' bytes) is written, then the playlist, then
  ``part`` and ``segment`` are told;
- the playlist model changes only in the done callbacks, which run in job order: a part or a
  segment is listed only once its bytes are on disk; a part that could not be written (an
  append or a rename failed) takes its segment's parts out of the playlist (the segment is
  listed whole once written, from the bytes kept in memory); a lost segment (its file could
  not be written) takes its parts out and leaves a discontinuity.

Media sequence numbers: the segment under way is the playlist's next (`Playlist.next_seq`);
records of segments cut but not yet written are listed in `pending`, oldest first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from srv.app.diskio import append
from srv.app.hls_ll import PartEvent, part_path, partial_path
from srv.app.hls_playlist import LowLatency, Part, Playlist, Segment
from srv.app.hls_segmenter import Chunk, Cut, Opening
from srv.app.paths import UnsafePath, expand, place_under

if TYPE_CHECKING:
    from srv.app.hls import HlsWriter


@dataclass(slots=True)
class _Record:
    """A segment from its opening until it is listed (or lost)."""

    seq: int  # file number ([seq])
    segment: Segment  # its listing: parts as they land, duration once cut
    cut: bool = False
    total: int = 0  # parts, once cut
    completed: int = 0  # parts whose last chunk came
    buffered: list[bytes] = field(default_factory=list)  # chunks of the part under way not yet queued
    broken: bool = False  # a part's write failed: no part of it is listed (the segment still is)


class PartWriter:
    def __init__(self, writer: HlsWriter, part_target: float) -> None:
        self.writer = writer
        self.part_target = part_target
        self.pending: list[_Record] = []
        self.parts = 0  # parts written (figures)

    # ---- events, on the loop -----------------------------------------------------------------

    def opening(self, o: Opening) -> None:
        w = self.writer
        w.playlist_for(o.has_video)
        seq = w.file_seq
        w.file_seq += 1
        try:
            relative = expand(w.hls.fmp4_file, vhost=w.vhost, app=w.app, stream=w.stream, seq=seq,
                              duration_ms=round(w.hls.fragment * 1000), now=o.wall)
            path = place_under(w.hls.path, relative)
            init = w.init_for(o.init, seq, o.wall)
        except UnsafePath as e:
            w.fail(str(e))
            return
        if init is not None:
            w.submit(lambda: w.write_file(*init), lambda _: None)
        segment = Segment(0, w.uri(path), 0.0, path, o.discontinuity or w.gap, o.wall, w.init_uri, w.init_path)
        w.gap = False  # taken by this segment (a lost one marks the next itself)
        self.pending.append(_Record(seq, segment))

    def chunk(self, c: Chunk) -> None:
        rec = self._open()
        if rec is None:
            return
        if c.duration is not None:
            rec.completed = c.part + 1
        if rec.broken:
            return  # its segment's bytes are in the Cut: the segment file will still be whole
        rec.buffered.append(c.data)
        if c.duration is None:
            return
        data = b"".join(rec.buffered)
        rec.buffered = []
        final = part_path(rec.segment.path, c.part)
        growing = partial_path(final)

        def job() -> None:
            append(growing, data)
            os.replace(growing, final)

        entry = Part(self.writer.uri(final), c.duration, c.independent, final)
        self.writer.submit(job, lambda _: self._part_done(rec, entry), lambda: self._broken(rec))

    def flush(self) -> None:
        """The end of a batch: what came of the part under way goes to its ``.partial``."""
        rec = self._open()
        if rec is None or not rec.buffered or rec.broken:
            return
        data = b"".join(rec.buffered)
        rec.buffered = []
        index, msn = rec.completed, self._msn(rec)
        growing = partial_path(part_path(rec.segment.path, index))
        self.writer.submit(lambda: append(growing, data), lambda _: self._tell("chunk", msn, index),
                           lambda: self._broken(rec))

    def cut(self, cut: Cut) -> None:
        w = self.writer
        rec = self._open()
        if rec is None:
            return
        rec.cut = True
        rec.total = rec.completed
        rec.segment.duration = cut.duration
        data, path = cut.data, rec.segment.path
        w.inflight += 1
        w.submit(lambda: w.write_file(path, data), lambda written: self._segment_done(rec, written),
                 lambda: self._segment_lost(rec))

    def _open(self) -> _Record | None:
        """The segment under way (None after its path could not be made)."""
        rec = self.pending[-1] if self.pending else None
        return rec if rec is not None and not rec.cut else None

    # ---- done callbacks, in job order --------------------------------------------------------

    def _broken(self, rec: _Record) -> None:
        """A chunk or a part of `rec` was not written (said by the writer): a part missing bytes
        must not be listed, so none of its segment is; the segment is, once written."""
        rec.broken = True
        rec.buffered = []
        rec.segment.parts.clear()

    def _part_done(self, rec: _Record, entry: Part) -> None:
        if rec not in self.pending or rec.broken:
            return  # its segment was lost, or a part of it
        rec.segment.parts.append(entry)
        self.parts += 1
        index = len(rec.segment.parts) - 1
        if rec.cut and index == rec.total - 1:
            return  # listed with its segment, whose file comes next
        msn = self._msn(rec)
        self.writer.write_playlist(lambda: self._tell("part", msn, index))

    def _segment_done(self, rec: _Record, written: int) -> None:
        w = self.writer
        w.inflight -= 1
        p = w.playlist
        assert p is not None
        msn = p.next_seq
        self.pending.remove(rec)
        last = len(rec.segment.parts) - 1

        def told() -> None:
            if last >= 0:
                self._tell("part", msn, last)
            self._tell("segment", msn, last + 1)

        w.written(p, rec.segment, rec.seq, written, told)

    def _segment_lost(self, rec: _Record) -> None:
        w = self.writer
        w.inflight -= 1
        if rec in self.pending:
            self.pending.remove(rec)
        if self.pending:
            self.pending[0].segment.discontinuity = True
        else:
            w.gap = True
        w.remove_parts(rec.segment.path)
        w.maybe_end()

    # ---- the playlist ------------------------------------------------------------------------

    def update(self, p: Playlist) -> None:
        """Put the segment under way and the hint into `p` before it is rendered."""
        ll = p.ll
        if ll is None:
            ll = p.ll = LowLatency(self.part_target)
        rec = self.pending[0] if self.pending else None
        ll.open = rec.segment if rec is not None else None
        ll.hint = ""
        if rec is None:
            return
        listed = len(rec.segment.parts)
        if rec.broken:
            if len(self.pending) > 1:
                ll.hint = self.writer.uri(part_path(self.pending[1].segment.path, 0))
        elif not rec.cut or listed < rec.total:
            ll.hint = self.writer.uri(part_path(rec.segment.path, listed))
        elif len(self.pending) > 1:
            ll.hint = self.writer.uri(part_path(self.pending[1].segment.path, 0))

    def _msn(self, rec: _Record) -> int:
        """The media sequence number `rec` is listed under (it is pending)."""
        p = self.writer.playlist
        return (p.next_seq if p is not None else 0) + self.pending.index(rec)

    def _tell(self, kind: str, msn: int, part: int) -> None:
        w = self.writer
        if w.on_part is not None:
            w.on_part(PartEvent(kind, w.source.key, w.m3u8_path, w.m3u8_url, msn, part))
