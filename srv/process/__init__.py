"""The process model's shared vocabulary: what the master and its workers say to each other.

`messages` declares every control message as a frozen dataclass and the `handle_<name>` dispatch
both ends use; `channel` frames them over the socketpair between the master and each worker.
The master's own code lives in `srv/master/`, the worker's in `srv/worker.py`.
"""

from __future__ import annotations

import enum
import signal

# A worker that exits with this code could not start (it cannot serve its sockets): the master
# does not respawn it, as gunicorn's WORKER_BOOT_ERROR.
WORKER_BOOT_ERROR = 3


class Stop(enum.Enum):
    """How the master or a worker is stopping (None while it serves); the value is what the
    master's snapshot shows (`/ready` answers "stopping (graceful)")."""

    GRACEFUL = "graceful"
    FAST = "fast"


def signal_handler_name(sig: int) -> str:
    """The method a signal dispatches to on either end: `handle_hup` for SIGHUP (gunicorn's
    `handle_<sig>`); the master's and the worker's SIGNALS tables name every signal they act on."""
    return f"handle_{signal.Signals(sig).name[3:].lower()}"
