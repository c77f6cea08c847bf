"""A worker's open HLS files, kept across requests (nginx's `open_file_cache`).

Opening a file for a request costs `openat`, a `readlink` of `/proc/self/fd/N` (where it really
is: inside the root, every symlink followed), `fstat` and `close`. Every viewer of a live stream
asks for the same few files, so `OpenFiles` keeps them open, keyed by the path the request named
(the root's real path joined with the URL's segments), and a request for one costs a single
`os.stat(path)`:

- the cached file was checked inside the root when it was opened, and only a file reached
  without any symlink (its real path is the path asked) is kept;
- `stat(path)` follows every symlink; the entry is used only when it names the same
  (st_dev, st_ino) as the open file. While the file is held open its inode cannot be reused,
  so a match means the path still reaches that very file; anything else (a file replaced by a
  rename, a symlink swapped in, a deleted file) drops the entry and the request opens the path
  again with every check (`static.resolve_open`): a new file is served fresh, a symlink out of
  the root is refused, a missing file is a 404;
- the stat is the request's: a file written again in place (same inode) gets its new size and
  validators;
- at most `limit` files are held (least recently used out first), and one not asked for during
  `inactive` seconds is closed (`expire`, also from the worker's heartbeat: a segment that HLS
  cleanup deleted stops holding disk space even when no request comes);
- a file being sent when it is evicted is closed when the last response that borrowed it
  gives it back (`OpenFile.release`): a descriptor is never closed, or reused, under a `sendfile`.

Each worker is a process with its own `FILES`; only `hls_serve` uses it (HLS playlists and
segments of `hls_path`).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

LIMIT = 256  # open files a worker keeps
INACTIVE = 20.0  # seconds a file not asked for stays open (nginx's `open_file_cache inactive`)


class OpenFile:
    """One held file: its descriptor, what it is, and who is sending it now."""

    __slots__ = ("fd", "dev", "ino", "content_type", "used", "borrowed", "evicted")

    def __init__(self, fd: int, st: os.stat_result, content_type: str, now: float) -> None:
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.content_type = content_type
        self.used = now  # monotonic time of the last request for it
        self.borrowed = 0  # responses sending it now
        self.evicted = False  # out of the cache: closed when the last borrower gives it back

    def release(self) -> None:
        """A response is done with this file."""
        self.borrowed -= 1
        if self.evicted and self.borrowed == 0:
            os.close(self.fd)


class OpenFiles:
    """Open files by requested path, at most `limit`, closed after `inactive` seconds unused."""

    def __init__(self, limit: int = LIMIT, inactive: float = INACTIVE) -> None:
        self.limit = limit
        self.inactive = inactive
        self.entries: OrderedDict[str, OpenFile] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def borrow(self, path: str) -> tuple[OpenFile, os.stat_result] | None:
        """The open file `path` still names and its stat now, borrowed (give it back with
        `OpenFile.release`); None when none is held or the path names something else now."""
        held = self.entries.get(path)
        now = time.monotonic()
        self.expire(now)
        if held is None:
            self.misses += 1
            return None
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or st.st_ino != held.ino or st.st_dev != held.dev:
            self._evict(path)
            self.misses += 1
            return None
        self.entries.move_to_end(path)
        held.used = now
        held.borrowed += 1
        self.hits += 1
        return held, st

    def keep(self, path: str, fd: int, st: os.stat_result, content_type: str) -> OpenFile:
        """Hold `fd` (just opened and checked: `path` reaches it with no symlink) for later
        requests; it comes back borrowed once, by the request that opened it."""
        self._evict(path)
        held = OpenFile(fd, st, content_type, time.monotonic())
        held.borrowed = 1
        self.entries[path] = held
        while len(self.entries) > self.limit:
            self._evict(next(iter(self.entries)))
        return held

    def close_all(self) -> None:
        for path in list(self.entries):
            self._evict(path)

    def expire(self, now: float | None = None) -> None:
        """Close the files not asked for during `inactive` seconds (at each request, and once a
        second from the worker's heartbeat: a worker that gets no request lets go of them too)."""
        now = time.monotonic() if now is None else now
        while self.entries:
            path, oldest = next(iter(self.entries.items()))
            if now - oldest.used < self.inactive:
                return
            self._evict(path)

    def _evict(self, path: str) -> None:
        held = self.entries.pop(path, None)
        if held is None:
            return
        held.evicted = True
        if held.borrowed == 0:
            os.close(held.fd)


FILES = OpenFiles()  # this worker's (each worker is a process)
