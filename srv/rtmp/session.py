"""The server side of an RTMP connection, as a sans-I/O state machine.

Feed received bytes to :meth:`ServerSession.receive_data`, act on the
returned events, write :meth:`ServerSession.data_to_send` to the socket.

States: ``HANDSHAKE -> WAIT_CONNECT -> CONNECTING -> CONNECTED`` (or
``REJECTED``). In ``CONNECTING`` the application is deciding about a
:class:`ConnectRequest` (auth hooks may take a while); messages that arrive
meanwhile are held and processed by :meth:`accept_connect`, which returns the
events they produce. Commands that make no sense in the current state
(``publish`` before ``connect``, ``play`` on a stream never created) raise
:class:`ProtocolError`.

Handled without the application: handshake, protocol control, acks, pings,
``createStream`` (stream ids 1, 2, ...), ``releaseStream``, ``FCPublish``,
``getStreamLength``, bandwidth-check chatter. :class:`ClientSession` lives in
:mod:`.client` and is re-exported here.
"""

from __future__ import annotations

import enum
from typing import Any, Final
from urllib.parse import urlsplit

from .chunk import CSID_PROTOCOL, MediaCallback
from .client import ClientSession
from .connection import Command, RtmpConnection, decode_command, split_query, status_info
from .errors import ProtocolError
from .events import (
    CloseStream,
    ConnectRequest,
    DeleteStream,
    Event,
    FCUnpublish,
    MediaMessage,
    PauseRequest,
    PlayRequest,
    PublishRequest,
    UnknownCommand,
)
from .handshake import ServerHandshake
from .messages import (
    Message,
    MessageType,
    set_peer_bandwidth_message,
    stream_begin_message,
    stream_eof_message,
    window_ack_size_message,
)

__all__ = ["ServerSession", "ServerState", "ClientSession"]

FMS_VERSION: Final = "FMS/3,5,3,888"
#: Largest message a client may send until its publish is accepted: commands only, so
#: nginx-rtmp's ``max_message`` default. A publisher then gets ``max_message_size``.
MAX_COMMAND_MESSAGE_SIZE: Final = 2**20
#: Smallest chunk size a client may set. SRS warns below 128; 1-byte chunks cost a worker
#: ~200 times the CPU per byte of normal ones and starve every other client of it.
MIN_PEER_CHUNK_SIZE: Final = 128
#: Longest tcUrl, app, pageUrl, swfUrl, and stream name with its query: a few KiB, as SRS and
#: nginx-rtmp take in practice. Everything a client sends here is logged and reported.
MAX_FIELD_LENGTH: Final = 4096
_CONNECT_FIELDS: Final = ("tcUrl", "app", "pageUrl", "swfUrl", "flashVer")
#: Commands answered by silence: bandwidth checks and replies to our own calls.
_IGNORED: Final = frozenset(
    {"_checkbw", "checkBandwidth", "onBWDone", "_result", "_error", "receiveAudio",
     "receiveVideo", "call", "onFCPublish", "onFCUnpublish", "setPeerInfo"}
)  # fmt: skip


_AUDIO: Final = int(MessageType.AUDIO)  # plain ints for the hot path (no enum lookup)
_VIDEO: Final = int(MessageType.VIDEO)


class ServerState(enum.Enum):
    HANDSHAKE = "handshake"
    WAIT_CONNECT = "wait-connect"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    REJECTED = "rejected"


def _vhost_of(tc_url: str, params: dict[str, str]) -> str:
    if params.get("vhost"):
        return params["vhost"]
    try:
        return urlsplit(tc_url).hostname or ""
    except ValueError:
        return ""


