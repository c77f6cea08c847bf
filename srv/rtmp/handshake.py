"""RTMP handshake, simple and complex (HMAC-SHA256 digest), as server and client.

Wire shape: C0 (version byte 3) + C1 (1536 bytes), S0 + S1 + S2, then C2.
Bytes following C2 (or S2) already belong to the chunk stream: they are kept
in ``leftover`` and never dropped.

The complex ("digest") handshake is what Flash Player, ffmpeg and librtmp
send. A 1536-byte C1/S1 is ``time(4) version(4)`` then two 764-byte blocks;
the 32-byte digest sits inside one of them at an offset derived from the sum
of four bytes. Schema 0 puts the key block first and the digest block second
(digest offset ``sum(p[772:776]) % 728 + 776``); schema 1 puts the digest
block first (``sum(p[8:12]) % 728 + 12``). The digest is HMAC-SHA256 over the
packet without those 32 bytes, keyed by the first 30 bytes of the Flash Player
key (C1) or 36 bytes of the Flash Media Server key (S1). C2/S2 end with
``HMAC(HMAC(full key, peer digest), packet[:1504])``.

A server answers a complex C1 with a complex S1/S2 (same schema), since
ffmpeg as player verifies both when S1's version is non-zero; anything else
gets the simple handshake (S1 version zero, S2 = echo of C1). C2 is read but
not verified, like SRS and nginx-rtmp: clients in the wild get it wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from .errors import ProtocolError

RTMP_VERSION: Final = 3
PACKET_SIZE: Final = 1536
DIGEST_SIZE: Final = 32

_KEY_TAIL: Final = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
GENUINE_FP_KEY: Final = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
GENUINE_FMS_KEY: Final = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
_FP_KEY_OPEN: Final = GENUINE_FP_KEY[:30]
_FMS_KEY_OPEN: Final = GENUINE_FMS_KEY[:36]

#: Flash version written in C1 (what ffmpeg claims: 9.0.124.2), and FMS version in S1.
CLIENT_VERSION: Final = bytes((9, 0, 124, 2))
SERVER_VERSION: Final = bytes((4, 5, 0, 1))

#: Schema id -> (offset of the four bytes summed, base of the digest).
_SCHEMAS: Final = {1: (8, 12), 0: (772, 776)}


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(packet: bytes, schema: int) -> int:
    """Where the 32-byte digest sits in a C1/S1 for ``schema`` (0 or 1)."""
    at, base = _SCHEMAS[schema]
    return sum(packet[at : at + 4]) % 728 + base


def _packet_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    return _hmac(key, packet[:offset] + packet[offset + DIGEST_SIZE :])


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """Return (schema, digest) when ``packet`` carries a valid digest, else None.

    Schema 1 is tried first: it is what ffmpeg and librtmp send.
    """
    for schema in (1, 0):
        offset = digest_offset(packet, schema)
        digest = packet[offset : offset + DIGEST_SIZE]
        if hmac.compare_digest(_packet_digest(packet, offset, key), digest):
            return schema, digest
    return None


def make_digested_packet(time_ms: int, version: bytes, key: bytes, schema: int) -> bytes:
    """A C1/S1 with random filler and its digest imprinted per ``schema``."""
    packet = bytearray(
        (time_ms & 0xFFFFFFFF).to_bytes(4, "big") + version + os.urandom(PACKET_SIZE - 8)
    )
    offset = digest_offset(bytes(packet), schema)
    packet[offset : offset + DIGEST_SIZE] = _packet_digest(bytes(packet), offset, key)
    return bytes(packet)


def make_response(peer_digest: bytes, full_key: bytes) -> bytes:
    """A complex C2/S2: random bytes signed with a key derived from the peer's digest."""
    body = os.urandom(PACKET_SIZE - DIGEST_SIZE)
    return body + _hmac(_hmac(full_key, peer_digest), body)


def verify_response(packet: bytes, my_digest: bytes, full_key: bytes) -> bool:
    """Does the C2/S2 ``packet`` carry a valid signature over our own digest?"""
    body = packet[: PACKET_SIZE - DIGEST_SIZE]
    expected = _hmac(_hmac(full_key, my_digest), body)
    return hmac.compare_digest(expected, packet[PACKET_SIZE - DIGEST_SIZE :])


