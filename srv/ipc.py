"""The control channel between the master and each worker.

One `socketpair(AF_UNIX, SOCK_STREAM)` per worker carries framed messages: a 4-byte big-endian
length, then a pickled dict with an "op" key. Both ends are our own processes (forked from the
same master), so pickle is safe here and lets the master send the frozen config dataclasses as
they are. Listening sockets travel alongside as SCM_RIGHTS ancillary data (`send_fds`).

`FrameBuffer` is the sans-I/O framing used by both sides: the master drives it from a selectors
loop, the worker from asyncio.
"""

from __future__ import annotations

import array
import pickle
import socket
import struct
from typing import Any

MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")


def encode(msg: dict[str, Any]) -> bytes:
    body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


class FrameBuffer:
    """Accumulates bytes and yields whole decoded messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_FRAME:
                raise ValueError(f"control frame of {n} bytes is too large")
            if len(self._buf) < 4 + n:
                break
            body = bytes(self._buf[4:4 + n])
            del self._buf[:4 + n]
            out.append(pickle.loads(body))
        return out


def drain(sock: socket.socket, out: bytearray) -> bool:
    """Send what a non-blocking socket takes now; True while bytes remain queued in `out`.
    A broken channel drops them: its process is gone and the master will reap it."""
    try:
        while out:
            n = sock.send(out)
            del out[:n]
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        out.clear()
    return bool(out)


def send_with_fds(sock: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
    """Send one message carrying file descriptors (blocking; only used for rare listener changes)."""
    data = encode(msg)
    sock.setblocking(True)
    try:
        sent = sock.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        if sent:
            sock.sendall(data[1:])
    finally:
        sock.setblocking(False)


def recv_fds_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - (len(data) % a.itemsize)])
            fds.extend(a)
    return fds
