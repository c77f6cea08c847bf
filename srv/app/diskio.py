"""Recording files (HLS, DVR) written off the event loop, in order, never seen half-written.

A worker has one `DiskPool`: a few threads that do every blocking file call, so a slow or full
disk never stalls the loop that serves players. Each recording takes a `DiskLane` from it: the
lane's jobs run one after another in submission order (a segment is complete on disk before
the playlist naming it is replaced), while different lanes run side by side. A lane holds at
most ``max_pending`` jobs; `submit` raises `LaneFull` beyond that, so a disk that cannot keep
up shows as an error the writer reports instead of as memory that grows without bound.

The blocking helpers run inside jobs:
- `write_atomic` writes ``path + TEMP_SUFFIX`` and renames it over ``path``: a reader sees the
  old file or the new one, never a part; a crash leaves only a temp file behind;
- `sweep_temp` removes the temp files a crash left under a folder (run at start);
- `append` adds bytes to a file that grows while it is read (an LL-HLS part under way);
- `remove_quietly` deletes a file that may already be gone;
- `folder_lock` serialises a read-then-write of a folder's files across the host's workers.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import fcntl
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

TEMP_SUFFIX = ".tmp"


class LaneFull(RuntimeError):
    """A lane already holds its ``max_pending`` jobs: the disk is not keeping up."""


class DiskClosed(RuntimeError):
    """The worker's disk threads are stopped (a job came after `DiskPool.close`, e.g. a timer's)."""


class DiskPool:
    """The worker's file threads; `lane` hands out ordered queues over them."""

    def __init__(self, threads: int = 2) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="srv-disk")
        self._lanes: weakref.WeakSet[DiskLane] = weakref.WeakSet()
        self.closed = False

    def lane(self, name: str, max_pending: int = 64) -> DiskLane:
        lane = DiskLane(self, name, max_pending)
        self._lanes.add(lane)
        return lane

    async def drain(self) -> None:
        """Wait for every lane's jobs (a stopping worker lets its recordings finish their files)."""
        for lane in list(self._lanes):
            await lane.drain()

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """`job` in a disk thread, outside any lane (no order kept). Once the pool is closed the
        future fails with `DiskClosed` instead of raising where the job was asked for (a
        recording's delayed deletion can come due while a worker stops)."""
        loop = asyncio.get_running_loop()
        if self.closed:
            refused: asyncio.Future[T] = loop.create_future()
            refused.set_exception(DiskClosed("the disk threads are stopped"))
            return refused
        return loop.run_in_executor(self._executor, job)

    def close(self) -> None:
        self.closed = True
        self._executor.shutdown(wait=True, cancel_futures=False)


class DiskLane:
    """Jobs for one recording, run in the pool's threads one at a time, in order."""

    def __init__(self, pool: DiskPool, name: str, max_pending: int) -> None:
        self.name = name
        self.max_pending = max_pending
        self._pool = pool
        self._queue: collections.deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = collections.deque()
        self._running = False

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished, the running one included."""
        return len(self._queue) + (1 if self._running else 0)

    def submit(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `job`; its result (or exception) arrives in the returned future, on the loop."""
        if self.pending >= self.max_pending:
            raise LaneFull(f"{self.name}: {self.pending} file jobs waiting for the disk")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((job, done))
        if not self._running:
            self._next()
        return done

    async def drain(self) -> None:
        """Wait until every job submitted so far has finished (their errors stay in their futures)."""
        if not self.pending:
            return
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((lambda: None, marker))  # behind every job queued, past the cap
        if not self._running:
            self._next()
        await marker

    def _next(self) -> None:
        if not self._queue:
            self._running = False
            return
        self._running = True
        job, done = self._queue.popleft()
        inner = self._pool.run(job)

        def finished(inner: asyncio.Future[Any]) -> None:
            if not done.cancelled():
                error = inner.exception()
                if error is not None:
                    done.set_exception(error)
                else:
                    done.set_result(inner.result())
            self._next()

        inner.add_done_callback(finished)


def write_atomic(path: str, data: bytes | Iterable[bytes]) -> int:
    """Write `data` to `path` through a temp file and a rename; the bytes written."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temp = path + TEMP_SUFFIX
    written = 0
    try:
        with open(temp, "wb") as f:
            for part in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(part)
                written += len(part)
        os.replace(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise
    return written


def append(path: str, data: bytes) -> int:
    """Append `data` to `path` (created, with its folder, if need be); the bytes written. A
    reader following the file may see an append half done: it forwards bytes, it does not
    parse them."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return len(data)


def remove_quietly(path: str) -> bool:
    """Delete `path`; False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def sweep_temp(root: str, suffix: str = TEMP_SUFFIX) -> list[str]:
    """Remove every ``*suffix`` file under `root` (what a crash left half-written); their paths."""
    removed = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(suffix):
                path = os.path.join(folder, name)
                if remove_quietly(path):
                    removed.append(path)
    return sorted(removed)


@contextlib.contextmanager
def folder_lock(folder: str) -> Iterator[None]:
    """Hold an exclusive `flock` on `folder` (a blocking call, for jobs): workers of this host
    that check a file of the folder and then change it take it, so their steps never interleave.
    Nothing to hold when the folder does not exist (nothing in it to race on)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
