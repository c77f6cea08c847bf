"""Listening sockets, owned by the master and handed to workers.

For every endpoint the master first probes that no other process holds the port (a bind without
SO_REUSEPORT fails if anyone has it), then creates one SO_REUSEPORT socket per worker slot. The
kernel spreads new connections over the slots' sockets. The master keeps every socket across
worker restarts and reloads, so a crashed or replaced worker never loses its accept queue.

What each socket serves (a `ListenSpec`) is a pure function of the config: `srv.conf.listen`.
The certificate files of TLS sockets are loaded here first, at start and at every reload, so a
missing or broken file stops the start (or fails the reload) with its name, before any worker.
"""

from __future__ import annotations

import errno
import socket

from srv.conf.listen import ListenError, ListenSpec
from srv.conf.model import Endpoint
from srv.net.tls import TlsError, server_context

BACKLOG = 1024


def _family(ep: Endpoint) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ep.host else socket.AF_INET


def probe_free(ep: Endpoint) -> None:
    """Fail if any other process holds the port (even one that uses SO_REUSEPORT itself)."""
    s = socket.socket(_family(ep), socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ep.host, ep.port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ListenError(f"listen {ep}: address already in use by another process") from None
        raise ListenError(f"listen {ep}: {e.strerror}") from None
    finally:
        s.close()


def open_reuseport(ep: Endpoint) -> socket.socket:
    s = socket.socket(_family(ep), socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((ep.host, ep.port))
        s.listen(BACKLOG)
    except OSError as e:
        s.close()
        raise ListenError(f"listen {ep}: {e.strerror}") from None
    s.setblocking(False)
    return s


class ListenerSet:
    """The master's sockets: `sockets[slot][spec]`."""

    def __init__(self) -> None:
        self.specs: list[ListenSpec] = []
        self.sockets: dict[int, dict[ListenSpec, socket.socket]] = {}

    def check_new(self, specs: list[ListenSpec]) -> None:
        """Probe the endpoints this set does not hold yet; load every TLS socket's files."""
        held = {s.endpoint for s in self.specs}
        for spec in specs:
            if spec.tls is not None:
                try:
                    server_context(*spec.tls)
                except TlsError as e:
                    raise ListenError(f"listen {spec}: {e}") from None
            if spec.endpoint not in held:
                probe_free(spec.endpoint)

    def set_specs(self, specs: list[ListenSpec], slots: list[int]) -> None:
        """Bring every slot to `specs`: close removed endpoints, open added ones."""
        self.check_new(specs)
        old = self.specs
        self.specs = list(specs)
        for slot in slots:
            self.ensure_slot(slot)
        for spec in old:
            if spec not in self.specs:
                for socks in self.sockets.values():
                    s = socks.pop(spec, None)
                    if s is not None:
                        s.close()

    def ensure_slot(self, slot: int) -> dict[ListenSpec, socket.socket]:
        socks = self.sockets.setdefault(slot, {})
        for spec in self.specs:
            if spec not in socks:
                # an endpoint whose services changed keeps its port: move the socket over
                same = next((k for k in socks if k.endpoint == spec.endpoint and k not in self.specs), None)
                socks[spec] = socks.pop(same) if same is not None else open_reuseport(spec.endpoint)
        return socks

    def drop_slot(self, slot: int) -> None:
        for s in self.sockets.pop(slot, {}).values():
            s.close()

    def all_fds(self) -> set[int]:
        return {s.fileno() for socks in self.sockets.values() for s in socks.values()}

    def close(self) -> None:
        for slot in list(self.sockets):
            self.drop_slot(slot)