def _check_version(byte: int) -> None:
    if byte == RTMP_VERSION:
        return
    if byte in (6, 8, 9):
        raise ProtocolError(f"bad handshake version 0x{byte:02x} (RTMPE is not supported)")
    hint = " (not RTMP: HTTP?)" if 0x41 <= byte <= 0x5A else ""
    if byte == 0x16:
        hint = " (not RTMP: TLS?)"
    raise ProtocolError(f"bad handshake version 0x{byte:02x}{hint}")


class ServerHandshake:
    """Server side: read C0C1, send S0S1S2, read C2; then ``done``."""

    def __init__(self, time_ms: int = 0) -> None:
        self._time_ms = time_ms
        self._buf = bytearray()
        self._out = bytearray()
        self._got_c0c1 = False
        self.done = False
        #: True when C1 carried a valid digest and we answered with the complex handshake.
        self.complex = False
        #: Bytes received after C2: the start of the chunk stream.
        self.leftover = b""

    def receive_data(self, data: bytes) -> None:
        if self.done:
            self.leftover += data
            return
        self._buf += data
        if not self._got_c0c1:
            if self._buf:
                _check_version(self._buf[0])  # fail on the first byte: clear reason for HTTP
            if len(self._buf) < 1 + PACKET_SIZE:
                return
            c1 = bytes(self._buf[1 : 1 + PACKET_SIZE])
            del self._buf[: 1 + PACKET_SIZE]
            self._got_c0c1 = True
            self._out += bytes((RTMP_VERSION,)) + self._answer(c1)
        if len(self._buf) >= PACKET_SIZE:
            self.leftover = bytes(self._buf[PACKET_SIZE:])
            self._buf.clear()
            self.done = True

    def _answer(self, c1: bytes) -> bytes:
        found = find_digest(c1, _FP_KEY_OPEN)
        if found is None:
            s1 = (
                (self._time_ms & 0xFFFFFFFF).to_bytes(4, "big")
                + bytes(4)
                + os.urandom(PACKET_SIZE - 8)
            )
            return s1 + c1
        schema, c1_digest = found
        self.complex = True
        s1 = make_digested_packet(self._time_ms, SERVER_VERSION, _FMS_KEY_OPEN, schema)
        return s1 + make_response(c1_digest, GENUINE_FMS_KEY)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


class ClientHandshake:
    """Client side: send C0C1 (complex, schema 1), read S0S1, send C2, read S2."""

    def __init__(self, time_ms: int = 0) -> None:
        self._c1 = make_digested_packet(time_ms, CLIENT_VERSION, _FP_KEY_OPEN, 1)
        self._c1_digest = self._c1[digest_offset(self._c1, 1) :][:DIGEST_SIZE]
        self._buf = bytearray()
        self._out = bytearray()
        self._started = False
        self._got_s0s1 = False
        self.done = False
        #: True when S1 carried a valid server digest (complex handshake).
        self.server_complex = False
        #: True when S2 signed our C1 digest correctly (only checked when complex).
        self.s2_verified = False
        self.leftover = b""

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._out += bytes((RTMP_VERSION,)) + self._c1

    def receive_data(self, data: bytes) -> None:
        if self.done:
            self.leftover += data
            return
        self._buf += data
        if not self._got_s0s1:
            if self._buf:
                _check_version(self._buf[0])
            if len(self._buf) < 1 + PACKET_SIZE:
                return
            s1 = bytes(self._buf[1 : 1 + PACKET_SIZE])
            del self._buf[: 1 + PACKET_SIZE]
            self._got_s0s1 = True
            found = find_digest(s1, _FMS_KEY_OPEN) if s1[4:8] != bytes(4) else None
            if found is None:
                self._out += s1  # simple handshake: echo S1
            else:
                self.server_complex = True
                self._out += make_response(found[1], GENUINE_FP_KEY)
        if len(self._buf) >= PACKET_SIZE:
            s2 = bytes(self._buf[:PACKET_SIZE])
            if self.server_complex:
                self.s2_verified = verify_response(s2, self._c1_digest, GENUINE_FMS_KEY)
            self.leftover = bytes(self._buf[PACKET_SIZE:])
            self._buf.clear()
            self.done = True

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
