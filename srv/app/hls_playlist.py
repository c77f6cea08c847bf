"""HLS media playlists (RFC 8216) as a plain model, rendered and read back without I/O.

The HLS writer (srv/app/hls.py) keeps one `Playlist` per stream and renders it after every
segment; a republish reads the file back (`parse`) and goes on with it. What the model keeps
true, where SRS and nginx-rtmp do not:

- ``EXT-X-TARGETDURATION`` is fixed when the playlist is made and never changes in its life
  (RFC 8216 6.2.1: it MUST NOT change); a segment longer than it is still listed (the writer
  says so once);
- ``EXT-X-MEDIA-SEQUENCE`` grows by one for each segment that leaves the window (`slide`);
- ``EXT-X-DISCONTINUITY`` marks a segment that follows a change (republish, new sequence
  header, timestamp jump), and ``EXT-X-DISCONTINUITY-SEQUENCE`` counts those that have slid
  out (6.2.2: without it a player loses the timeline when a discontinuity leaves the window);
- ``EXT-X-PROGRAM-DATE-TIME`` on every segment (wall-clock time of its first frame);
- ``EXT-X-ENDLIST`` once the publisher stopped; version 3 for MPEG-TS, 7 for fMP4, whose
  segments name their init segment with ``EXT-X-MAP`` (again after each change).

Low-Latency HLS (srv's ``hls_ll``, RFC 8216bis; a `Playlist` with `ll` set): version 9,
``EXT-X-SERVER-CONTROL`` (CAN-BLOCK-RELOAD, PART-HOLD-BACK = 3 part targets, CAN-SKIP-UNTIL =
6 target durations), ``EXT-X-PART-INF``; the last `PART_SEGMENTS` segments list their parts
(``EXT-X-PART``, INDEPENDENT=YES on those that start on a keyframe) before their EXTINF; the
segment under way (`LowLatency.open`) follows with its parts so far, then an
``EXT-X-PRELOAD-HINT`` for the next part — neither once the playlist has ended.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field

VERSION_TS = 3
VERSION_FMP4 = 7
VERSION_LL = 9  # EXT-X-SKIP in the delta updates needs 9
PART_SEGMENTS = 3  # complete segments that still list their parts
PART_HOLD_BACK = 3.0  # part targets (RFC 8216bis: at least 2, 3 recommended)
SKIP_UNTIL = 6.0  # target durations (RFC 8216bis: at least 6)


@dataclass(slots=True)
class Part:
    """One partial segment (LL-HLS): `uri` as listed, `path` on disk (not rendered)."""

    uri: str
    duration: float
    independent: bool = False
    path: str = ""


@dataclass(slots=True)
class Segment:
    """One listed media segment. `uri` as listed (hls_entry_prefix included), `path` the file
    on disk (not rendered), `map_uri` the fMP4 init segment's URI ("" for MPEG-TS),
    `program_date_time` the wall-clock time (epoch seconds) of its first frame."""

    seq: int
    uri: str
    duration: float
    path: str = ""
    discontinuity: bool = False
    program_date_time: float | None = None
    map_uri: str = ""
    map_path: str = ""
    parts: list[Part] = field(default_factory=list)


@dataclass(slots=True)
class LowLatency:
    """A playlist's LL-HLS state: the part target (seconds), the segment under way (its
    discontinuity, date, init and parts so far; `uri`/`duration` unused) and the next part's
    URI (the preload hint; "" for none)."""

    part_target: float
    open: Segment | None = None
    hint: str = ""


@dataclass(slots=True)
class Playlist:
    target_duration: int
    version: int = VERSION_TS
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    segments: list[Segment] = field(default_factory=list)
    ended: bool = False
    ll: LowLatency | None = None

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def next_seq(self) -> int:
        return self.media_sequence + len(self.segments)

    def append(self, segment: Segment) -> None:
        self.segments.append(segment)

    def slide(self, window: float) -> list[Segment]:
        """Drop the oldest segments while the listed ones last more than `window` seconds
        (the newest always stays); the dropped ones, oldest first."""
        removed = []
        total = self.duration
        while len(self.segments) > 1 and total > window:
            gone = self.segments.pop(0)
            total -= gone.duration
            self.media_sequence += 1
            if gone.discontinuity:
                self.discontinuity_sequence += 1
            removed.append(gone)
        return removed


def target_duration(seconds: float) -> int:
    """EXT-X-TARGETDURATION for segments meant to last `seconds`: the integer above it."""
    return max(1, math.ceil(seconds - 1e-9))


def too_long(duration: float, target: int) -> bool:
    """RFC 8216 4.3.3.1: an EXTINF rounded to the nearest integer must not pass the target."""
    return math.floor(duration + 0.5) > target


def format_date_time(epoch: float) -> str:
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_date_time(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def render(p: Playlist) -> str:
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{p.version}", f"#EXT-X-TARGETDURATION:{p.target_duration}"]
    ll = p.ll
    if ll is not None:
        lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={PART_HOLD_BACK * ll.part_target:.3f},"
                     f"CAN-SKIP-UNTIL={SKIP_UNTIL * p.target_duration:.3f}")
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={ll.part_target:.3f}")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{p.media_sequence}")
    if p.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{p.discontinuity_sequence}")
    current_map = ""
    with_parts = len(p.segments) - PART_SEGMENTS
    for i, s in enumerate(p.segments):
        current_map = _segment_tags(lines, s, current_map)
        if ll is not None and i >= with_parts:
            _part_tags(lines, s.parts)
        lines.append(f"#EXTINF:{s.duration:.3f},")
        lines.append(s.uri)
    if p.ended:
        lines.append("#EXT-X-ENDLIST")
    elif ll is not None:
        if ll.open is not None and ll.open.parts:
            _segment_tags(lines, ll.open, current_map)
            _part_tags(lines, ll.open.parts)
        if ll.hint:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{ll.hint}"')
    return "\n".join(lines) + "\n"


def _segment_tags(lines: list[str], s: Segment, current_map: str) -> str:
    """The tags before a segment (and its parts); the init segment in force after it."""
    if s.discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if s.map_uri and s.map_uri != current_map:
        lines.append(f'#EXT-X-MAP:URI="{s.map_uri}"')
        current_map = s.map_uri
    if s.program_date_time is not None:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_date_time(s.program_date_time)}")
    return current_map


def _part_tags(lines: list[str], parts: list[Part]) -> None:
    for part in parts:
        lines.append(f'#EXT-X-PART:DURATION={part.duration:.3f},URI="{part.uri}"'
                     + (",INDEPENDENT=YES" if part.independent else ""))


def _attribute(text: str, name: str) -> str:
    key = f'{name}="'
    start = text.find(key)
    if start < 0:
        return ""
    start += len(key)
    end = text.find('"', start)
    return text[start:end] if end >= 0 else ""


def parse(text: str) -> Playlist | None:
    """A playlist `render` wrote (segment and part paths left empty; an LL playlist's segment
    under way and hint dropped); None when `text` is not one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        return None
    p = Playlist(target_duration=0)
    discontinuity = False
    current_map = ""
    date: float | None = None
    duration: float | None = None
    parts: list[Part] = []
    try:
        for line in lines[1:]:
            tag, _, value = line.partition(":")
            if tag == "#EXT-X-VERSION":
                p.version = int(value)
            elif tag == "#EXT-X-TARGETDURATION":
                p.target_duration = int(value)
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                p.media_sequence = int(value)
            elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                p.discontinuity_sequence = int(value)
            elif tag == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif tag == "#EXT-X-MAP":
                current_map = _attribute(value, "URI")
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                date = parse_date_time(value)
            elif tag == "#EXTINF":
                duration = float(value.split(",", 1)[0])
            elif tag == "#EXT-X-ENDLIST":
                p.ended = True
            elif tag == "#EXT-X-PART-INF":
                p.ll = LowLatency(float(value.partition("PART-TARGET=")[2].split(",", 1)[0]))
            elif tag == "#EXT-X-PART":
                parts.append(Part(_attribute(value, "URI"), float(value.partition("DURATION=")[2].split(",", 1)[0]),
                                  "INDEPENDENT=YES" in value))
            elif not line.startswith("#") and duration is not None:
                p.segments.append(Segment(p.next_seq, line, duration, discontinuity=discontinuity,
                                          program_date_time=date, map_uri=current_map, parts=parts))
                discontinuity, date, duration, parts = False, None, None, []
    except ValueError:
        return None
    return p if p.target_duration > 0 else None
