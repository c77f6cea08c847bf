"""A scriptable RTMP client for tests: srv.rtmp.ClientSession over a real TCP connection.

ffmpeg and rtmpdump hang up on NetStream.Play.UnpublishNotify, so behaviours such as "a
player keeps waiting across publishers" or "a player that never reads" need a client the
test controls. This one is deliberately plain: asyncio streams, an event queue.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from srv.rtmp import events as ev
from srv.rtmp.client import ClientSession
from srv.rtmp.messages import Message


class RtmpTestClient:
    def __init__(self, port: int, app: str = "live", host: str = "127.0.0.1",
                 tc_url: str | None = None, read: bool = True, rcvbuf: int = 0,
                 source: str = "", prefix: bytes = b"", tls: ssl.SSLContext | None = None) -> None:
        self.rcvbuf = rcvbuf  # a small receive buffer makes a stalled reader push back sooner
        self.source = source  # the local address to connect from (127.0.0.2, ...): per-IP tests
        self.prefix = prefix  # bytes sent before the handshake (a PROXY header), before TLS too
        self.tls = tls  # RTMPS: TLS over the socket once the prefix is out
        self.port = port
        self.host = host
        self.app = app
        netloc = f"[{host}]" if ":" in host else host
        self.session = ClientSession(app=app, tc_url=tc_url or f"rtmp://{netloc}:{port}/{app}")
        self.events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self.read = read
        self.closed = asyncio.Event()
        self.media_bytes = 0
        self.media: list[Message] = []
        self.keep_media = True

    async def open(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        if self.source:
            sock.bind((self.source, 0))
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (self.host, self.port))
        if self.tls is not None:
            await loop.sock_sendall(sock, self.prefix)
            self.reader, self.writer = await asyncio.open_connection(sock=sock, ssl=self.tls,
                                                                     server_hostname="localhost")
        else:
            self.reader, self.writer = await asyncio.open_connection(sock=sock)
            if self.prefix:
                self.writer.write(self.prefix)
        self.session.start()
        self._flush()
        self.task = asyncio.ensure_future(self._pump())
        await self.expect(ev.Connected)

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)

    async def _pump(self) -> None:
        try:
            while True:
                if not self.read:
                    await asyncio.sleep(3600)
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                for e in self.session.receive_data(data):
                    if isinstance(e, (ev.MediaMessage, ev.MetadataMessage)):
                        self.media_bytes += len(e.message.payload)
                        if self.keep_media:
                            self.media.append(e.message)
                    await self.events.put(e)
                self._flush()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    async def expect(self, kind: type, code: str | None = None, timeout: float = 10) -> Any:
        """Wait for the next event of `kind` (and status `code`), skipping others."""
        async def find() -> Any:
            while True:
                e = await self.events.get()
                if isinstance(e, kind) and (code is None or getattr(e, "code", None) == code):
                    return e
        return await asyncio.wait_for(find(), timeout)

    async def request_play(self, name: str) -> ev.StatusEvent:
        """createStream and play `name`; the first onStatus the server answers (an error when refused)."""
        self.session.create_stream()
        self._flush()
        await self.expect(ev.StreamCreated)
        self.session.play(name)
        self._flush()
        status: ev.StatusEvent = await self.expect(ev.StatusEvent)
        return status

    async def play(self, name: str) -> None:
        if (await self.request_play(name)).code != "NetStream.Play.Start":
            await self.expect(ev.StatusEvent, "NetStream.Play.Start")

    async def publish(self, name: str) -> ev.StatusEvent:
        self.session.create_stream()
        self._flush()
        await self.expect(ev.StreamCreated)
        self.session.publish(name)
        self._flush()
        result: ev.StatusEvent = await self.expect(ev.StatusEvent)
        return result

    def send(self, msg: Message) -> None:
        self.session.send_media(msg)
        self._flush()

    async def drain(self) -> None:
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        self.task.cancel()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
