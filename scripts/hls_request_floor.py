"""The floor for scripts/hls-request-cost: the least a Python + uvloop server can do per request.

A bare `asyncio.Protocol` on uvloop that answers each keep-alive GET of a file under ROOT the way
srv does on plain HTTP (`stat`, open, one head, `os.sendfile` for a segment or one write of head
and bytes for a playlist, close), with no parsing, routing, checks or headers beyond the length.
Not a server: what srv's own layers add per request is srv's figure minus this one.
Usage: hls_request_floor.py PORT ROOT
"""

from __future__ import annotations

import asyncio
import os
import select
import sys

import uvloop

SMALL = 16 * 1024
HEAD = b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: video/mp2t\r\nContent-Length: %d\r\n\r\n"


class Floor(asyncio.Protocol):
    def __init__(self, root: str) -> None:
        self.root = root
        self.transport: asyncio.Transport | None = None
        self.sock = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket").fileno()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        path = self.root + data[4:data.index(b" ", 4)].decode()
        size = os.stat(path).st_size
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if size <= SMALL:
                self.transport.write(HEAD % size + os.pread(fd, size, 0))
                return
            self.transport.write(HEAD % size)
            sent = 0
            while sent < size:
                try:
                    sent += os.sendfile(self.sock, fd, sent, size - sent)
                except BlockingIOError:
                    select.select([], [self.sock], [])  # a floor, not a server: it may block
        finally:
            os.close(fd)


async def main(port: int, root: str) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: Floor(root), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
