"""HTTP `Range` requests on files (RFC 9110 14), answered as nginx's static module answers them
with `max_ranges 1` (sans-I/O: a header and the file's size in, a decision out).

- only `bytes=` ranges; a header that does not start so (or is shorter than 7 bytes) is
  ignored: the whole file, 200;
- `If-Range` with an entity tag (it ends with `"`) must equal the file's `ETag`, else with a
  date it must equal its `Last-Modified` to the second; otherwise the whole file, 200;
- one range `a-b`, `a-` or `-n` (the last n bytes), `b` clipped to the end of the file: 206 with
  `Content-Range: bytes a-b/size`;
- a range that starts at or past the end of the file, and no range that does not, or a header
  that does not parse: 416 with `Content-Range: bytes */size`;
- more than one range: the whole file, 200 (RFC 9110 allows a server to ignore Range;
  nginx with `max_ranges 1`; no multipart/byteranges);
- a range of an empty file (`bytes=0-`) is the whole (empty) file, 200, as nginx does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

_SPEC = re.compile(rb" *(?:(\d+) *- *(\d*)|- *(\d+)) *")


@dataclass(frozen=True, slots=True)
class Whole:
    """Serve the whole file (no Range, an ignored one, or a stale If-Range)."""


@dataclass(frozen=True, slots=True)
class Part:
    """206: bytes [start, end) of a file of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def content_range(self) -> bytes:
        return b"bytes %d-%d/%d" % (self.start, self.end - 1, self.size)


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """416 with `Content-Range: bytes */size`."""

    size: int

    @property
    def content_range(self) -> bytes:
        return b"bytes */%d" % self.size


WHOLE = Whole()
Decision = Whole | Part | Unsatisfiable


def if_range_holds(if_range: bytes | None, etag: bytes, mtime: float) -> bool:
    """Whether a request's `If-Range` lets its Range apply (no If-Range: it does)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.endswith(b'"'):
        return value == etag
    try:
        return int(parsedate_to_datetime(value.decode("latin-1")).timestamp()) == int(mtime)
    except (TypeError, ValueError, IndexError):
        return False


def decide(header: bytes | None, size: int) -> Decision:
    """What a `Range` header asks of a file of `size` bytes (nginx's `ngx_http_range_parse`)."""
    if header is None or len(header) < 7 or header[:6].lower() != b"bytes=":
        return WHOLE
    found: Part | None = None
    for spec in header[6:].split(b","):
        m = _SPEC.fullmatch(spec)
        if m is None:
            return Unsatisfiable(size)
        first, last, suffix = m.groups()
        if suffix is not None:
            start, end = max(size - int(suffix), 0), size
        else:
            start = int(first)
            end = size if not last or int(last) >= size else int(last) + 1
        if start < end:
            if found is not None:
                return WHOLE  # a second range: max_ranges 1
            found = Part(start, end, size)
        elif start == 0:
            return WHOLE  # an empty file (nginx)
    return found if found is not None else Unsatisfiable(size)
