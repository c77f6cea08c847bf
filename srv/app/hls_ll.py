"""Low-Latency HLS (srv's ``hls_ll on``): the names of partial segments, the notices the writer
gives as parts land, and the delta playlist of ``_HLS_skip=YES`` — what the writer
(srv/app/hls.py) and the serving side (srv/http) share. Pure: no I/O.

Files (the contract between writer and servers, docs/hls.md "Low-Latency HLS"):
- part ``k`` (from 0) of segment ``a/s-12.m4s`` is ``a/s-12.k.m4s`` (`part_path`);
- while it is written its bytes grow in ``a/s-12.k.m4s.partial`` (`partial_path`), one CMAF
  chunk (moof + mdat) per append; the writer renames it to its final name once complete
  (same inode, nothing appended after), so the final name existing is the completion signal;
- the segment file is the concatenation of its parts, written once the segment is complete.

Playlist rules this module relies on (RFC 8216bis): segments, each optionally preceded by its
``EXT-X-PART`` tags, then the parts of the segment under way and an ``EXT-X-PRELOAD-HINT``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

PARTIAL_SUFFIX = ".partial"

#: tags of the playlist as a whole, kept at the top of a delta playlist (RFC 8216bis 4.4.3)
_PLAYLIST_TAGS = ("#EXTM3U", "#EXT-X-VERSION", "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE",
                  "#EXT-X-DISCONTINUITY-SEQUENCE", "#EXT-X-SERVER-CONTROL", "#EXT-X-PART-INF",
                  "#EXT-X-PLAYLIST-TYPE", "#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-START")


def part_path(segment_path: str, index: int | str) -> str:
    """Part `index` of a segment: its name with ``.index`` before the extension
    (``live/s-12.m4s`` -> ``live/s-12.3.m4s``); `index` may be a glob wildcard."""
    stem, ext = os.path.splitext(segment_path)
    return f"{stem}.{index}{ext}"


def split_part(path: str) -> tuple[str, int] | None:
    """(segment path, part index) of a part's name; None when `path` names no part."""
    stem, ext = os.path.splitext(path)
    base, dot, index = stem.rpartition(".")
    if not dot or not base or not index.isdigit() or "/" in index:
        return None
    return base + ext, int(index)


def partial_path(path: str) -> str:
    """Where a part's bytes grow until it is complete (then renamed to `path`)."""
    return path + PARTIAL_SUFFIX


@dataclass(frozen=True, slots=True)
class PartEvent:
    """What the owner worker's writer tells after a disk job (docs/hls.md, Low-Latency HLS):

    - ``chunk``: bytes were appended to part (`msn`, `part`)'s ``.partial`` file (the first
      one: the hinted part has started);
    - ``part``: part (`msn`, `part`) has its final name and the playlist listing it is in place;
    - ``segment``: segment `msn` is written whole and listed with its EXTINF (`part`: its
      number of parts);
    - ``ended``: the playlist with EXT-X-ENDLIST is in place (`msn`: the next one, `part` -1).
    """

    kind: str
    key: str  # the source's key, "vhost/app/stream"
    m3u8_path: str  # the playlist file
    m3u8_url: str  # the playlist's path under hls_path
    msn: int
    part: int


PartListener = Callable[[PartEvent], None]


def _attributes(value: str) -> dict[str, str]:
    """An attribute list (``A=1,B="x,y"``) as a dict, quotes removed."""
    out: dict[str, str] = {}
    key, token, quoted = "", "", False
    for ch in value + ",":
        if ch == '"':
            quoted = not quoted
        elif ch == "=" and not quoted and not key:
            key, token = token, ""
        elif ch == "," and not quoted:
            if key:
                out[key.strip()] = token
            key, token = "", ""
        else:
            token += ch
    return out


def render_delta(text: str) -> str:
    """The delta update of an LL-HLS playlist (``_HLS_skip=YES``, RFC 8216bis 6.2.5.1): the
    oldest segments replaced by ``EXT-X-SKIP:SKIPPED-SEGMENTS=N`` while those kept still span
    CAN-SKIP-UNTIL seconds; the init segment in force is named again before the first one
    kept. `text` unchanged when nothing can be skipped (no CAN-SKIP-UNTIL, too short)."""
    lines = text.splitlines()
    head: list[str] = []
    blocks: list[tuple[list[str], float]] = []  # each segment: its lines (tags, URI), EXTINF
    current: list[str] = []
    duration: float | None = None
    skip_until = 0.0
    for line in lines:
        tag = line.partition(":")[0]
        if not blocks and not current and (tag in _PLAYLIST_TAGS or not line.strip()):
            head.append(line)
            if tag == "#EXT-X-SERVER-CONTROL":
                try:
                    skip_until = float(_attributes(line.partition(":")[2]).get("CAN-SKIP-UNTIL", "0"))
                except ValueError:
                    return text
            continue
        current.append(line)
        if tag == "#EXTINF":
            try:
                duration = float(line.partition(":")[2].split(",", 1)[0])
            except ValueError:
                return text
        elif line and not line.startswith("#") and duration is not None:
            blocks.append((current, duration))
            current, duration = [], None
    tail = current
    if skip_until <= 0 or not blocks:
        return text
    kept = 0.0
    skipped = len(blocks)  # the segments before the first one kept
    while skipped > 0 and kept < skip_until:
        skipped -= 1
        kept += blocks[skipped][1]
    if skipped == 0:
        return text
    current_map = ""
    for block, _ in blocks[:skipped]:
        for line in block:
            if line.startswith("#EXT-X-MAP:"):
                current_map = line
    out = [*head, f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}"]
    first_lines = blocks[skipped][0]
    if current_map and not any(line.startswith("#EXT-X-MAP:") for line in first_lines):
        out.append(current_map)
    for block, _ in blocks[skipped:]:
        out.extend(block)
    out.extend(tail)
    return "\n".join(out) + "\n"
