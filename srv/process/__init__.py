"""The process model's shared vocabulary: what the master and its workers say to each other.

`messages` declares every control message as a frozen dataclass and the `handle_<name>` dispatch
both ends use; `channel` frames them over the socketpair between the master and each worker.
The master's own code lives in `srv/master/`, the worker's in `srv/worker.py`.
"""

from __future__ import annotations

# A worker that exits with this code could not start (it cannot serve its sockets): the master
# does not respawn it, as gunicorn's WORKER_BOOT_ERROR.
WORKER_BOOT_ERROR = 3
