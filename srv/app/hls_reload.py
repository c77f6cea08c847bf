"""LL-HLS delivery directives (RFC 8216bis 6.2.5): what a playlist request asks and whether the
playlist on disk answers it yet. Pure: text in, decisions out; the waiting is `hls_waits`.

A client of a playlist whose `EXT-X-SERVER-CONTROL` says `CAN-BLOCK-RELOAD=YES` may add
`_HLS_msn=<M>` (and `_HLS_part=<P>`) to its request: the server holds it until the playlist
holds media segment M (or its partial segment P) or a later one. `verdict` says, for the
playlist as it is now (`LiveState`, read with `state_of`):

- `READY`: the playlist answers it (also when it ended: `EXT-X-ENDLIST` is answered at once);
- `WAIT`: not yet;
- `TOO_FAR`: M is more than two segments past the last one listed, or P more than the Advance
  Part Limit (three seconds of parts) past the last part listed: 400 at once (6.2.5.2).

A request behind the playlist is `READY`: it gets the current playlist. Directives that do not
parse (`_HLS_part` without `_HLS_msn`, not a non-negative integer, an unknown `_HLS_skip`) are a
400 (`parse_directives`). A playlist that does not offer blocking reload ignores them, as the
RFC lets a server do.

`cache_control` is what LL-HLS CDNs expect: a blocking request's answer is the same for
everyone who asks the same query, so it is public for a few target durations (its URL, query
included, is the cache key); the plain playlist stays `no-cache`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

MSN = "_HLS_msn"
PART = "_HLS_part"
SKIP = "_HLS_skip"
DIRECTIVES = (MSN, PART, SKIP)
HOLD_TARGETS = 3  # a request is held at most this many target durations, then 503 (Apple)
CACHE_TARGETS = 3  # a blocking answer may be cached this many target durations
ADVANCE_SECONDS = 3.0  # the Advance Part Limit: three seconds of parts (at least three parts)


class Verdict(Enum):
    READY = "ready"
    WAIT = "wait"
    TOO_FAR = "too far"


@dataclass(frozen=True, slots=True)
class Directives:
    """A playlist request's `_HLS_*` query: `msn` None when it asks no blocking reload; `skip`
    "" (none), "YES" or "v2"."""

    msn: int | None = None
    part: int | None = None
    skip: str = ""

    @property
    def blocking(self) -> bool:
        return self.msn is not None


NO_DIRECTIVES = Directives()


def _natural(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise ValueError(text)
    return int(text)


def parse_directives(query: list[tuple[str, str]]) -> Directives | str:
    """The request's directives, or why they are a bad request."""
    params = {k: v for k, v in query if k in DIRECTIVES}
    try:
        msn = _natural(params[MSN]) if MSN in params else None
        part = _natural(params[PART]) if PART in params else None
    except ValueError as e:
        return f"{MSN}/{PART} must be a non-negative integer, not {e}"
    if part is not None and msn is None:
        return f"{PART} without {MSN}"
    skip = params.get(SKIP, "")
    if skip not in ("", "YES", "v2"):
        return f"{SKIP} must be YES or v2"
    return Directives(msn, part, skip)


@dataclass(frozen=True, slots=True)
class LiveState:
    """What a media playlist lists, as blocking reload needs it.

    `segments` complete media segments from `media_sequence`; `parts` partial segments listed
    after the last of them (those of segment `next_msn`, still being written); `hint` the URI
    of the `EXT-X-PRELOAD-HINT` of TYPE=PART; `part_target` 0 when there are no parts."""

    media_sequence: int = 0
    segments: int = 0
    parts: int = 0
    target: int = 0
    part_target: float = 0.0
    can_block: bool = False
    can_skip_until: float = 0.0
    ended: bool = False
    hint: str = ""
    parts_per_segment: int = 0  # parts of the last complete segment that listed them

    @property
    def next_msn(self) -> int:
        """The media sequence number of the segment after the last complete one."""
        return self.media_sequence + self.segments

    @property
    def hold(self) -> float:
        """Seconds a request may be held before 503."""
        return HOLD_TARGETS * max(self.target, 1)

    @property
    def advance_limit(self) -> int:
        """RFC 8216bis: three divided by the part target (under 1 s), else three."""
        if 0 < self.part_target < 1:
            return math.ceil(ADVANCE_SECONDS / self.part_target)
        return 3


