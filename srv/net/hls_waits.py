"""LL-HLS blocking reload, the waiting half: a worker's held playlist requests, per stream.

A request with `_HLS_msn`/`_HLS_part` that the playlist does not answer yet waits on its
stream's `PlaylistWatch`, never on a timer of its own. A watch holds the playlist text as last
read and a future that the next read resolves; every waiter of the stream wakes on it, looks
at the new text (`srv.app.hls_reload.verdict`) and answers or waits again. Other streams' waiters
are not touched. One read of the file per change serves every waiter of the worker.

What makes a watch read the file again (`changed`):

- the owner worker's writer, once a part (or segment) and the playlist naming it are in place,
  calls `PlaylistWaits.publish`: this worker's waiters at once, the other workers through the
  master (`HlsChanged` -> `HlsChange`: one small message per part, sent by the master only to
  the workers that watch the stream, which say so with `HlsWatch` when a watch starts and ends;
  the master answers a new watch with one `HlsChange`, so a change told before it knew of the
  watch is read too);
- the writer's "chunk" events (bytes appended to the part in progress) only wake the requests
  streaming that part (`next_chunk`), not the playlist waiters;
- a notification that is lost (the master busy, a message dropped) costs at most
  `FALLBACK_POLL`: while a watch has waiters and heard nothing for that long, it `stat`s the file
  and reads it if it changed. Each read is counted as woken by a notification or by the poll
  (`hls_ll_notified`, `hls_ll_polled` in the worker's counters), so a lost notification shows.

A watch with no waiter for `IDLE` seconds is dropped (its text would go stale unseen).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable

from srv.app.hls_reload import LiveState, state_of

log = logging.getLogger("srv.hls")

Version = tuple[LiveState, bytes]  # a playlist as read: its state and its text

FALLBACK_POLL = 0.5  # seconds without a notification before a watch with waiters stats its file
IDLE = 10.0  # seconds a watch without waiters is kept


def _read(path: str) -> tuple[bytes, tuple[int, int, int]]:
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        return f.read(), (st.st_ino, st.st_size, st.st_mtime_ns)


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class PlaylistWatch:
    """One stream's playlist file as this worker's held requests see it."""

    def __init__(self, waits: PlaylistWaits, key: str, path: str) -> None:
        self.waits = waits
        self.key = key
        self.path = path
        self.text = b""
        self.state = LiveState()  # of `text`, parsed once per read for every waiter
        self.version: tuple[int, int, int] | None = None
        self.loaded = False
        self.waiters = 0
        self.last_change = time.monotonic()
        self.idle_since = time.monotonic()
        self._next: asyncio.Future[Version] = waits.loop.create_future()
        self._chunk: asyncio.Future[None] = waits.loop.create_future()
        self._reading: asyncio.Task[None] | None = None
        self._again = False

    async def current(self) -> Version:
        """The playlist's state and text; read now when this watch has not read it yet."""
        if not self.loaded:
            await self.refresh("first")
        return self.state, self.text

    def next_version(self) -> asyncio.Future[Version]:
        """A future the next read that finds a new text resolves (shared by every waiter)."""
        return self._next

    def next_chunk(self) -> asyncio.Future[None]:
        """A future the next notification of any kind resolves (parts being streamed wait on it)."""
        return self._chunk

    def chunk(self) -> None:
        fut, self._chunk = self._chunk, self.waits.loop.create_future()
        if not fut.done():
            fut.set_result(None)

    def changed(self, why: str) -> None:
        """Read the file again (in the background; reads in flight are followed by one more)."""
        if self._reading is not None and not self._reading.done():
            self._again = True
            return
        self._reading = self.waits.loop.create_task(self.refresh(why))

    async def refresh(self, why: str) -> None:
        """Read the file now (again if a change was told while it was read)."""
        while True:
            self._again = False
            try:
                text, version = await self.waits.loop.run_in_executor(None, _read, self.path)
            except OSError:
                text, version = b"", None
            self.loaded = True
            self.last_change = time.monotonic()
            if version != self.version or text != self.text:
                self.text, self.version, self.state = text, version, state_of(text)
                self.waits.counters[f"hls_ll_{why}"] += 1
                fut, self._next = self._next, self.waits.loop.create_future()
                if not fut.done():
                    fut.set_result((self.state, text))
            if not self._again:
                return

    def poll(self, now: float) -> None:
        """The fallback: a watch with waiters that heard nothing for FALLBACK_POLL stats its file."""
        if self.waiters and now - self.last_change >= FALLBACK_POLL:
            self.last_change = now
            if _stat_key(self.path) != self.version:
                self.changed("polled")


class PlaylistWaits:
    """The watches of one worker, by stream key; `send` tells the other workers (the master)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, counters: Counter[str],
                 send: Callable[[str, str], None] | None = None,
                 subscribe: Callable[[str, bool], None] | None = None) -> None:
        self.loop = loop
        self.counters = counters
        self.send = send  # (key, kind): to the workers that watch stream `key`
        self.subscribe = subscribe  # (key, on): this worker starts or stops watching `key`
        self.watches: dict[str, PlaylistWatch] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, key: str, path: str) -> PlaylistWatch:
        w = self.watches.get(key)
        if w is None or w.path != path:
            if w is None and self.subscribe is not None:
                self.subscribe(key, True)
            w = self.watches[key] = PlaylistWatch(self, key, path)
            self._arm()
        return w

    def publish(self, key: str, kind: str) -> None:
        """The owner's writer: stream `key` changed (`kind`: "chunk" appended to the part in
        progress; "part", "segment", "ended": the playlist saying so is in place)."""
        self.notified(key, kind)
        if self.send is not None:
            self.send(key, kind)

    def notified(self, key: str, kind: str) -> None:
        """A notification (local or from another worker) for stream `key`."""
        w = self.watches.get(key)
        if w is not None:
            w.chunk()
            if kind != "chunk":
                w.changed("notified")

    async def hold(self, w: PlaylistWatch, done: Callable[[LiveState], bool], timeout: float) -> Version | None:
        """Wait, at most `timeout` seconds, for a version of `w` whose state `done` likes; that
        version, or None on timeout. The caller checked the current one already."""
        deadline = self.loop.time() + timeout
        w.waiters += 1
        self.counters["hls_ll_held"] += 1
        try:
            while True:
                left = deadline - self.loop.time()
                if left <= 0:
                    return None
                try:
                    got = await asyncio.wait_for(asyncio.shield(w.next_version()), left)
                except TimeoutError:
                    return None
                if done(got[0]):
                    return got
        finally:
            w.waiters -= 1
            if not w.waiters:
                w.idle_since = time.monotonic()

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(FALLBACK_POLL / 2, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = time.monotonic()
        for key, w in list(self.watches.items()):
            if not w.waiters and now - w.idle_since > IDLE:
                del self.watches[key]
                if self.subscribe is not None:
                    self.subscribe(key, False)
                continue
            w.poll(now)
        if self.watches:
            self._arm()
