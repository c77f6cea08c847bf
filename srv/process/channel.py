"""The control channel between the master and each worker: framing and transport.

One `socketpair(AF_UNIX, SOCK_STREAM)` per worker carries frames: a 4-byte big-endian length,
then one pickled `srv.process.messages.Message`. Both ends are our own processes (forked from
the same master), so pickle is safe here and lets the master send the frozen config dataclasses
as they are. Listening sockets travel alongside as SCM_RIGHTS ancillary data (`send_with_fds`).

A bad frame never takes an end down: `FrameBuffer` reports it as a `BadMessage` in its output
and keeps the stream in step (an oversized frame's body is skipped as it arrives, an
undecodable one is dropped whole), so the owner logs it and goes on with the next frame. The
sender refuses to encode a frame over `MAX_FRAME` (`FrameTooLarge`).

`Channel` is the sans-selector transport both ends drive: the master from its selectors loop,
the worker from asyncio (add_reader / add_writer on `fileno()`).
"""

from __future__ import annotations

import array
import pickle
import socket
import struct

from srv.process.messages import BadMessage, Message

MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")
_MAX_FDS = 64


class FrameTooLarge(ValueError):
    """A message that would not fit in one frame; it is not sent."""


def encode(msg: Message, max_frame: int = MAX_FRAME) -> bytes:
    body = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > max_frame:
        raise FrameTooLarge(f"{msg.name} of {len(body)} bytes exceeds the {max_frame}-byte frame limit")
    return _LEN.pack(len(body)) + body


class FrameBuffer:
    """Accumulates bytes and yields whole decoded frames: a message, or a BadMessage saying why
    a frame was dropped. The stream stays in step after a bad frame."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized frame's body still to discard

    def feed(self, data: bytes) -> list[object]:
        out: list[object] = []
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        self._buf += data
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > self.max_frame:
                out.append(BadMessage(f"frame of {n} bytes exceeds the {self.max_frame}-byte limit"))
                skip = min(n, len(self._buf) - 4)
                del self._buf[:4 + skip]
                self._skip = n - skip
                continue
            if len(self._buf) < 4 + n:
                break
            body = bytes(self._buf[4:4 + n])
            del self._buf[:4 + n]
            try:
                out.append(pickle.loads(body))
            except Exception as e:  # noqa: BLE001 - any undecodable body is one bad frame
                out.append(BadMessage(f"undecodable frame of {n} bytes ({type(e).__name__}: {e})"))
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


def recv_fds_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - (len(data) % a.itemsize)])
            fds.extend(a)
    return fds


class Channel:
    """One end of a control channel: queued sends, framed receives, fds alongside."""

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.buf = FrameBuffer(max_frame)
        self.out = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: Message) -> bool:
        """Queue `msg` and send what the socket takes now; True while bytes remain queued.
        Raises FrameTooLarge (nothing queued) for a message over the frame limit."""
        self.out += encode(msg, self.buf.max_frame)
        return self.flush()

    def flush(self) -> bool:
        return drain(self.sock, self.out)

    def send_with_fds(self, msg: Message, fds: list[int]) -> None:
        """Send one message carrying file descriptors (blocking; only for rare listener changes)."""
        data = encode(msg, self.buf.max_frame)
        self.sock.setblocking(True)
        try:
            self.flush()
            self.sock.sendall(self.out)
            self.out.clear()
            sent = self.sock.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            if sent:
                self.sock.sendall(data[1:])
        finally:
            self.sock.setblocking(False)

    def receive(self) -> tuple[list[object], list[int]] | None:
        """What arrived: (messages or BadMessage, received fds); None once the peer is gone."""
        try:
            data, ancdata, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(_MAX_FDS * 4))
        except (BlockingIOError, InterruptedError):
            return [], []
        except OSError:
            return None
        if not data:
            return None
        return self.buf.feed(data), recv_fds_from_ancdata(ancdata)

    def close(self) -> None:
        self.sock.close()
