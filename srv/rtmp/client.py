"""The client side of an RTMP connection, as a sans-I/O state machine.

Used for pulls between workers, forwarders to other servers, and test/load
clients. Flow::

    session = ClientSession(app="live", tc_url="rtmp://host/live")
    session.start()                  # queues C0C1
    ... write data_to_send(), feed receive_data() ...
    # after the handshake, Set Chunk Size and ``connect`` are sent automatically
    Connected(info) -> create_stream() -> StreamCreated(1) -> publish("s") or play("s")
    StatusEvent(code="NetStream.Publish.Start") -> send_message(...) media

States: ``HANDSHAKE -> CONNECTING -> CONNECTED`` (or ``FAILED`` after
``_error`` to connect). Methods that need a connection or a stream raise
``RuntimeError`` when called too early: that is a bug in the caller, not in
the peer.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from .chunk import media_csid
from .connection import Command, RtmpConnection, decode_command
from .events import (
    CommandFailed,
    Connected,
    ConnectFailed,
    Event,
    StatusEvent,
    StreamCreated,
)
from .handshake import ClientHandshake
from .messages import Message, MessageType

#: What ffmpeg sends when publishing; SRS and nginx-rtmp treat FMLE-style clients well.
DEFAULT_FLASH_VER: Final = "FMLE/3.0 (compatible; FMSc/1.0)"


class ClientState(enum.Enum):
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


def _info(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class ClientSession(RtmpConnection):
    """One outgoing RTMP connection (publish or play)."""

    def __init__(
        self,
        app: str,
        tc_url: str,
        out_chunk_size: int = 60000,
        max_message_size: int = 16 * 2**20,
        flash_ver: str = DEFAULT_FLASH_VER,
        connect_extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(out_chunk_size, max_message_size)
        self.app = app
        self.tc_url = tc_url
        self.flash_ver = flash_ver
        self.connect_extra = dict(connect_extra or {})
        self.state = ClientState.HANDSHAKE
        self._handshake = ClientHandshake()
        self._next_tid = 1
        self._pending: dict[float, str] = {}
        #: Stream id of the last StreamCreated, used by publish()/play() by default.
        self.stream_id: int | None = None

    @property
    def handshake(self) -> ClientHandshake:
        return self._handshake

    def start(self) -> None:
        """Queue C0C1 (a complex C1, as ffmpeg and librtmp send)."""
        self._handshake.start()
        self._out.append(self._handshake.data_to_send())

    def receive_data(self, data: bytes) -> list[Event]:
        """Consume bytes from the server; return the events they complete."""
        if self.state is ClientState.HANDSHAKE:
            self.bytes_received += len(data)
            self._handshake.receive_data(data)
            self._out.append(self._handshake.data_to_send())
            if not self._handshake.done:
                return []
            self.state = ClientState.CONNECTING
            self._send_connect()
            data = self._handshake.leftover
            self.bytes_received -= len(data)
            if not data:
                return []
        events: list[Event] = []
        for msg in self._receive_chunks(data):
            if self._handle_control(msg):
                continue
            if msg.type_id == MessageType.COMMAND_AMF0 or msg.type_id == MessageType.COMMAND_AMF3:
                self._command(decode_command(msg), events)
            else:
                self._media_events(msg, events)
        return events

    def _next_transaction(self, command: str) -> float:
        tid = float(self._next_tid)
        self._next_tid += 1
        self._pending[tid] = command
        return tid

    def _send_connect(self) -> None:
        if self._wanted_out_chunk_size != self._out_chunk_size:
            self.set_chunk_size(self._wanted_out_chunk_size)
        obj: dict[str, Any] = {
            "app": self.app,
            "type": "nonprivate",
            "flashVer": self.flash_ver,
            "tcUrl": self.tc_url,
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 4071.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
            "objectEncoding": 0.0,
            **self.connect_extra,
        }
        self._send_command("connect", self._next_transaction("connect"), obj)

    def _command(self, cmd: Command, events: list[Event]) -> None:
        name = cmd.name
        if name in ("_result", "_error"):
            command = self._pending.pop(cmd.transaction_id, "")
            info = _info(cmd.args[0] if cmd.args else None)
            if command == "connect":
                if name == "_result":
                    self.state = ClientState.CONNECTED
                    events.append(Connected(info))
                else:
                    self.state = ClientState.FAILED
                    events.append(
                        ConnectFailed(str(info.get("code", "")), str(info.get("description", "")))
                    )
            elif name == "_error":
                events.append(CommandFailed(command, cmd.transaction_id, info))
            elif command == "createStream":
                sid = cmd.args[0] if cmd.args else None
                if isinstance(sid, float) and 0 <= sid < 2**32:
                    self.stream_id = int(sid)
                    events.append(StreamCreated(self.stream_id))
                else:
                    events.append(CommandFailed(command, cmd.transaction_id, {"result": sid}))
        elif name == "onStatus":
            info = _info(cmd.args[0] if cmd.args else cmd.command_object)
            events.append(
                StatusEvent(
                    cmd.stream_id,
                    str(info.get("level", "")),
                    str(info.get("code", "")),
                    str(info.get("description", "")),
                    info,
                )
            )
        # onBWDone, onFCPublish, _onbwcheck, close...: nothing to do for a client

    # --- requests ----------------------------------------------------------

    def _require_connected(self, what: str) -> None:
        if self.state is not ClientState.CONNECTED:
            raise RuntimeError(f"{what} before the connection is established")

    def _stream(self, stream_id: int | None, what: str) -> int:
        self._require_connected(what)
        sid = self.stream_id if stream_id is None else stream_id
        if sid is None:
            raise RuntimeError(f"{what} before createStream succeeded")
        return sid

    def create_stream(self) -> float:
        """Send ``createStream``; a :class:`StreamCreated` follows. Returns the transaction id."""
        self._require_connected("createStream")
        tid = self._next_transaction("createStream")
        self._send_command("createStream", tid, None)
        return tid

    def release_stream(self, stream_name: str) -> None:
        self._require_connected("releaseStream")
        self._send_command(
            "releaseStream", self._next_transaction("releaseStream"), None, stream_name
        )

    def fc_publish(self, stream_name: str) -> None:
        self._require_connected("FCPublish")
        self._send_command("FCPublish", self._next_transaction("FCPublish"), None, stream_name)

    def fc_unpublish(self, stream_name: str) -> None:
        self._require_connected("FCUnpublish")
        self._send_command("FCUnpublish", self._next_transaction("FCUnpublish"), None, stream_name)

    def publish(
        self, stream_name: str, publish_type: str = "live", stream_id: int | None = None
    ) -> None:
        """Send ``publish`` (name may carry ``?key=value``); StatusEvent Publish.Start follows."""
        sid = self._stream(stream_id, "publish")
        self._send_command("publish", 0, None, stream_name, publish_type, stream_id=sid)

    def play(self, stream_name: str, start: float = -2, stream_id: int | None = None) -> None:
        """Send ``play``; StatusEvent Play.Start and then media follow."""
        sid = self._stream(stream_id, "play")
        self._send_command("play", 0, None, stream_name, float(start), stream_id=sid)

    def delete_stream(self, stream_id: int) -> None:
        self._require_connected("deleteStream")
        self._send_command("deleteStream", 0, None, float(stream_id))

    def send_media(self, msg: Message) -> None:
        """Send audio/video/data on the conventional chunk stream for its type."""
        self.send_message(msg, media_csid(msg.type_id))
