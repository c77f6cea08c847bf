"""A request head that needs none of h11's machinery (sans-I/O): what players send for segments
and playlists, parsed in one pass.

`parse(data)` gives a `SimpleRequest` only when `data` is exactly one complete request head
(nothing before or after it: no pipelined bytes) that h11 would take as it is: a `GET` or
`HEAD` of an origin-form target (`/...`, visible ASCII) in HTTP/1.1, CRLF line ends, header
names that are tokens, values of visible characters, spaces, tabs and obs-text, exactly one
`Host`, and no body, no `Transfer-Encoding`, no `Expect`, no `Upgrade` and no `Connection`
other than `keep-alive`, at most `limit` bytes. Anything else is None: the connection then
hands the same bytes to h11, which answers, frames and refuses as it always has (400, 431 ...).
Header names are lower case, as h11 gives them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")
_REFUSED = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})
_METHODS = frozenset({b"GET", b"HEAD"})


class SimpleRequest(NamedTuple):
    """The parts of an `h11.Request` the HTTP connection reads."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    http_version: bytes = b"1.1"


def parse(data: bytes, limit: int) -> SimpleRequest | None:
    if len(data) > limit or not data.endswith(b"\r\n\r\n"):
        return None
    lines = data[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] not in _METHODS or parts[2] != b"HTTP/1.1" or not _TARGET.fullmatch(parts[1]):
        return None
    headers = []
    hosts = 0
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return None  # also an empty line: a second head in the same bytes
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            return None
        name = name.lower()
        if name in _REFUSED or (name == b"connection" and value.lower() != b"keep-alive"):
            return None
        hosts += name == b"host"
        headers.append((name, value))
    if hosts != 1:
        return None
    return SimpleRequest(parts[0], parts[1], tuple(headers))
