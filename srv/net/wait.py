"""A player's bounded wait for a publisher: `play { wait_timeout }`.

A player may arrive before its stream is published, and stays across a republish (SRS). Bounded,
so requests for a stream that never appears cannot hold `max_connections` slots forever: when the
stream has had no publisher for `wait_timeout` ms (counted from the play, or from the last
unpublish), the player is closed. The timer exists only while nobody publishes: it costs nothing
while media flows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class PublisherWait:
    __slots__ = ("loop", "timeout_ms", "expire", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_ms: int,
                 expire: Callable[[str], None]) -> None:
        self.loop = loop
        self.timeout_ms = timeout_ms
        self.expire = expire
        self.handle: asyncio.TimerHandle | None = None

    def waiting(self) -> None:
        """The stream has no publisher (yet, or any more): start counting."""
        if self.timeout_ms and self.handle is None:
            self.handle = self.loop.call_later(self.timeout_ms / 1000, self._expired)

    def fed(self) -> None:
        """A publisher is here (or the player left): stop counting."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _expired(self) -> None:
        self.handle = None
        self.expire(f"no publisher for {self.timeout_ms / 1000:g}s (wait_timeout)")
