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


def tune_player_transport(transport: Any, nodelay: bool) -> None:
    """A player's TCP socket: the fixed send buffer, and SRS's vhost `tcp_nodelay` (default off).

    asyncio and uvloop set TCP_NODELAY on every TCP socket they make; `tcp_nodelay off` (SRS's
    and nginx-rtmp's behaviour) clears it, so the kernel holds a small send while an earlier one
    is unacknowledged and sends it with the next (Nagle): fewer, larger segments for players fed
    in small writes (`min_latency on`), at the cost of up to an ACK's delay on such a write.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PLAYER_SNDBUF // 2)  # kernel doubles it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        except OSError:
            pass
    transport.set_write_buffer_limits(high=HIGH_WATER)


#: SRS_MR_SMALL_BYTES: a publisher's read shorter than this pauses its reads for `mr_latency`;
#: a longer one (the bytes that gathered meanwhile) is followed by the next read at once.
MR_SMALL_BYTES = 4096
#: The bitrate a merged-read publisher's receive buffer is sized for (SRS: `mr_latency` x 5000 kb/s):
#: what arrives during one pause fits, so the encoder is not held back meanwhile.
MR_BUFFER_KBPS = 5000


class MergedRead:
    """SRS's merged read (``publish { mr on; mr_latency; }``) for one publisher's transport.

    An encoder writes each message as it is made, so without it a worker reads a 2 Mb/s stream in
    ~60 reads a second, each an epoll wake-up, a syscall and a Python callback for a few hundred
    bytes. After a small read the transport stops reading for `mr_latency`; meanwhile the kernel
    gathers the stream in the socket's receive buffer (autotuned: a sender is only slowed, never
    lost, if a pause ever outgrows it) and the next read takes all of it. Media reach the source
    and its players up to `mr_latency` later.
    """

    __slots__ = ("loop", "timer", "transport")

    def __init__(self, transport: Any, loop: Any) -> None:
        self.transport = transport
        self.loop = loop
        self.timer: Any = None  # the pending resume, while paused

    def size_buffer(self, latency_ms: int) -> None:
        """Make the receive buffer hold `latency_ms` of a MR_BUFFER_KBPS stream (SRS's sizing)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:  # the kernel doubles it
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, latency_ms * MR_BUFFER_KBPS // 8 // 2)
            except OSError:
                pass

    def after_read(self, nbytes: int, latency_ms: int) -> None:
        """A read of `nbytes` was handled: pause reading for `latency_ms` if it was a small one."""
        if nbytes < MR_SMALL_BYTES and self.timer is None and latency_ms > 0:
            self.transport.pause_reading()
            self.timer = self.loop.call_later(latency_ms / 1000, self._resume)

    def _resume(self) -> None:
        self.timer = None
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def cancel(self) -> None:
        """Stop merging (the connection closes or stops publishing): read at once again."""
        if self.timer is not None:
            self.timer.cancel()
            self._resume()
