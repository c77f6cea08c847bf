"""Errors raised by the sans-I/O RTMP layer.

Every malformed input (handshake, chunk stream, AMF, command sequence) raises
:class:`ProtocolError` with a human reason; the network layer closes the
connection and logs the reason next to the client address. No other exception
type escapes ``receive_data``/``feed``/``decode`` for bad *input* (a fuzz test
keeps that promise); programming errors (bad arguments) still raise the usual
``ValueError``/``TypeError``.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that do not follow the RTMP/AMF protocol."""
