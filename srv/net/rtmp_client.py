"""An outgoing RTMP connection: binds srv.rtmp.ClientSession to an asyncio transport.

Used by pulls between workers and by forwarders to other servers. The owner gets every session
event through `on_event` and `on_lost(reason)` once when the connection ends for any reason.
`paused` mirrors the transport's flow control; `on_pause`/`on_drain` tell the owner (a forwarder
pauses and resumes its consumer with them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from srv.rtmp.client import ClientSession
from srv.rtmp.errors import ProtocolError
from srv.rtmp.events import Event


class RtmpClientProtocol(asyncio.Protocol):
    def __init__(self, session: ClientSession, on_event: Callable[[Event], None],
                 on_lost: Callable[[str], None], on_drain: Callable[[], None] | None = None,
                 on_pause: Callable[[], None] | None = None) -> None:
        self.session = session
        self.on_event = on_event
        self.on_lost = on_lost
        self.on_drain = on_drain
        self.on_pause = on_pause
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closed = False
        self.error = ""
        self.bytes_sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.session.start()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.session.receive_data(data)
        except ProtocolError as err:
            self.close(f"protocol error from server: {err}")
            return
        try:
            for event in events:
                if self.closed:
                    return
                self.on_event(event)
        except Exception as err:  # a bug must cost this one connection, never the worker
            logging.getLogger("srv.net").exception("internal error on an outgoing RTMP connection")
            self.close(f"internal error: {err!r}")
            return
        self.flush()

    def flush(self) -> None:
        out = self.session.data_to_send()
        if out and not self.closed and self.transport is not None:
            self.bytes_sent += len(out)
            self.transport.write(out)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.bytes_sent += len(data)
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        if not self.closed and self.transport is not None:
            self.bytes_sent += sum(map(len, parts))
            self.transport.writelines(parts)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.error = reason
            self.closed = True
            if self.transport is not None:
                self.transport.abort()

    def pause_writing(self) -> None:
        self.paused = True
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        self.paused = False
        if self.on_drain is not None:
            self.on_drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.on_lost(self.error or (f"connection lost: {exc}" if exc else "server closed the connection"))
