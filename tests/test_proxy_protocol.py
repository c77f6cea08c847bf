"""The PROXY protocol reader (srv.net.proxy_protocol): v1 and v2 headers fed whole, one byte
at a time and with the client's own bytes behind them; and the headers it must refuse:
truncated, oversized, wrong signature, wrong family."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest

from srv.net.proxy_protocol import (
    MAX_V2_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
)

RTMP_C0C1 = b"\x03" + bytes(1536)
SRC4, DST4 = ("127.0.0.7", 40001), ("127.0.0.1", 1935)
SRC6, DST6 = ("2001:db8::7", 40001), ("2001:db8::1", 1935)

GOOD = [
    (encode_v1(SRC4, DST4), ProxyHeader(1, SRC4, DST4)),
    (encode_v1(SRC6, DST6), ProxyHeader(1, SRC6, DST6)),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1)),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1)),
    (encode_v2(SRC4, DST4), ProxyHeader(2, SRC4, DST4)),
    (encode_v2(SRC6, DST6), ProxyHeader(2, SRC6, DST6)),
    (encode_v2(None), ProxyHeader(2)),  # LOCAL: a health check, no client
    # TLVs after the addresses (a unique id, an ALPN) are skipped
    (encode_v2(SRC4, DST4, tlvs=b"\x05\x00\x04abcd\x01\x00\x02h2"), ProxyHeader(2, SRC4, DST4)),
    (encode_v2(None, tlvs=b"\x05\x00\x01x"), ProxyHeader(2)),
    # PROXY over AF_UNSPEC: the proxy does not describe the client; the peer's address stays
    (V2_SIGNATURE + b"\x21\x00\x00\x00", ProxyHeader(2)),
]


def feed(reader: ProxyHeaderReader, data: bytes, piece: int) -> tuple[ProxyHeader, bytes] | None:
    result = None
    for i in range(0, len(data), piece):
        out = reader.receive_data(data[i:i + piece])
        if out is not None:
            assert result is None, "the header was returned twice"
            header, rest = out
            # whatever came in later pieces belongs to the protocol behind, untouched
            result = (header, rest + data[i + piece:])
            break
    return result


@pytest.mark.parametrize("header,expected", GOOD)
@pytest.mark.parametrize("piece", [1, 2, 7, 100_000])
def test_header_is_read_whole_or_byte_by_byte_and_hands_on_what_follows(
        header: bytes, expected: ProxyHeader, piece: int) -> None:
    result = feed(ProxyHeaderReader(), header + RTMP_C0C1, piece)
    assert result == (expected, RTMP_C0C1)


@pytest.mark.parametrize("header,expected", GOOD)
def test_a_header_alone_leaves_nothing_to_hand_on(header: bytes, expected: ProxyHeader) -> None:
    reader = ProxyHeaderReader()
    assert reader.receive_data(header[:-1]) is None
    assert reader.receive_data(header[-1:]) == (expected, b"")


@pytest.mark.parametrize("header", [h for h, _ in GOOD])
def test_truncated_header_is_never_complete(header: bytes) -> None:
    reader = ProxyHeaderReader()
    for i in range(len(header) - 1):
        assert reader.receive_data(header[i:i + 1]) is None


def test_a_v1_line_at_the_spec_limit_is_accepted_and_one_byte_more_is_not() -> None:
    longest = b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(longest) == 104
    padded = longest[:-2] + b" " * 3 + b"\r\n"  # 107 bytes: still a line, but 7 fields
    with pytest.raises(ProxyProtocolError, match="fields"):
        ProxyHeaderReader().receive_data(padded)
    assert len(padded) == 107
    too_long = longest[:-2] + b" " * 4 + b"\r\n"
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        ProxyHeaderReader().receive_data(too_long)


def test_oversized_v1_is_refused_without_waiting_for_its_end() -> None:
    reader = ProxyHeaderReader()
    assert reader.receive_data(b"PROXY TCP4 " + b"1" * 90) is None
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        for _ in range(20):
            reader.receive_data(b"1")


def test_oversized_v2_is_refused_from_its_length_field() -> None:
    head = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_V2_LENGTH + 1)
    with pytest.raises(ProxyProtocolError, match="v2 header of"):
        ProxyHeaderReader().receive_data(head)


@pytest.mark.parametrize("data,why", [
    (b"GET / HTTP/1.1\r\n\r\n", "no PROXY header"),
    (RTMP_C0C1, "no PROXY header"),
    (b"PROXZ TCP4 1.2.3.4 1.2.3.5 1 2\r\n", "no PROXY header"),
    (b"proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n", "no PROXY header"),
    (b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + bytes(12), "wrong v2 signature"),
    (b"\r\n\r\n\x01", "wrong v2 signature"),
])
def test_wrong_signature_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        feed(ProxyHeaderReader(), data, 1)


@pytest.mark.parametrize("data,why", [
    (b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", "unknown family"),
    (b"PROXY TCP4 2001:db8::1 1.2.3.5 1 2\r\n", "is not a TCP4 address"),
    (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "is not a TCP6 address"),
    (b"PROXY TCP4 1.2.3.400 1.2.3.5 1 2\r\n", "bad address"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", "fields"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n", "LF without CR"),
    (b"PROXY TCP4 \xff.2.3.4 1.2.3.5 1 2\r\n", "not ASCII"),
    (V2_SIGNATURE + b"\x21\x31\x00\xd8" + bytes(216), "AF_UNIX"),
    (V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12), "family 4"),
    (V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12), "transport 2"),
    (V2_SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "too short"),
    (V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "too short"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1"),
    (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command 2"),
])
def test_wrong_family_or_malformed_fields_are_refused(data: bytes, why: str) -> None:
    for piece in (1, len(data)):
        with pytest.raises(ProxyProtocolError, match=why):
            feed(ProxyHeaderReader(), data, piece)


def test_a_second_header_is_the_clients_data_not_a_header() -> None:
    twice = encode_v1(SRC4, DST4) + encode_v1(("10.9.9.9", 1), DST4)
    assert ProxyHeaderReader().receive_data(twice) == (
        ProxyHeader(1, SRC4, DST4), encode_v1(("10.9.9.9", 1), DST4))
    v2twice = encode_v2(SRC4, DST4) + encode_v2(("10.9.9.9", 1), DST4)
    assert ProxyHeaderReader().receive_data(v2twice) == (
        ProxyHeader(2, SRC4, DST4), encode_v2(("10.9.9.9", 1), DST4))


def test_the_reader_reads_one_header_only() -> None:
    reader = ProxyHeaderReader()
    reader.receive_data(encode_v2(None))
    with pytest.raises(ProxyProtocolError, match="already"):
        reader.receive_data(encode_v2(None))


def test_the_reader_has_no_io() -> None:
    source = Path(__file__).resolve().parents[1] / "srv" / "net" / "proxy_protocol.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "ipaddress", "struct", "dataclasses"}
