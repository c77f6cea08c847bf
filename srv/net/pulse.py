"""Liveness from inside a long turn of a worker's event loop: a slow loop is not a stuck one.

The worker heart-beats the master from a timer (`srv/worker.py`), and timers run between turns
of the loop. On a starved core one turn (thousands of ready sockets, each read, accept or resume
a callback) can outlast the master's `worker_timeout` although every callback in it returns: the
master then killed a worker that was serving, slowly, and dropped every client of it (a
5000-player connect storm on a core shared with other work, docs/performance.md).

The callbacks such a turn is made of call `beat()`. It costs one clock read; at most once per
`INTERVAL` it runs the bound `send` (the worker sends a Heartbeat) from inside the turn. A loop
stuck in one call runs no callback and sends nothing: the master still kills it at
`worker_timeout`. The timer's own heartbeat calls `timer_beat()`, which pushes the next beat from
inside a turn `INTERVAL` ahead, so while the loop turns normally `beat()` never sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: seconds between two heartbeats sent from inside one turn of the loop (the timer's own are
#: every second; the master's worker_timeout is 30 s by default)
INTERVAL = 2.0

_send: Callable[[], None] | None = None
_due = 0.0
#: heartbeats sent from inside a turn since the last timer heartbeat (the held-loop log line says it)
inside = 0


def bind(send: Callable[[], None] | None) -> None:
    """The worker's heartbeat sender (None: beats do nothing, as outside a worker)."""
    global _send, _due, inside
    _send = send
    _due = time.monotonic() + INTERVAL
    inside = 0


def beat() -> None:
    """A callback of the loop ran: send a heartbeat if none went for INTERVAL (hot path)."""
    global _due, inside
    if _send is not None:
        now = time.monotonic()
        if now >= _due:
            _due = now + INTERVAL
            inside += 1
            _send()


def timer_beat() -> int:
    """The timer's heartbeat went: the next beat from inside a turn is due INTERVAL from now.
    Returns how many heartbeats went from inside turns since the previous timer heartbeat."""
    global _due, inside
    _due = time.monotonic() + INTERVAL
    n, inside = inside, 0
    return n
