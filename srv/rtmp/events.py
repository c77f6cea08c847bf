"""Events returned by :class:`ServerSession` and :class:`ClientSession`.

Frozen dataclasses, h11-style: a session turns bytes into these and the
application reacts (accept/reject, attach a publisher or player). Protocol
housekeeping (acks, pings, chunk size, window sizes) never surfaces here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .messages import Message


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every session event."""


# --- server side -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest(Event):
    """``connect``: the server must call ``accept_connect`` or ``reject_connect``."""

    transaction_id: float
    app: str  # without query string
    tc_url: str
    vhost: str  # ?vhost= param if given, else the tcUrl host without port
    params: dict[str, str]  # query params of tcUrl and app (app's win)
    command_object: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishRequest(Event):
    stream_id: int
    stream_name: str  # without query string
    params: dict[str, str]
    publish_type: str  # "live", "record" or "append"


@dataclass(frozen=True, slots=True)
class PlayRequest(Event):
    stream_id: int
    stream_name: str  # without query string
    params: dict[str, str]
    # as sent: -2 live or recorded, -1 live only, >= 0 recorded from there. The spec says
    # seconds but ffmpeg and librtmp send milliseconds (-2000, -1000): compare the sign only.
    start: float


@dataclass(frozen=True, slots=True)
class PauseRequest(Event):
    stream_id: int
    paused: bool
    position_ms: float


@dataclass(frozen=True, slots=True)
class DeleteStream(Event):
    stream_id: int


@dataclass(frozen=True, slots=True)
class CloseStream(Event):
    stream_id: int


@dataclass(frozen=True, slots=True)
class FCUnpublish(Event):
    stream_id: int
    stream_name: str


@dataclass(frozen=True, slots=True)
class UnknownCommand(Event):
    """A command the session does not handle; it was not answered. For logging."""

    stream_id: int
    name: str
    transaction_id: float
    args: tuple[Any, ...]


# --- both sides --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaMessage(Event):
    """Audio (8), video (9), or script data other than metadata (18)."""

    message: Message


@dataclass(frozen=True, slots=True)
class MetadataMessage(Event):
    """``onMetaData`` (possibly sent as ``@setDataFrame``, AMF0 or AMF3), normalized.

    ``message`` is a type-18 message whose payload is
    ``amf0.encode("onMetaData", EcmaArray(metadata))``, ready to send to players.
    """

    message: Message
    metadata: dict[str, Any]


# --- client side -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected(Event):
    info: dict[str, Any]  # the _result information object (code, description, ...)


@dataclass(frozen=True, slots=True)
class ConnectFailed(Event):
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class StreamCreated(Event):
    stream_id: int


@dataclass(frozen=True, slots=True)
class CommandFailed(Event):
    """``_error`` for a command other than ``connect`` (e.g. createStream)."""

    command: str
    transaction_id: float
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StatusEvent(Event):
    """``onStatus`` from the server (NetStream.Publish.Start, Play.UnpublishNotify...)."""

    stream_id: int
    level: str
    code: str
    description: str
    info: dict[str, Any]
