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
- Timestamps are unwrapped past 2^32 ms; a jump back (more than `JUMP_BACK` ms) or forward
  (more than `JUMP_FORWARD`) is rebased to go on from the last frame, and the next segment is
  cut at the next keyframe with `discontinuity` set. New sequence headers (a track appears or
  changes) also end the segment at the next keyframe, with a discontinuity.
- MPEG-TS cannot carry AV1 or Opus: when the first segment starts with such a track the
  segmenter goes fMP4 for the stream and says why once (`fallback`).
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
class _Open:
    start: int
    wall: float
    discontinuity: bool
    has_video: bool
    keyframe_start: bool
    generation: int
    init: bytes | None
    parts: list[bytes] = field(default_factory=list)


class Segmenter:
    def __init__(self, hls: HlsConfig, fmp4: bool) -> None:
        self.hls = hls
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

    def push(self, tag_type: int, timestamp: int, payload: bytes, now: float) -> list[Cut]:
        if tag_type in (TAG_AUDIO, TAG_VIDEO):
            timestamp = self._timeline(tag_type, timestamp)
        frame = self.frames.read(tag_type, timestamp, payload)
        if frame is None:
            return []
        self._last_frame = frame.dts
        cuts: list[Cut] = []
        key = frame.is_video and frame.keyframe
        if key:
            self._keyframe(frame.dts)
        seg = self.open
        if seg is None:
            if key or (not frame.is_video and self.frames.video is None):
                self._start(frame, now, discontinuity=self._take_discontinuity())
            else:
                self.skipped += 1
            return cuts
        if self._should_cut(seg, frame, key):
            cuts.append(self._cut(frame, now))
        else:
            self._add(frame)
        return cuts

    def finish(self) -> Cut | None:
        """The segment under way, ended at the last frame (the publisher stopped)."""
        seg = self.open
        if seg is None:
            return None
        self.open = None
        if self.mp4 is not None:
            seg.parts.append(self.mp4.flush())
        step = self._step[TAG_VIDEO] if seg.has_video else self._step[TAG_AUDIO]
        duration = max(0.001, (self._last_frame + step - seg.start) / 1000)
        return self._made(seg, duration)

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

    def _cut(self, frame: Frame, now: float) -> Cut:
        seg = self.open
        assert seg is not None
        discontinuity = self._take_discontinuity() or self.frames.generation != seg.generation
        if self.mp4 is not None:
            self.mp4.push_frame(frame)  # held until the next frame: not in this fragment
            seg.parts.append(self.mp4.fragment())
            done = self._made(seg, (frame.dts - seg.start) / 1000)
            self._open(frame, now, discontinuity)
        else:
            done = self._made(seg, (frame.dts - seg.start) / 1000)
            self._start(frame, now, discontinuity)
        return done

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
        seg = self.open = _Open(frame.dts, now, discontinuity, self.frames.video is not None,
                                frame.is_video and frame.keyframe, generation, init)
        return seg

    def _add(self, frame: Frame) -> None:
        seg = self.open
        assert seg is not None
        if self.mp4 is not None:
            self.mp4.push_frame(frame)
        else:
            seg.parts.append(self.ts.push_frame(frame))
