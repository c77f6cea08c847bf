"""Flow control for player connections.

Linux autotunes a socket's send buffer up to `tcp_wmem` max (4 MiB by default), so a player
that stops reading would silently swallow many seconds of stream inside the kernel, and the
server would only notice long after. Player sockets get a fixed send buffer instead, so a
stall shows up as `pause_writing` within about a second of stream, where the source can drop
whole GOPs (and finally disconnect the player) by its own rules (`queue_length`).
"""

from __future__ import annotations

import socket
from typing import Any

PLAYER_SNDBUF = 1 << 20  # bytes; about 4 s of a 2 Mb/s stream
HIGH_WATER = 256 * 1024  # userspace buffer above which the transport pauses the consumer


def tune_player_transport(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PLAYER_SNDBUF // 2)  # kernel doubles it
        except OSError:
            pass
    transport.set_write_buffer_limits(high=HIGH_WATER)
