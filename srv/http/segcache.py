"""A worker's cache of the newest HLS segment files, so N viewers of a new segment cost one read.

Every viewer of a live stream fetches the same few files within a couple of seconds: without a
cache each fetch reads the file again (in the thread pool, in chunks). `SegmentCache.get` keeps
a file's bytes keyed by what `os.stat` says of it (path, inode, size, `mtime_ns`):
- every request stats the file on the loop (or gives the stat it took resolving the path): a file
  that is gone (`hls_dispose`, cleanup, a republish) is None, so the request is a 404, and a
  file replaced under the same name (new inode, size or mtime) is read again;
- concurrent requests for a file not yet cached share one read (in the default thread pool)
  and get the same `bytes` object, which each connection writes in one `transport.write`;
- the entries are bounded by bytes (`limit`, least recently used out first); a file larger
  than the limit, or one that changed while it was read, is served but not kept.

Only HLS media and init segments come here (`hls_serve`); playlists change under their name
and are read each time.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict

LIMIT = 64 * 1024 * 1024  # bytes of segments a worker keeps

Key = tuple[str, int, int, int]  # path, inode, size, mtime_ns
Entry = tuple[os.stat_result, bytes]


def read_whole(path: str) -> Entry:
    """The file's stat (of the open file) and its bytes; runs in a thread."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        return st, f.read()


def key_of(path: str, st: os.stat_result) -> Key:
    return path, st.st_ino, st.st_size, st.st_mtime_ns


class SegmentCache:
    """Recent immutable files by (path, inode, size, mtime_ns), at most `limit` bytes."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.size = 0  # bytes held
        self.entries: OrderedDict[str, tuple[Key, Entry]] = OrderedDict()
        self.reading: dict[Key, asyncio.Future[Entry]] = {}

    async def get(self, path: str, loop: asyncio.AbstractEventLoop, st: os.stat_result | None = None) -> Entry | None:
        """The file's stat and bytes, None if it is not there (or not readable). `st`: the
        file's stat, when the caller has just taken it."""
        if st is None:
            try:
                st = os.stat(path)
            except OSError:
                self._drop(path)
                return None
        key = key_of(path, st)
        held = self.entries.get(path)
        if held is not None:
            if held[0] == key:
                self.entries.move_to_end(path)
                return held[1]
            self._drop(path)
        pending = self.reading.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except OSError:
                return None
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request itself was cancelled
                return await self.get(path, loop)  # the reading request left: read it here
        fut: asyncio.Future[Entry] = loop.create_future()
        self.reading[key] = fut
        try:
            entry = await loop.run_in_executor(None, read_whole, path)
        except OSError as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            return None
        else:
            fut.set_result(entry)
        finally:
            del self.reading[key]
            if not fut.done():
                fut.cancel()  # this request was cancelled: the others read it themselves
        st2, data = entry
        if key_of(path, st2) == key and len(data) == st2.st_size and len(data) <= self.limit:
            self._drop(path)
            self.entries[path] = (key, entry)
            self.size += len(data)
            while self.size > self.limit:
                _, (_, (_, old)) = self.entries.popitem(last=False)
                self.size -= len(old)
        return entry

    def _drop(self, path: str) -> None:
        held = self.entries.pop(path, None)
        if held is not None:
            self.size -= len(held[1][1])


SEGMENTS = SegmentCache()  # this worker's (each worker is a process)
