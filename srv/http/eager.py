"""Run a request's coroutine at once, and give it a Task only if it has to wait (Python 3.12's
eager tasks, for the 3.11 srv runs on).

Most requests of HLS players (a segment, a playlist) are answered without ever waiting: the
file is opened and handed to the socket at once. A Task per request (its creation, a
`call_soon` and one more turn of the loop before anything happens) then costs more than the
answer. `start(loop, coro)` runs the coroutine's first step in the caller (the protocol's
`data_received`); if it finishes there, no Task is made. If it suspends (the socket is full, a
file is read in the thread pool, the master is asked), what is left of it continues in a
Task that awaits exactly what the first step was waiting for (`_Rest`): futures, cancellation
and exceptions behave as if the Task had run it from the start.

The first step runs outside any Task, so `asyncio.current_task()` is None there and
`asyncio.timeout()` refuses to work. Code that needs a Task (the hook client, which uses
`asyncio.timeout` and aiohttp) first awaits `in_task()`, which moves what follows into the Task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any


class _Yield:
    """A bare yield: the running coroutine gives the loop one turn (as `asyncio.sleep(0)`)."""

    def __await__(self) -> Generator[None, None, None]:
        yield


async def in_task() -> None:
    """Make sure what follows runs inside a Task (see the module's docstring)."""
    if asyncio.current_task() is None:
        await _Yield()


class _Rest:
    """The rest of a coroutine whose first step already ran and yielded `signal` (a future it
    waits for, or None for a bare yield), as an awaitable a Task can run."""

    def __init__(self, coro: Coroutine[Any, Any, None], signal: Any) -> None:
        self.coro = coro
        self.signal = signal

    def __await__(self) -> Generator[Any, Any, None]:
        coro, signal = self.coro, self.signal
        while True:
            try:
                value = yield signal
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # noqa: BLE001 (the Task's CancelledError and the like: the coroutine decides)
                try:
                    signal = coro.throw(e)
                except StopIteration:
                    return
            else:
                try:
                    signal = coro.send(value)
                except StopIteration:
                    return


async def _finish(rest: _Rest) -> None:
    await rest


def start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `coro` until it first waits: None when it finished, else the Task that goes on."""
    try:
        signal = coro.send(None)
    except StopIteration:
        return None
    return loop.create_task(_finish(_Rest(coro, signal)))
