"""Requests answered at once, without a Task (`srv.http.eager`): a coroutine that never waits
finishes inside the caller; one that waits goes on in a Task exactly as if the Task had run it
from the start (results, exceptions, cancellation); code that needs a Task gets one. And the
HTTP connection answers a player's segment and playlist requests inside `data_received`: the
response is written before it returns, a full socket hands the rest to a Task, and the bytes
are the same whichever way they went."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from srv.app.hls_viewers import HlsViewers
from srv.conf import load
from srv.http import eager
from srv.http.server import HttpConnection

# ---- eager.start ---------------------------------------------------------------------------------


async def in_callback(fn: Callable[[], Any]) -> Any:
    """`fn()` run by the loop as a plain callback, as it runs `data_received` (no current Task)."""
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(lambda: fut.set_result(fn()))
    return await fut


def test_a_coroutine_that_never_waits_finishes_in_the_caller_without_a_task() -> None:
    async def main() -> None:
        done: list[bool] = []

        async def answer() -> None:
            done.append(asyncio.current_task() is None)

        before = asyncio.all_tasks()
        assert await in_callback(lambda: eager.start(asyncio.get_running_loop(), answer())) is None
        assert done == [True] and asyncio.all_tasks() == before

    asyncio.run(main())


def test_a_coroutine_that_waits_goes_on_in_a_task_with_what_it_waited_for() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        steps: list[Any] = []

        async def answer() -> None:
            steps.append(("first", asyncio.current_task() is None))
            steps.append(("got", await fut))
            await asyncio.sleep(0)  # a bare yield passes through too
            steps.append(("in task", asyncio.current_task() is not None))

        task = await in_callback(lambda: eager.start(loop, answer()))
        assert task is not None and steps == [("first", True)]
        loop.call_later(0.01, fut.set_result, 7)
        await task
        assert steps == [("first", True), ("got", 7), ("in task", True)]

    asyncio.run(main())


def test_an_exception_and_a_cancellation_reach_the_coroutine_as_in_a_task() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[str] = []

        async def fails(fut: asyncio.Future[None]) -> None:
            try:
                await fut
            except ValueError as e:
                seen.append(f"caught {e}")

        fut: asyncio.Future[None] = loop.create_future()
        task = await in_callback(lambda: eager.start(loop, fails(fut)))
        assert task is not None
        fut.set_exception(ValueError("boom"))
        await task
        assert seen == ["caught boom"]

        async def waits() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        task = await in_callback(lambda: eager.start(loop, waits()))
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen[-1] == "cancelled" and task.cancelled()

    asyncio.run(main())


def test_in_task_moves_what_follows_into_a_task_that_asyncio_timeout_accepts() -> None:
    async def main() -> None:
        got: list[Any] = []

        async def hooked() -> None:
            await eager.in_task()
            async with asyncio.timeout(1):  # refuses to work outside a Task
                got.append(asyncio.current_task() is not None)

        task = await in_callback(lambda: eager.start(asyncio.get_running_loop(), hooked()))
        assert task is not None and got == []
        await task
        assert got == [True]

    asyncio.run(main())


# ---- the HTTP connection, in process -------------------------------------------------------------


class Transport(asyncio.Transport):
    """The connection's transport over one end of a real socket pair (for `os.sendfile`): what
    the socket does not take at once is kept and sent when it drains, as uvloop does."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.sock, self.loop = sock, loop
        self.buffer = bytearray()
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "socket": self.sock}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.buffer:
            try:
                data = bytes(data)[self.sock.send(data):]
            except BlockingIOError:
                pass
            if data:
                self.loop.add_writer(self.sock, self._flush)
        self.buffer += data

    def _flush(self) -> None:
        try:
            del self.buffer[:self.sock.send(self.buffer)]
        except BlockingIOError:
            return
        if not self.buffer:
            self.loop.remove_writer(self.sock)

    def writelines(self, pieces: Any) -> None:
        self.write(b"".join(pieces))

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.sock.close()


def connection(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> tuple[HttpConnection, socket.socket]:
    hls = tmp_path / "hls"
    (hls / "live").mkdir(parents=True)
    conf = tmp_path / "srv.conf"
    conf.write_text(f"listen 1935;\nhttp_server {{ enabled on; listen 8080; dir {tmp_path}; }}\n"
                    f"vhost __defaultVhost__ {{ hls {{ enabled on; hls_path {hls}; hls_ctx off; }} }}\n")
    ctx = SimpleNamespace(config=load(str(conf), {}), loop=loop, hls=HlsViewers(b"k" * 32, 1),
                          counters={"hls_requests": 0})
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = HttpConnection(ctx, frozenset({"server"}))  # type: ignore[arg-type]
    conn.connection_made(Transport(ours, loop))
    return conn, theirs


def drain(sock: socket.socket) -> bytes:
    """What is in `sock`'s receive buffer now."""
    sock.setblocking(False)
    out = b""
    try:
        while chunk := sock.recv(1 << 20):
            out += chunk
    except BlockingIOError:
        pass
    return out


GET = b"GET /live/s-1.ts HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_segment_and_a_playlist_are_answered_before_data_received_returns(tmp_path: Path) -> None:
    async def main() -> None:
        conn, client = connection(tmp_path, asyncio.get_running_loop())
        seg = os.urandom(100_000)
        (tmp_path / "hls/live/s-1.ts").write_bytes(seg)
        (tmp_path / "hls/live/s.m3u8").write_bytes(b"#EXTM3U\n")
        before = asyncio.all_tasks()
        await in_callback(lambda: conn.data_received(GET))
        assert asyncio.all_tasks() == before and not conn.busy  # answered, no Task
        head = b"HTTP/1.1 200 OK\r\n"
        got = drain(client)  # all of it is there already
        assert got.startswith(head) and got.endswith(seg)
        assert b"\r\nContent-Length: 100000\r\n" in got and b"\r\nContent-Type: video/mp2t\r\n" in got
        await in_callback(lambda: conn.data_received(b"HEAD /live/s.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert asyncio.all_tasks() == before and not conn.busy
        answer = drain(client)
        assert answer.startswith(head) and answer.endswith(b"\r\n\r\n") and b"Content-Length: 8\r\n" in answer
        assert conn.ctx.counters["hls_requests"] == 2
        client.close()

    asyncio.run(main())


def test_a_segment_bigger_than_the_socket_buffer_goes_on_in_a_task_and_arrives_whole(tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        conn, client = connection(tmp_path, loop)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        seg = os.urandom(8 * 1024 * 1024)
        (tmp_path / "hls/live/s-1.ts").write_bytes(seg)
        await in_callback(lambda: conn.data_received(GET))
        assert conn.busy and conn.task is not None and not conn.task.done()  # the socket is full
        await in_callback(lambda: conn.data_received(GET))  # pipelined during the first: answered after it
        got = bytearray()
        deadline = loop.time() + 60
        while len(got) < 2 * len(seg) or got[-len(seg):] != seg:  # two heads, two files
            got += drain(client)
            await asyncio.sleep(0.001)
            assert loop.time() < deadline, len(got)
        first, _, rest = bytes(got).partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200 OK") and rest.startswith(seg)
        second = rest[len(seg):]
        assert second.startswith(b"HTTP/1.1 200 OK") and second.endswith(seg)
        await asyncio.sleep(0.01)
        assert not conn.busy and conn.ctx.counters["hls_requests"] == 2
        client.close()

    asyncio.run(main())
