"""The PROXY protocol (HAProxy's, versions 1 and 2), receiving side, sans-I/O.

A load balancer in TCP mode that connects to us on a client's behalf first sends one header
naming the client; `ProxyHeaderReader.receive_data(bytes)` is fed whatever arrives, in any
pieces (one byte at a time works), and returns None until the header is complete, then a
`ProxyHeader` and the bytes that followed it (the client's own first bytes: an RTMP handshake,
an HTTP request), which belong to the protocol behind. No asyncio, no sockets.

What is accepted (everything else raises `ProxyProtocolError`, and the connection must close):
- v1: ``PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\\r\\n`` or ``PROXY UNKNOWN ...\\r\\n``, at most
  107 bytes with the CRLF (the spec's bound); addresses must parse as the named family.
- v2: the 12-byte signature, version 2, command LOCAL or PROXY, family INET or INET6 over STREAM
  (or UNSPEC), the address block, then TLVs, which are skipped. At most `MAX_V2_LENGTH` bytes
  after the 16-byte fixed part.
- LOCAL (v2, a load balancer's own health check) and UNKNOWN / UNSPEC (v1, v2) carry no client:
  `ProxyHeader.source` is None, and the connection keeps the peer's own address.
A second header after the first is not looked for: it is the client's data.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included (spec: "PROXY TCP6 " + 2 full IPv6 + ports)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version/command, family/transport, length
MAX_V2_LENGTH = 2048  # addresses + TLVs we buffer; HAProxy's usual TLVs fit many times over

_LOCAL, _PROXY = 0x0, 0x1
_UNSPEC, _INET, _INET6, _UNIX = 0x0, 0x1, 0x2, 0x3
_STREAM = 0x1
_V2_ADDRESS_LENGTH = {_INET: 12, _INET6: 36}


class ProxyProtocolError(Exception):
    """The bytes are not a PROXY header we accept; the reason is for the log."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the load balancer said: the client (`source`) and the address it connected to
    (`destination`), each (ip, port); both None for LOCAL and UNKNOWN."""

    version: int
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


class ProxyHeaderReader:
    """Reads one PROXY header (v1 or v2) off the front of a connection's bytes."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.header: ProxyHeader | None = None

    def receive_data(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """Feed bytes; None while the header is incomplete, then (header, the bytes after it).
        Raises ProxyProtocolError on anything that is not a header we accept."""
        if self.header is not None:
            raise ProxyProtocolError("the header was already read")
        self.buffer += data
        buf = self.buffer
        if not buf:
            return None
        if buf[:1] == V1_PREFIX[:1]:
            return self._v1()
        if buf[:1] == V2_SIGNATURE[:1]:
            return self._v2()
        raise ProxyProtocolError(f"no PROXY header (starts with {bytes(buf[:8])!r})")

    def wanted(self) -> int:
        """How many bytes to read next without reading past the header: for a reader that must
        leave what follows on the socket (a TLS handshake that another layer will read)."""
        buf = self.buffer
        if not buf:
            return 8  # shorter than any header; tells v1 from v2
        if buf[:1] == V1_PREFIX[:1]:
            return 1  # a line: one byte at a time up to its CRLF (107 at most)
        if len(buf) < V2_FIXED:
            return V2_FIXED - len(buf)
        return max(1, V2_FIXED + struct.unpack_from("!H", buf, 14)[0] - len(buf))

    # ---- version 1: one text line --------------------------------------------------------------

    def _v1(self) -> tuple[ProxyHeader, bytes] | None:
        buf = self.buffer
        if not V1_PREFIX.startswith(bytes(buf[:6])):
            raise ProxyProtocolError(f"no PROXY header (starts with {bytes(buf[:8])!r})")
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) >= V1_MAX:
                raise ProxyProtocolError(f"v1 header longer than {V1_MAX} bytes")
            if b"\n" in buf:
                raise ProxyProtocolError("v1 header ends in LF without CR")
            return None
        if end + 2 > V1_MAX:
            raise ProxyProtocolError(f"v1 header longer than {V1_MAX} bytes")
        line, rest = bytes(buf[:end]), bytes(buf[end + 2:])
        return self._done(_parse_v1(line), rest)

    # ---- version 2: binary -----------------------------------------------------------------------

    def _v2(self) -> tuple[ProxyHeader, bytes] | None:
        buf = self.buffer
        if not V2_SIGNATURE.startswith(bytes(buf[:12])):
            raise ProxyProtocolError("wrong v2 signature")
        if len(buf) < V2_FIXED:
            return None
        ver_cmd, fam, length = buf[12], buf[13], struct.unpack_from("!H", buf, 14)[0]
        if ver_cmd >> 4 != 2:
            raise ProxyProtocolError(f"v2 header with version {ver_cmd >> 4}")
        command = ver_cmd & 0x0F
        if command not in (_LOCAL, _PROXY):
            raise ProxyProtocolError(f"v2 header with unknown command {command}")
        if length > MAX_V2_LENGTH:
            raise ProxyProtocolError(f"v2 header of {length} bytes (at most {MAX_V2_LENGTH})")
        if len(buf) < V2_FIXED + length:
            return None
        block, rest = bytes(buf[V2_FIXED:V2_FIXED + length]), bytes(buf[V2_FIXED + length:])
        if command == _LOCAL:  # a health check by the proxy itself: addresses are ignored
            return self._done(ProxyHeader(2), rest)
        return self._done(_parse_v2_addresses(fam, block), rest)

    def _done(self, header: ProxyHeader, rest: bytes) -> tuple[ProxyHeader, bytes]:
        self.header = header
        self.buffer = bytearray()
        return header, rest


