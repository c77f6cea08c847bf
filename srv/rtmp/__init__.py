"""Sans-I/O RTMP: handshake, chunk stream, AMF0/AMF3, messages and sessions.

Pure bytes in, events out, in the style of h11/h2: nothing here touches a
socket, a clock or an event loop, so every parser is testable whole, byte by
byte and with trailing data, and the network layer stays thin.
"""

from __future__ import annotations

from .errors import ProtocolError

__all__ = ["ProtocolError"]
