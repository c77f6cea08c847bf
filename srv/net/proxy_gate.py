"""The door of a `proxy_protocol` listener: who may connect, and who the client really is.

A load balancer in TCP mode (HAProxy's `send-proxy`, `send-proxy-v2`) opens the connection on a
client's behalf and first sends a PROXY header naming that client. `ProxyGate` is the asyncio
protocol such a listener accepts with:
- a peer outside `proxy_protocol_trusted` is refused at once (anyone could otherwise claim to
  be anyone);
- from a trusted peer the header is required, read by the sans-I/O `ProxyHeaderReader` from
  however many reads it takes, within `HEADER_TIMEOUT` seconds (a peer that sends part of one
  and stalls is dropped); bad bytes close the connection;
- then the protocol the listener serves (RTMP, HTTP) is made for the client's address — the
  only address it ever sees: its `ip`, which security, per-IP limits, hooks, logs and the API
  read — the transport is handed to it, and the bytes that came after the header are its first
  data. A LOCAL (v2) or UNKNOWN (v1) header, the balancer's own health check, keeps the
  peer's address.
Each refusal is one log line naming the peer and the reason (untrusted peers: summed up under a
flood, as other refusals at the door).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from srv import log as srvlog
from srv.net.context import ConnectionContext
from srv.net.proxy_protocol import ProxyHeaderReader, ProxyProtocolError

log = logging.getLogger("srv.net")

HEADER_TIMEOUT = 3.0  # seconds a trusted peer has to send its whole PROXY header

Address = tuple[str, int]
MakeProtocol = Callable[[Address | None], asyncio.Protocol]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_trusted(ip: str, trusted: tuple[_Network, ...]) -> bool:
    """Whether `ip` (as a socket gives it; IPv4-mapped IPv6 counts as IPv4) is in `trusted`."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in trusted if net.version == addr.version)


class ProxyGate(asyncio.Protocol):
    """Reads the PROXY header of one connection, then hands the connection to its protocol.

    `make_protocol(address)` builds the protocol behind for the client's (ip, port), or for
    None: keep the peer's own (LOCAL / UNKNOWN headers)."""

    def __init__(self, ctx: ConnectionContext, make_protocol: MakeProtocol, where: str) -> None:
        self.ctx = ctx
        self.make_protocol = make_protocol
        self.where = where  # the listener, for log lines
        self.reader = ProxyHeaderReader()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.peer = "?"
        self.done = False

    def connection_made(self, transport: Any) -> None:  # asyncio or uvloop transport
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if not isinstance(peer, tuple):  # reset before we could look (a balancer's quick check)
            self.done = True
            transport.abort()
            return
        self.peer = f"{peer[0]}:{peer[1]}"
        if not is_trusted(peer[0], self.ctx.config.proxy_protocol_trusted):
            self.refuse("not in proxy_protocol_trusted", "untrusted")
            return
        self.timer = self.ctx.loop.call_later(HEADER_TIMEOUT, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            result = self.reader.receive_data(data)
        except ProxyProtocolError as e:
            self.refuse(f"bad PROXY header: {e}", "bad_header")
            return
        if result is None:
            return
        header, rest = result
        self._cancel_timer()
        self.done = True
        if header.source is not None:
            client = f"{header.source[0]}:{header.source[1]}"
        else:  # the balancer's own connection (a health check): it keeps its address
            client = "the peer itself (" + ("LOCAL" if header.version == 2 else "UNKNOWN") + ")"
        log.log(srvlog.INFO, "%s: PROXY v%d on %s: client %s", self.peer, header.version, self.where, client)
        protocol = self.make_protocol(header.source)
        transport = self.transport
        assert transport is not None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest and not transport.is_closing():
            protocol.data_received(rest)

    def eof_received(self) -> bool | None:
        if not self.done:
            self.refuse("closed before its PROXY header was complete", "truncated", abort=False)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.done = True

    def _timed_out(self) -> None:
        self.timer = None
        if not self.done:
            self.refuse(f"no complete PROXY header within {HEADER_TIMEOUT:g}s", "timeout")

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def refuse(self, reason: str, kind: str, abort: bool = True) -> None:
        """Close this connection: one log line with the peer and why, one counter."""
        self.done = True
        self._cancel_timer()
        _refused(self.ctx, self.peer, self.where, reason, kind)
        if abort and self.transport is not None:
            self.transport.abort()


def _refused(ctx: ConnectionContext, peer: str, where: str, reason: str, kind: str) -> None:
    """Count and log one refused connection of a `proxy_protocol` listener."""
    ctx.reject(f"proxy_protocol_{kind}")
    if kind == "untrusted":  # anyone can knock: summed up under a flood
        ctx.refusals.refused(f"proxy_protocol {kind}", log, "%s: refused on %s: %s", peer, where, reason)
    else:  # a trusted load balancer that misbehaves: every case is worth its line
        log.warning("%s: refused on %s: %s", peer, where, reason)


async def read_before_tls(ctx: ConnectionContext, sock: socket.socket, peer: Address,
                          where: str) -> tuple[bool, Address | None]:
    """The door of a TLS `proxy_protocol` listener: the PROXY header comes before the TLS
    handshake, so it is read off the raw socket, never a byte past it (the ClientHello stays
    for the TLS layer). Returns (admitted, the client's address or None for LOCAL/UNKNOWN);
    on refusal the caller closes the socket. Same rules, lines and counters as ProxyGate."""
    shown = f"{peer[0]}:{peer[1]}"
    if not is_trusted(peer[0], ctx.config.proxy_protocol_trusted):
        _refused(ctx, shown, where, "not in proxy_protocol_trusted", "untrusted")
        return False, None
    reader = ProxyHeaderReader()
    try:
        async with asyncio.timeout(HEADER_TIMEOUT):
            while True:
                data = await ctx.loop.sock_recv(sock, reader.wanted())
                if not data:
                    _refused(ctx, shown, where, "closed before its PROXY header was complete", "truncated")
                    return False, None
                result = reader.receive_data(data)
                if result is not None:
                    break
    except TimeoutError:
        _refused(ctx, shown, where, f"no complete PROXY header within {HEADER_TIMEOUT:g}s", "timeout")
        return False, None
    except ProxyProtocolError as e:
        _refused(ctx, shown, where, f"bad PROXY header: {e}", "bad_header")
        return False, None
    except OSError as e:
        log.log(srvlog.INFO, "%s: left on %s before its PROXY header: %s", shown, where, e)
        return False, None
    header = result[0]
    client = f"{header.source[0]}:{header.source[1]}" if header.source is not None else \
        "the peer itself (" + ("LOCAL" if header.version == 2 else "UNKNOWN") + ")"
    log.log(srvlog.INFO, "%s: PROXY v%d on %s: client %s", shown, header.version, where, client)
    return True, header.source
