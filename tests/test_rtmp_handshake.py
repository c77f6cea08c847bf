"""Simple and complex RTMP handshakes, as server and as client."""

from __future__ import annotations

import os

import pytest

from srv.rtmp.errors import ProtocolError
from srv.rtmp.handshake import (
    GENUINE_FMS_KEY,
    PACKET_SIZE,
    ClientHandshake,
    ServerHandshake,
    digest_offset,
    find_digest,
    make_digested_packet,
    verify_response,
)

FP_KEY_OPEN = b"Genuine Adobe Flash Player 001"
FMS_KEY_OPEN = GENUINE_FMS_KEY[:36]


def run(client: ClientHandshake, server: ServerHandshake, piece: int, trailer: bytes = b"") -> None:
    client.start()
    for _ in range(10):
        c_out = client.data_to_send()
        if client.done:
            c_out += trailer  # the client's first chunk-stream bytes follow C2 at once
            trailer = b""
        for i in range(0, len(c_out), piece):
            server.receive_data(c_out[i : i + piece])
        s_out = server.data_to_send()
        for i in range(0, len(s_out), piece):
            client.receive_data(s_out[i : i + piece])
        if client.done and server.done and not trailer:
            return


@pytest.mark.parametrize("piece", [1, 1000, 100000])
def test_complex_handshake_digests_verify_in_both_directions(piece: int) -> None:
    client, server = ClientHandshake(), ServerHandshake()
    run(client, server, piece, trailer=b"\x03chunkdata")
    assert server.done and client.done
    assert server.complex and client.server_complex and client.s2_verified
    assert server.leftover == b"\x03chunkdata"


def test_server_answers_plain_c1_with_simple_handshake_echo() -> None:
    c1 = bytes(8) + os.urandom(PACKET_SIZE - 8)
    server = ServerHandshake()
    server.receive_data(b"\x03" + c1)
    out = server.data_to_send()
    assert not server.complex
    assert out[0] == 3 and out[1 + PACKET_SIZE :] == c1
    assert out[5:9] == bytes(4)  # S1 version zero: clients skip digest checks
    server.receive_data(c1 + b"tail")
    assert server.done and server.leftover == b"tail"


def test_server_detects_schema0_c1_and_answers_with_schema0_digest() -> None:
    c1 = make_digested_packet(0, bytes((10, 0, 45, 2)), FP_KEY_OPEN, 0)
    assert find_digest(c1, FP_KEY_OPEN) is not None and find_digest(c1, FP_KEY_OPEN)[0] == 0  # type: ignore[index]
    server = ServerHandshake()
    server.receive_data(b"\x03" + c1)
    out = server.data_to_send()
    s1, s2 = out[1 : 1 + PACKET_SIZE], out[1 + PACKET_SIZE :]
    found = find_digest(s1, FMS_KEY_OPEN)
    assert server.complex and found is not None and found[0] == 0
    c1_digest = c1[digest_offset(c1, 0) :][:32]
    assert verify_response(s2, c1_digest, GENUINE_FMS_KEY)


def test_client_accepts_simple_server_and_echoes_s1() -> None:
    client = ClientHandshake()
    client.start()
    client.data_to_send()
    s1 = bytes(8) + os.urandom(PACKET_SIZE - 8)
    client.receive_data(b"\x03" + s1)
    assert client.data_to_send() == s1
    client.receive_data(os.urandom(PACKET_SIZE))
    assert client.done and not client.server_complex


def test_http_request_gives_a_clear_reason() -> None:
    with pytest.raises(ProtocolError, match=r"bad handshake version 0x47 \(not RTMP: HTTP\?\)"):
        ServerHandshake().receive_data(b"GET / HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize("version", [0, 6, 0x16, 0xFF])
def test_bad_version_is_rejected_on_the_first_byte(version: int) -> None:
    with pytest.raises(ProtocolError, match="bad handshake version"):
        ServerHandshake().receive_data(bytes((version,)))