def _parse_v1(line: bytes) -> ProxyHeader:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1 header is not ASCII") from None
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1)  # the proxy does not know the client: keep the peer's address
    if len(parts) != 6:
        raise ProxyProtocolError(f"v1 header with {len(parts)} fields (expected 6): {text[:V1_MAX]!r}")
    _, family, src, dst, sport, dport = parts
    if family not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"v1 header with unknown family {family[:16]!r}")
    version = 4 if family == "TCP4" else 6
    return ProxyHeader(1, (_v1_ip(src, version), _v1_port(sport)), (_v1_ip(dst, version), _v1_port(dport)))


def _v1_ip(text: str, version: int) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"v1 header with bad address {text[:48]!r}") from None
    if ip.version != version:
        raise ProxyProtocolError(f"v1 header: {text} is not a TCP{version} address")
    return str(ip)


def _v1_port(text: str) -> int:
    # the spec's ports are decimal without leading zeros, 0 to 65535
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError(f"v1 header with bad port {text[:16]!r}")
    return int(text)


def _parse_v2_addresses(fam: int, block: bytes) -> ProxyHeader:
    family, transport = fam >> 4, fam & 0x0F
    if family == _UNSPEC:
        return ProxyHeader(2)  # a protocol the proxy does not describe: keep the peer's address
    if family not in _V2_ADDRESS_LENGTH:
        name = "AF_UNIX" if family == _UNIX else f"family {family}"
        raise ProxyProtocolError(f"v2 header with unsupported address family ({name})")
    if transport != _STREAM:
        raise ProxyProtocolError(f"v2 header with transport {transport} (expected STREAM)")
    need = _V2_ADDRESS_LENGTH[family]
    if len(block) < need:
        raise ProxyProtocolError(f"v2 header too short for its addresses ({len(block)} < {need} bytes)")
    size = 4 if family == _INET else 16
    src = ipaddress.ip_address(block[:size])
    dst = ipaddress.ip_address(block[size:2 * size])
    sport, dport = struct.unpack_from("!HH", block, 2 * size)
    # the rest of the block is TLVs (ALPN, authority, SSL, unique id, ...): not needed here
    return ProxyHeader(2, (str(src), sport), (str(dst), dport))


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A v1 header (for tests and tools): ``PROXY TCP4 src dst sport dport\\r\\n``."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None = None,
              tlvs: bytes = b"") -> bytes:
    """A v2 header (for tests and tools): PROXY over INET/INET6, or LOCAL when `source` is None."""
    if source is None or destination is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    fam = 0x11 if src.version == 4 else 0x21
    block = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1]) + tlvs
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(block)) + block
