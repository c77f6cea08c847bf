"""TLS for srv's listeners (RTMPS, HTTPS) and outgoing RTMPS, on the standard library's `ssl`.

A TLS listener runs its own accept loop on the worker's SO_REUSEPORT socket and hands each
accepted socket to `loop.connect_accepted_socket(..., ssl=...)` (uvloop's C TLS protocol), so:

- The handshake of every connection is bounded (`handshake_timeout`); a failed one (garbage, a
  plain RTMP or HTTP client on the TLS port, a half handshake, an unknown CA on the client's
  side) closes that socket only, counts `rejected:tls_handshake` and logs one line naming the
  client and the reason. The protocol (RTMP or HTTP session) is made only once the handshake is
  done, so it never sees a byte of TLS.
- Each accept takes the listener's *current* `SSLContext`: a reload swaps `listener.context`
  for one built from the files again (new certificate, same path: certbot's renewals), and
  sessions already running keep theirs. A context that fails to build leaves the old one.

Contexts are built from PEM files: `server_context(cert, key)`; forwarders dial with
`client_context(verify, ca)`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

log = logging.getLogger("srv.tls")

Address = tuple[str, int]
# reads what comes before the TLS handshake (a PROXY header): (admitted, the client's address)
Door = Callable[[socket.socket, Address, str], Awaitable[tuple[bool, Address | None]]]


class TlsError(Exception):
    """Certificate or key files that do not make a TLS context; the message names them."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context from PEM `cert` (chain) and `key` files; TLS 1.2 or newer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load certificate {cert} with key {key}: {_reason(e)}") from None
    return ctx


def client_context(verify: bool = True, ca: str | None = None) -> ssl.SSLContext:
    """A client context: the system's CAs (or `ca`), host names checked unless `verify` is off."""
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load CA file {ca}: {_reason(e)}") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        return e.reason or str(e)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def handshake_failure(e: BaseException) -> str:
    """Why a handshake failed, in a few words: `HTTP_REQUEST`, `WRONG_VERSION_NUMBER`, ..."""
    if isinstance(e, ConnectionAbortedError) and "taking longer" in str(e):
        return "handshake not completed in time"
    if isinstance(e, ssl.SSLError):
        return f"TLS error {e.reason or e}"
    if isinstance(e, ConnectionResetError | BrokenPipeError | EOFError):
        return "client left during the handshake"
    return _reason(e)


class TlsListener:
    """Accepts on `sock` and serves each connection with `factory()` once its TLS handshake is done.

    `close()` stops accepting (like `asyncio.Server.close`); sessions and handshakes under way go on.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, context: ssl.SSLContext,
                 factory: Callable[[Address | None], asyncio.Protocol], label: str,
                 handshake_timeout: Callable[[], float], on_failure: Callable[[str], None],
                 door: Door | None = None) -> None:
        self.loop = loop
        self.sock = sock
        self.context = context
        self.factory = factory  # the protocol for the client's (ip, port) (None: the peer's own)
        self.door = door  # a `proxy_protocol` listener: reads the PROXY header before TLS
        self.label = label  # "rtmps://0.0.0.0:1443", for log lines
        self.handshake_timeout = handshake_timeout  # seconds, read at each accept (reloadable)
        self.on_failure = on_failure  # counts a failed handshake by reason
        self.handshakes: set[asyncio.Task[None]] = set()
        self.task = loop.create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        while True:
            try:
                conn, addr = await self.loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and friends: the same listener tries again shortly
                log.error("%s: accept failed: %s", self.label, _reason(e))
                await asyncio.sleep(0.1)
                continue
            task = self.loop.create_task(self._handshake(conn, addr))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _handshake(self, conn: socket.socket, addr: object) -> None:
        client = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        source: Address | None = None
        if self.door is not None:
            if not isinstance(addr, tuple):
                conn.close()
                return
            admitted, source = await self.door(conn, (str(addr[0]), int(addr[1])), self.label)
            if not admitted:
                conn.close()
                return
            if source is not None:
                client = f"{source[0]}:{source[1]}"
        try:
            await self.loop.connect_accepted_socket(
                lambda: self.factory(source), conn, ssl=self.context,
                ssl_handshake_timeout=self.handshake_timeout())
        except Exception as e:  # ssl.SSLError, ConnectionError, timeouts: this client only
            why = handshake_failure(e)
            self.on_failure(why)
            log.warning("%s TLS handshake failed on %s: %s; closing", client, self.label, why)
            conn.close()

    def close(self) -> None:
        self.task.cancel()
        self.sock.close()
