"""Where HLS segments end: published messages in, finished segments (bytes + timing) out.

Sans-I/O, like the muxers it drives (srv/media/mpegts.py `TsMuxer`, srv/media/fmp4.py
`Fmp4Muxer`): `push(tag_type, timestamp, payload, now)` answers the segments that message
finished, `finish()` the last one when the publisher stops. The HLS writer (srv/app/hls.py)
writes them to files and lists them.

The rules:
- A segment starts on a video keyframe (an AVC/HEVC end of sequence is no frame: `FrameReader`
  answers none for it). Until the first keyframe, frames are skipped; a stream without video
  starts on its first audio frame.
- With video, a segment ends on the next keyframe once it lasts ``hls_fragment * hls_td_ratio``
  — or earlier, from half the fragment on, when waiting one more GOP would make it longer than
  the playlist's target duration (EXTINF rounded must not pass EXT-X-TARGETDURATION, RFC 8216
  4.3.3.1; SRS and nginx-rtmp list 20 s segments under a 10 s target instead). With
  ``hls_wait_keyframe off`` it ends at the fragment on any video frame. Audio-only segments end
  at ``hls_aof_ratio * hls_fragment``.
- A GOP longer than the fragment makes segments longer than asked whatever we do (longer than
  the target when it passes it): `long_gop` turns true (the writer says so once) and `gop`
  keeps the last keyframe interval.
- A segment's wall-clock date (EXT-X-PROGRAM-DATE-TIME) is counted on the media timeline from
  the first segment's arrival, so dates follow durations; it is taken from the clock again
  after a discontinuity or a drift of more than `DATE_DRIFT`.
- Timestamps are unwrapped past 2^32 ms; a jump back (more than `JUMP_BACK` ms) or forward
  (more than `JUMP_FORWARD`) is rebased to go on from the last frame, and the next segment is
  cut at the next keyframe with `discontinuity` set. New sequence headers (a track appears or
  changes) also end the segment at the next keyframe, with a discontinuity.
- MPEG-TS cannot carry AV1 or Opus: when the first segment starts with such a track the
  segmenter goes fMP4 for the stream and says why once (`fallback`).

Low-Latency HLS (`part` > 0, fMP4 only): `push` also answers the pieces of the segment under
way, in order: an `Opening` when a segment starts (its init segment, discontinuity, wall
clock), then `Chunk`s of CMAF (moof + mdat) for its parts, one per video frame (per audio frame
without video), the frame before it being the newest whose duration is known. A part ends
before the frame that would make it longer than `part` seconds (so parts never pass the part
target, frame timing allowing), and always where the segment ends: its last `Chunk` carries
its duration. A part that starts on a keyframe (every part of an audio-only stream) is
`independent`. The parts' durations sum to their segment's exactly (both in whole ms), and a
segment's bytes are its chunks' bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from srv.app.hls_playlist import target_duration, too_long
from srv.conf.model import HlsConfig
from srv.media.flv import TAG_AUDIO, TAG_VIDEO
from srv.media.fmp4 import Fmp4Muxer
from srv.media.frames import Frame
from srv.media.mpegts import TsMuxer, unsupported_reason

WRAP = 1 << 32
JUMP_BACK = 1000  # ms a message may go back (tracks interleave) before it is a jump
JUMP_FORWARD = 10_000  # ms a message may go forward before it is a jump
GOP_SLACK = 0.05  # s a keyframe interval may pass the fragment (frame timing jitter) before it is long
DATE_DRIFT = 1.0  # s the media timeline may drift from the wall clock before dates are taken again


@dataclass(slots=True)
class Cut:
    """A finished segment: its bytes (`init`: the fMP4 init segment it needs, when that
    changed with it), when it started (ms on the writer's timeline and wall-clock seconds), how
    long it lasts, and whether a discontinuity comes before it."""

    data: bytes
    start: int
    duration: float
    wall: float
    discontinuity: bool
    has_video: bool
    keyframe_start: bool
    init: bytes | None = None
    init_generation: int = 0


@dataclass(slots=True)
class Opening:
    """LL-HLS: a segment starts (its first frame is held until the next one's time is known)."""

    start: int
    wall: float
    discontinuity: bool
    has_video: bool
    init: bytes | None


@dataclass(slots=True)
class Chunk:
    """LL-HLS: CMAF chunks (moof + mdat) of part `part` (from 0) of the segment under way;
    `duration` is set when the part ends with them."""

    part: int
    data: bytes
    duration: float | None = None
    independent: bool = False


Event = Cut | Opening | Chunk


@dataclass(slots=True)
class _Open:
    start: int
    wall: float
    discontinuity: bool
    has_video: bool
    keyframe_start: bool
    generation: int
    init: bytes | None
    parts: list[bytes] = field(default_factory=list)
    # LL-HLS: the part under way
    part: int = 0
    part_start: int = 0
    part_independent: bool = False


class Segmenter:
    def __init__(self, hls: HlsConfig, fmp4: bool, part: float = 0.0) -> None:
        self.hls = hls
        self.part = part if fmp4 else 0.0  # LL-HLS part target (s); 0: whole segments only
        self.fmp4 = fmp4
        self.ts = TsMuxer()
        self.mp4: Fmp4Muxer | None = None
        if fmp4:
            self.mp4 = Fmp4Muxer()
            self.mp4.frames = self.ts.frames
        self.frames = self.ts.frames
        self.target = target_duration(hls.fragment * hls.td_ratio)
        self.fallback: str | None = None  # why a TS stream went fMP4
        self.open: _Open | None = None
        self.init_generation = -1  # the track generation of the last init segment given out
        self.gop = 0.0  # seconds between the last two keyframes
        self.long_gop = False
        self.skipped = 0  # frames dropped before the first keyframe
        self.discontinuities = 0  # timestamp jumps seen
        self._last_key: int | None = None
        self._pending_discontinuity = False
        self._last_raw: int | None = None
        self._last_in = 0  # unwrapped
        self._offset = 0  # rebases jumps: out = unwrapped + offset
        self._step: dict[int, int] = {TAG_VIDEO: 40, TAG_AUDIO: 23}  # ms between a track's frames
        self._last_out: dict[int, int] = {TAG_VIDEO: -1, TAG_AUDIO: -1}
        self._last_frame = 0
        self._last_video = -1
        self._anchor: tuple[int, float] | None = None  # (dts, wall clock) segment dates count from
        self._events: list[Event] = []  # LL-HLS: what the current push answers, in order

    def reconfigure(self, hls: HlsConfig) -> None:
        self.hls = hls  # new durations apply from the next cut; the target stays the playlist's

    # ---- timestamps --------------------------------------------------------------------------

    def _timeline(self, tag_type: int, raw: int) -> int:
        """The message's time on the writer's timeline: unwrapped, jumps rebased."""
        raw &= 0xFFFFFFFF
        last = self._last_raw
        self._last_raw = raw
        if last is None:
            self._last_in = raw
        else:
            diff = (raw - last) & 0xFFFFFFFF  # signed difference to the message before: wraps vanish
            if diff >= WRAP // 2:
                diff -= WRAP
            before = self._last_in
            self._last_in = before + diff
            if diff < -JUMP_BACK or diff > JUMP_FORWARD:
                self._offset -= diff - self._step.get(tag_type, 20)  # go on one frame after the last
                self._pending_discontinuity = True
                self.discontinuities += 1
        out = self._last_in + self._offset
        previous = self._last_out.get(tag_type, -1)
        if previous >= 0 and 0 < out - previous <= 1000:
            self._step[tag_type] = out - previous
        self._last_out[tag_type] = out
        return out

    # ---- messages ----------------------------------------------------------------------------

    def push(self, tag_type: int, timestamp: int, payload: bytes, now: float) -> list[Event]:
        """The segments this message finished (`Cut`); with LL-HLS also the `Opening`s and
        `Chunk`s it made, in order."""
        if tag_type in (TAG_AUDIO, TAG_VIDEO):
            timestamp = self._timeline(tag_type, timestamp)
        frame = self.frames.read(tag_type, timestamp, payload)
        if frame is None:
            return []
        self._last_frame = frame.dts
        if frame.is_video:
            self._last_video = frame.dts
        events: list[Event] = []
        self._events = events
        key = frame.is_video and frame.keyframe
        if key:
            self._keyframe(frame.dts)
        seg = self.open
        if seg is None:
            if key or (not frame.is_video and self.frames.video is None):
                self._start(frame, now, discontinuity=self._take_discontinuity())
            else:
                self.skipped += 1
            return events
        if self._should_cut(seg, frame, key):
            self._cut(frame, now)
        else:
            self._add(frame)
        return events

    def finish(self) -> Cut | None:
        """The segment under way, ended at the last frame (the publisher stopped)."""
        return next((e for e in self.finish_events() if isinstance(e, Cut)), None)

    def finish_events(self) -> list[Event]:
        """`finish` with LL-HLS's last `Chunk` before the `Cut`."""
        seg = self.open
        if seg is None:
            return []
        self.open = None
        events: list[Event] = []
        step = self._step[TAG_VIDEO] if seg.has_video else self._step[TAG_AUDIO]
        end = self._last_frame + step
        if self.part and seg.has_video and self._last_video >= seg.part_start:
            end = self._last_video + step  # parts are timed by their video: none passes the target
        if self.mp4 is not None:
            data = self.mp4.flush()
            seg.parts.append(data)
            if self.part:
                events.append(Chunk(seg.part, data, max(0.001, (end - seg.part_start) / 1000), seg.part_independent))
        events.append(self._made(seg, max(0.001, (end - seg.start) / 1000)))
        return events

    # ---- cutting -----------------------------------------------------------------------------

    def _keyframe(self, dts: int) -> None:
        last = self._last_key
        self._last_key = dts
        if last is not None and dts > last:
            self.gop = (dts - last) / 1000
            if self.gop > self.hls.fragment * self.hls.td_ratio + GOP_SLACK:
                self.long_gop = True

    def _take_discontinuity(self) -> bool:
        pending = self._pending_discontinuity
        self._pending_discontinuity = False
        return pending

    def _should_cut(self, seg: _Open, frame: Frame, key: bool) -> bool:
        hls = self.hls
        elapsed = (frame.dts - seg.start) / 1000
        if self.frames.video is None:  # audio only
            return self._pending_discontinuity or elapsed >= hls.aof_ratio * hls.fragment
        if not frame.is_video:
            return False
        if key:
            if self._pending_discontinuity or self.frames.generation != seg.generation:
                return True
            if elapsed >= hls.fragment * hls.td_ratio:
                return True
            # the next keyframe would make the segment longer than the target: cut now
            return bool(self.gop) and elapsed >= hls.fragment / 2 and too_long(elapsed + self.gop, self.target)
        return not hls.wait_keyframe and elapsed >= hls.fragment * hls.td_ratio

    def _cut(self, frame: Frame, now: float) -> None:
        """End the segment under way before `frame`, which starts the next one."""
        seg = self.open
        assert seg is not None
        discontinuity = self._take_discontinuity() or self.frames.generation != seg.generation
        if self.mp4 is not None:
            self.mp4.push_frame(frame)  # held until the next frame: not in this fragment
            data = self.mp4.fragment()
            seg.parts.append(data)
            if self.part:
                self._events.append(Chunk(seg.part, data, (frame.dts - seg.part_start) / 1000, seg.part_independent))
            self._events.append(self._made(seg, (frame.dts - seg.start) / 1000))
            self._open(frame, now, discontinuity)
        else:
            self._events.append(self._made(seg, (frame.dts - seg.start) / 1000))
            self._start(frame, now, discontinuity)

    def _made(self, seg: _Open, duration: float) -> Cut:
        return Cut(b"".join(seg.parts), seg.start, max(duration, 0.001), seg.wall, seg.discontinuity,
                   seg.has_video, seg.keyframe_start, seg.init, seg.generation)

    def _start(self, frame: Frame, now: float, discontinuity: bool) -> None:
        if self.mp4 is None and self.open is None and self.fallback is None:
            reason = unsupported_reason(self.frames.video, self.frames.audio)
            if reason is not None:
                self.fallback = reason
                self.mp4 = Fmp4Muxer()
                self.mp4.frames = self.frames
                self.fmp4 = True
        if self.mp4 is not None:
            self.mp4.push_frame(frame)
            self._open(frame, now, discontinuity)
            return
        seg = self._open(frame, now, discontinuity)
        seg.parts.append(self.ts.start_segment())
        seg.parts.append(self.ts.push_frame(frame))

    def _open(self, frame: Frame, now: float, discontinuity: bool) -> _Open:
        init = None
        generation = self.frames.generation
        if self.mp4 is not None and generation != self.init_generation:
            init = self.mp4.init_segment()
            self.init_generation = generation
        now = self._date(frame.dts, now, discontinuity)
        seg = self.open = _Open(frame.dts, now, discontinuity, self.frames.video is not None,
                                frame.is_video and frame.keyframe, generation, init)
        if self.part:
            seg.part_start = frame.dts
            seg.part_independent = frame.keyframe or self.frames.video is None
            self._events.append(Opening(frame.dts, now, discontinuity, seg.has_video, init))
        return seg

    def _date(self, dts: int, now: float, discontinuity: bool) -> float:
        """The wall-clock time of the frame at `dts` arriving `now`: counted on the media
        timeline from the first segment's (so dates follow durations, whatever the batches
        the writer reads), taken again after a discontinuity or when the two drift apart."""
        anchor = self._anchor
        if anchor is not None and not discontinuity:
            date = anchor[1] + (dts - anchor[0]) / 1000
            if abs(date - now) <= DATE_DRIFT:
                return date
        self._anchor = (dts, now)
        return now

    def _add(self, frame: Frame) -> None:
        seg = self.open
        assert seg is not None
        if self.mp4 is None:
            seg.parts.append(self.ts.push_frame(frame))
            return
        self.mp4.push_frame(frame)
        if not self.part or not (frame.is_video or self.frames.video is None):
            return  # chunks are cut on video frames (audio frames without video)
        ends = self._part_ends(seg, frame)
        data = self.mp4.fragment()  # every sample before this frame
        if data or ends:
            seg.parts.append(data)
            self._events.append(Chunk(seg.part, data, (frame.dts - seg.part_start) / 1000 if ends else None,
                                      seg.part_independent))
        if ends:
            seg.part += 1
            seg.part_start = frame.dts
            seg.part_independent = frame.keyframe or self.frames.video is None

    def _part_ends(self, seg: _Open, frame: Frame) -> bool:
        """Whether the part under way ends before `frame`: one more frame would make it longer
        than the part target (1 ms of timing jitter allowed)."""
        step = self._step[TAG_VIDEO] if frame.is_video else self._step[TAG_AUDIO]
        return frame.dts > seg.part_start and frame.dts + step - seg.part_start > self.part * 1000 + 1