class ServerSession(RtmpConnection):
    """One accepted RTMP connection, from the server's point of view."""

    def __init__(
        self,
        out_chunk_size: int = 60000,
        window_ack_size: int = 2500000,
        peer_bandwidth: int = 2500000,
        max_message_size: int = 16 * 2**20,
    ) -> None:
        super().__init__(out_chunk_size, max_message_size)
        self.max_publish_message_size = max_message_size
        self._decoder.set_limits(min(max_message_size, MAX_COMMAND_MESSAGE_SIZE))
        self._decoder.min_chunk_size = MIN_PEER_CHUNK_SIZE
        self.window_ack_size = window_ack_size
        self.peer_bandwidth_to_set = peer_bandwidth
        self.state = ServerState.HANDSHAKE
        self._handshake = ServerHandshake()
        self._held: list[Message] = []
        self._streams: set[int] = set()
        self._next_stream_id = 1
        self._fc_published: set[str] = set()
        self.object_encoding = 0.0

    @property
    def complex_handshake(self) -> bool:
        return self._handshake.complex

    @property
    def media_received(self) -> int:
        """Audio and video messages handed to ``on_media`` callbacks so far."""
        return self._decoder.media_delivered

    def receive_data(self, data: bytes, on_media: MediaCallback | None = None) -> list[Event]:
        """Consume bytes from the client; return the events they complete.

        ``on_media``: once connected, audio and video go to it as ``(type_id, timestamp,
        payload)`` rather than as :class:`MediaMessage` events (the publisher's hot path: no
        event, no message object), up to the first other message of this data; the events are
        then those of the messages after it, in order (see :meth:`ChunkDecoder.feed`).
        """
        if self.state is ServerState.HANDSHAKE:
            self.bytes_received += len(data)
            self._handshake.receive_data(data)
            self._out.append(self._handshake.data_to_send())
            if not self._handshake.done:
                return []
            self.state = ServerState.WAIT_CONNECT
            data, self._handshake.leftover = self._handshake.leftover, b""  # not kept for the connection's life
            self.bytes_received -= len(data)
            if not data:
                return []
        if on_media is not None and self.state is ServerState.CONNECTED:
            return self._process(self._receive_chunks(data, on_media))
        return self._process(self._receive_chunks(data))

    def _process(self, messages: list[Message]) -> list[Event]:
        events: list[Event] = []
        for msg in messages:
            type_id = msg.type_id
            if (type_id == _AUDIO or type_id == _VIDEO) and self.state is ServerState.CONNECTED:
                events.append(MediaMessage(msg))  # what a publisher mostly sends: no more to decide
                continue
            if self._handle_control(msg):
                continue
            if self.state is ServerState.CONNECTING:
                self._held.append(msg)
            elif self.state is not ServerState.REJECTED:
                self._dispatch(msg, events)
        return events

    def _dispatch(self, msg: Message, events: list[Event]) -> None:
        if msg.type_id == MessageType.COMMAND_AMF0 or msg.type_id == MessageType.COMMAND_AMF3:
            self._command(decode_command(msg), events)
        elif self.state is not ServerState.CONNECTED:
            raise ProtocolError(f"message type {msg.type_id} before connect")
        else:
            self._media_events(msg, events)

    # --- commands ----------------------------------------------------------

    def _command(self, cmd: Command, events: list[Event]) -> None:
        name = cmd.name
        if name == "connect":
            if self.state is not ServerState.WAIT_CONNECT:
                raise ProtocolError("connect received twice")
            events.append(self._connect_request(cmd))
            self.state = ServerState.CONNECTING
            return
        if name in _IGNORED:
            return
        if self.state is not ServerState.CONNECTED:
            raise ProtocolError(f"{name} before connect")
        tid = cmd.transaction_id
        if name == "createStream":
            stream_id = self._next_stream_id
            self._next_stream_id += 1
            self._streams.add(stream_id)
            self._send_command("_result", tid, None, float(stream_id))
        elif name == "releaseStream":
            self._send_command("_result", tid, None, None)
        elif name == "FCPublish":
            self._fc_published.add(split_query(_str_arg(cmd, 0))[0])
            self._send_command("_result", tid, None, None)
        elif name == "FCUnpublish":
            stream_name = split_query(_str_arg(cmd, 0))[0]
            info = status_info("status", "NetStream.Unpublish.Success", stream_name)
            self._send_command("onFCUnpublish", 0, None, info, stream_id=cmd.stream_id)
            self._send_command("_result", tid, None, None, stream_id=cmd.stream_id)
            events.append(FCUnpublish(cmd.stream_id, stream_name))
        elif name == "getStreamLength":
            self._send_command("_result", tid, None, 0.0, stream_id=cmd.stream_id)
        elif name == "publish":
            self._require_stream(cmd)
            stream_name, params = split_query(_check_length(name, "stream", _str_arg(cmd, 0)))
            if not stream_name:
                raise ProtocolError("publish without a stream name")
            kind = cmd.args[1] if len(cmd.args) > 1 and isinstance(cmd.args[1], str) else "live"
            events.append(PublishRequest(cmd.stream_id, stream_name, params, kind))
        elif name == "play":
            self._require_stream(cmd)
            stream_name, params = split_query(_check_length(name, "stream", _str_arg(cmd, 0)))
            start = cmd.args[1] if len(cmd.args) > 1 and isinstance(cmd.args[1], float) else -2.0
            events.append(PlayRequest(cmd.stream_id, stream_name, params, start))
        elif name == "pause":
            paused = bool(cmd.args[0]) if cmd.args else True
            pos = cmd.args[1] if len(cmd.args) > 1 and isinstance(cmd.args[1], float) else 0.0
            events.append(PauseRequest(cmd.stream_id, paused, pos))
        elif name == "deleteStream":
            arg = cmd.args[0] if cmd.args else None
            stream_id = int(arg) if isinstance(arg, float) and 0 <= arg < 2**32 else cmd.stream_id
            self._streams.discard(stream_id)
            events.append(DeleteStream(stream_id))
        elif name == "closeStream":
            events.append(CloseStream(cmd.stream_id))
        else:
            events.append(UnknownCommand(cmd.stream_id, name, tid, cmd.args))

    def _require_stream(self, cmd: Command) -> None:
        if cmd.stream_id not in self._streams:
            raise ProtocolError(f"{cmd.name} on stream {cmd.stream_id} before createStream")

    def _connect_request(self, cmd: Command) -> ConnectRequest:
        obj: dict[str, Any] = cmd.command_object if isinstance(cmd.command_object, dict) else {}
        for field in _CONNECT_FIELDS:
            value = obj.get(field)
            if isinstance(value, str):
                _check_length("connect", field, value)
        app_raw = obj.get("app")
        tc_url = obj.get("tcUrl")
        app_raw = app_raw if isinstance(app_raw, str) else ""
        tc_url = tc_url if isinstance(tc_url, str) else ""
        # FMLE cannot type "?" in the app field: SRS accepts "live...vhost...x" for "live?vhost=x"
        if "?" not in app_raw and "..." in app_raw:
            head, _, rest = app_raw.partition("...")
            parts = rest.split("...")
            app_raw = (
                head
                + "?"
                + "&".join(f"{k}={v}" for k, v in zip(parts[::2], parts[1::2], strict=False))
            )
        _, tc_params = split_query(tc_url)
        app, app_params = split_query(app_raw)
        params = {**tc_params, **app_params}
        encoding = obj.get("objectEncoding")
        self.object_encoding = encoding if isinstance(encoding, float) else 0.0
        return ConnectRequest(
            cmd.transaction_id, app.strip("/"), tc_url, _vhost_of(tc_url, params), params, obj
        )

    # --- decisions of the application -------------------------------------

    def accept_connect(self, request: ConnectRequest) -> list[Event]:
        """Send Window Ack Size, Set Peer Bandwidth, Set Chunk Size, ``_result``, onBWDone.

        Returns the events of messages held while the application was deciding.
        """
        if self.state is not ServerState.CONNECTING:
            raise RuntimeError(f"accept_connect in state {self.state.value}")
        self.send_message(window_ack_size_message(self.window_ack_size), CSID_PROTOCOL)
        self.send_message(set_peer_bandwidth_message(self.peer_bandwidth_to_set), CSID_PROTOCOL)
        self.set_chunk_size(self._wanted_out_chunk_size)
        props = {"fmsVer": FMS_VERSION, "capabilities": 127.0, "mode": 1.0}
        info = status_info(
            "status", "NetConnection.Connect.Success", "Connection succeeded.",
            objectEncoding=self.object_encoding,
        )  # fmt: skip
        self._send_command("_result", request.transaction_id, props, info)
        self._send_command("onBWDone", 0, None)
        self.state = ServerState.CONNECTED
        held, self._held = self._held, []
        return self._process(held)

    def reject_connect(self, request: ConnectRequest, description: str) -> None:
        """Send ``_error`` NetConnection.Connect.Rejected; the caller then closes."""
        info = status_info("error", "NetConnection.Connect.Rejected", description)
        self._send_command("_error", request.transaction_id, None, info)
        self.state = ServerState.REJECTED
        self._held.clear()

    def send_status(
        self, stream_id: int, level: str, code: str, description: str, **extra: Any
    ) -> None:
        """Send ``onStatus`` on ``stream_id`` with an information object."""
        self._send_status(stream_id, status_info(level, code, description, **extra))

    def accept_publish(self, stream_id: int, stream_name: str) -> None:
        """onFCPublish (when FCPublish was used) and onStatus NetStream.Publish.Start.

        From here on the client may send messages up to ``max_message_size`` (media).
        """
        self._decoder.set_limits(self.max_publish_message_size)
        description = f"Started publishing stream {stream_name}."
        if stream_name in self._fc_published:
            info = status_info("status", "NetStream.Publish.Start", description)
            self._send_command("onFCPublish", 0, None, info, stream_id=stream_id)
        self.send_status(
            stream_id, "status", "NetStream.Publish.Start", description, details=stream_name
        )

    def reject_publish(
        self,
        stream_id: int,
        code: str = "NetStream.Publish.BadName",
        description: str = "Stream already publishing.",
    ) -> None:
        self.send_status(stream_id, "error", code, description)

    def start_play(self, stream_id: int, stream_name: str, data_start: bool = False) -> None:
        """StreamBegin, Play.Reset, Play.Start, ``|RtmpSampleAccess`` [, NetStream.Data.Start].

        The NetStream.Data.Start data message (SRS sends it) is off by default:
        ffmpeg's FLV demuxer turns it into a bogus third "data" stream in ffprobe.
        """
        self.send_message(stream_begin_message(stream_id), CSID_PROTOCOL)
        self.send_status(
            stream_id, "status", "NetStream.Play.Reset",
            f"Playing and resetting stream {stream_name}.", details=stream_name,
        )  # fmt: skip
        self.send_status(
            stream_id, "status", "NetStream.Play.Start",
            f"Started playing stream {stream_name}.", details=stream_name,
        )  # fmt: skip
        self._send_data(stream_id, "|RtmpSampleAccess", True, True)
        if data_start:
            self._send_data(stream_id, "onStatus", {"code": "NetStream.Data.Start"})

    def reject_play(
        self,
        stream_id: int,
        code: str = "NetStream.Play.StreamNotFound",
        description: str = "Stream not found.",
    ) -> None:
        self.send_status(stream_id, "error", code, description)

    def send_publish_notify(self, stream_id: int) -> None:
        """Tell a waiting player a publisher arrived: onStatus NetStream.Play.PublishNotify."""
        self.send_status(stream_id, "status", "NetStream.Play.PublishNotify", "Stream published.")

    def send_unpublish_notify(self, stream_id: int) -> None:
        """Tell a player its publisher left: onStatus NetStream.Play.UnpublishNotify."""
        self.send_status(
            stream_id, "status", "NetStream.Play.UnpublishNotify", "Stream unpublished."
        )

    def send_stream_eof(self, stream_id: int) -> None:
        self.send_message(stream_eof_message(stream_id), CSID_PROTOCOL)

    def send_unpublish_success(self, stream_id: int) -> None:
        self.send_status(stream_id, "status", "NetStream.Unpublish.Success", "Stream unpublished.")


def _check_length(command: str, field: str, value: str) -> str:
    if len(value) > MAX_FIELD_LENGTH:
        raise ProtocolError(
            f"{command} {field} of {len(value)} characters exceeds the limit of {MAX_FIELD_LENGTH}"
        )
    return value


def _str_arg(cmd: Command, index: int) -> str:
    value = cmd.args[index] if len(cmd.args) > index else None
    return value if isinstance(value, str) else ""