_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attributes(value: str) -> dict[str, str]:
    """An attribute list (`A=1,B="x,y"`) as a dict, quotes removed."""
    return {k: v.strip('"') for k, v in _ATTR.findall(value)}


def state_of(text: str | bytes) -> LiveState:
    """The `LiveState` of a media playlist's text (anything else gives an empty one)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    media_sequence = segments = parts = target = last_parts = 0
    part_target = skip_until = 0.0
    can_block = ended = False
    hint = ""
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            segments += 1
            if parts:
                last_parts = parts
            parts = 0
            continue
        tag, _, value = line.partition(":")
        try:
            if tag == "#EXT-X-PART":
                parts += 1
            elif tag == "#EXT-X-PRELOAD-HINT":
                attrs = attributes(value)
                if attrs.get("TYPE") == "PART":
                    hint = attrs.get("URI", "")
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                media_sequence = int(value)
            elif tag == "#EXT-X-SKIP":
                segments += int(attributes(value).get("SKIPPED-SEGMENTS", "0"))
            elif tag == "#EXT-X-TARGETDURATION":
                target = int(value)
            elif tag == "#EXT-X-PART-INF":
                part_target = float(attributes(value).get("PART-TARGET", "0"))
            elif tag == "#EXT-X-SERVER-CONTROL":
                attrs = attributes(value)
                can_block = attrs.get("CAN-BLOCK-RELOAD") == "YES"
                skip_until = float(attrs.get("CAN-SKIP-UNTIL", "0") or 0)
            elif tag == "#EXT-X-ENDLIST":
                ended = True
        except ValueError:
            continue
    return LiveState(media_sequence, segments, parts, target, part_target, can_block, skip_until, ended,
                     hint, last_parts)


def verdict(state: LiveState, d: Directives) -> Verdict:
    """Whether the playlist `state` answers a blocking request for `d` (see the module doc)."""
    if d.msn is None or state.ended:
        return Verdict.READY
    msn, nxt = d.msn, state.next_msn
    if msn > nxt + 1:  # more than two past the last complete segment (nxt - 1)
        return Verdict.TOO_FAR
    if d.part is None or state.part_target <= 0:
        return Verdict.READY if msn < nxt else Verdict.WAIT
    if msn < nxt or (msn == nxt and d.part < state.parts):
        return Verdict.READY
    per_segment = state.parts_per_segment or max(1, round(state.target / state.part_target))
    ahead = (msn - nxt) * per_segment + d.part - (state.parts - 1)
    return Verdict.TOO_FAR if ahead > state.advance_limit else Verdict.WAIT


def holds(state: LiveState, d: Directives) -> bool:
    """Whether the playlist's server control lets `d` block (else the directives are ignored)."""
    return d.blocking and state.can_block


def cache_control(state: LiveState, d: Directives) -> bytes:
    """`Cache-Control` of a playlist answer: public for a few target durations when it answers a
    blocking request (the query is the cache key), else `no-cache`."""
    if holds(state, d):
        return f"public, max-age={CACHE_TARGETS * max(state.target, 1)}".encode()
    return b"no-cache"


def is_hint(state: LiveState, uri_path: str) -> bool:
    """Whether the URL path `uri_path` names the playlist's preload-hinted part (the hint's URI
    may be relative to the playlist, absolute, or carry a query)."""
    if not state.hint:
        return False
    hint = state.hint.split("?", 1)[0]
    if "://" in hint:
        hint = "/" + hint.split("://", 1)[1].partition("/")[2]
    return uri_path == hint or uri_path.endswith("/" + hint.lstrip("/"))
