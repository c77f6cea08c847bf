#!/usr/bin/env python3
"""Load client for scripts/bench: many RTMP / HTTP-FLV players (and a publisher) in one process.

One asyncio (uvloop) loop, one socket per player. Each RTMP player does the handshake,
``connect``, ``createStream`` and ``play`` with srv's sans-I/O ClientSession; once the server
says ``NetStream.Play.Start`` the player stops parsing and only counts bytes, reading into one
shared buffer (``asyncio.BufferedProtocol``: no allocation per read). Parsing 4 Gb/s in Python
would make the load client the bottleneck; counting does not.

What is counted (``Player.bytes``): every TCP payload byte received after Play.Start (RTMP) or
after the HTTP response header (HTTP-FLV). For RTMP that is media payload plus chunk headers
and the odd control message: chunk headers cost ~1 byte per chunk plus a 12-byte header per
message (a few hundred bytes/s at 2 Mb/s, < 0.2%). For HTTP-FLV it is FLV tag headers + payloads
(+15 bytes per tag, ~0.3%). The bench divides by the source's media payload rate, so a player
that gets everything shows ~1.00.

Acknowledgements: nginx-rtmp and SRS stop sending to a client that does not acknowledge, so a
counting player sends an RTMP Acknowledgement (type 3, total bytes received, handshake included)
every time the server's Window Acknowledgement Size worth of bytes has arrived.

Latency: ``Publisher`` publishes an FLV file itself (paced by tag timestamps, looped) and
remembers when it wrote each video message; ``TimedProbe`` players match the video payloads they
receive against that table and time each three ways: the kernel's arrival stamp of the read
(``SO_TIMESTAMPNS``), when their loop got to the socket, and when the message was parsed, each
minus the publisher's write (``CLOCK_MONOTONIC``: one clock for every process). scripts/bench
runs them in a process of their own (``--probe-publish``) and, for comparison, inside its load
client. Messages sent before the probe's Play.Start (GOP cache) are not counted.

Use as a library (scripts/bench) or from the command line::

    scripts/loadclient.py rtmp://127.0.0.1:1935/live/s -n 100 -t 10
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import socket
import ssl
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import urlsplit

_TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TOP not in sys.path:
    sys.path.insert(0, _TOP)

from srv.media.flv import read_flv_file  # noqa: E402
from srv.rtmp import events as ev  # noqa: E402
from srv.rtmp.chunk import encode  # noqa: E402
from srv.rtmp.client import ClientSession  # noqa: E402
from srv.rtmp.messages import Message, MessageType, ack_message  # noqa: E402

#: One receive buffer shared by every counting socket (single thread: nobody reads it).
_READ_SIZE = 256 * 1024
_SHARED = memoryview(bytearray(_READ_SIZE))
_CSID_PROTOCOL = 2
#: SO_RCVLOWAT of counting sockets (0: wake up on every segment).
COUNTING_RCVLOWAT = 32 * 1024


def latency_key(payload: bytes) -> tuple[int, bytes]:
    """What identifies one video message end to end (servers relay payloads unchanged)."""
    return len(payload), payload[-24:]


@dataclass(frozen=True)
class RtmpUrl:
    host: str
    port: int
    app: str
    stream: str
    tc_url: str

    @classmethod
    def parse(cls, url: str) -> RtmpUrl:
        u = urlsplit(url)
        path = u.path.lstrip("/")
        app, _, stream = path.rpartition("/")
        if u.query:
            stream += "?" + u.query
        port = u.port or 1935
        host = u.hostname or "127.0.0.1"
        return cls(host, port, app, stream, f"rtmp://{host}:{port}/{app}")


class Player(asyncio.BufferedProtocol):
    """Base: a socket that counts what it receives once the stream has started."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.counting = False
        self.bytes = 0  # counted bytes (see module docstring)
        self.total = 0  # every byte received on the socket
        self.failed = ""
        self.closed = False
        self.started_at = 0.0
        self.ready = asyncio.get_running_loop().create_future()
        self.lowat = COUNTING_RCVLOWAT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _SHARED

    def _start_counting(self) -> None:
        self.counting = True
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None and self.lowat:
            # wake up once per `lowat` bytes, not once per server send: nginx-rtmp sends each
            # message at once, and ~70 wake-ups/s/player would make this client the bottleneck
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, self.lowat)
        self.started_at = time.monotonic()
        if not self.ready.done():
            self.ready.set_result(True)

    def _fail(self, reason: str) -> None:
        self.failed = self.failed or reason
        if not self.ready.done():
            self.ready.set_result(False)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.failed = self.failed or f"closed before start ({exc})"
            self.ready.set_result(False)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()


class RtmpPlayer(Player):
    """RTMP play session; with ``parse=True`` it parses everything (counts media payload bytes)."""

    def __init__(self, url: RtmpUrl, parse: bool = False):
        super().__init__()
        self.url = url
        self.parse = parse
        if parse:
            self.lowat = 0
        self.session = ClientSession(url.app, url.tc_url)
        self.window = 0
        self.acked = 0
        self.media_bytes = 0  # parse=True: audio/video payload bytes after Play.Start

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.session.start()
        self.transport.write(self.session.data_to_send())  # type: ignore[union-attr]

    def buffer_updated(self, nbytes: int) -> None:
        self.total += nbytes
        if self.counting and not self.parse:
            self.bytes += nbytes
            if self.window and self.total - self.acked >= self.window:
                self.acked = self.total
                self.transport.write(  # type: ignore[union-attr]
                    encode(ack_message(self.total & 0xFFFFFFFF), 128, _CSID_PROTOCOL)
                )
            return
        if self.counting:
            self.bytes += nbytes
        try:
            events = self.session.receive_data(bytes(_SHARED[:nbytes]))
        except Exception as e:  # a protocol error is a failed player, not a crashed bench
            self._fail(f"protocol error: {e}")
            return
        media_before = self.media_bytes
        for e in events:
            self._event(e)
        if not self.parse:
            # the read that carried Play.Start may carry media too (GOP cache): count its payload
            self.bytes += self.media_bytes - media_before
        out = self.session.data_to_send()
        if out and not self.closed:
            self.transport.write(out)  # type: ignore[union-attr]

    def _event(self, e: ev.Event) -> None:
        s = self.session
        if isinstance(e, ev.Connected):
            s.create_stream()
        elif isinstance(e, ev.StreamCreated):
            s.play(self.url.stream)
        elif isinstance(e, ev.StatusEvent):
            if e.code == "NetStream.Play.Start" and not self.counting:
                # the session's own ack bookkeeping continues in counting mode (private state:
                # ClientSession has no public accessor for the peer's window)
                self.window = s._peer_window
                self.acked = s._acked
                self.total = s.bytes_received
                self._start_counting()
            elif e.level == "error":
                self._fail(f"{e.code}: {e.description}")
        elif isinstance(e, ev.ConnectFailed):
            self._fail(f"connect failed: {e}")
        elif isinstance(e, ev.MediaMessage) and self.counting:
            msg = e.message
            if msg.type_id in (MessageType.AUDIO, MessageType.VIDEO):
                self.media_bytes += len(msg.payload)


class FlvPlayer(Player):
    """HTTP-FLV: GET, skip the response header, count the body."""

    def __init__(self, url: str) -> None:
        super().__init__()
        u = urlsplit(url)
        self.path = u.path + (f"?{u.query}" if u.query else "")
        self.host = u.netloc
        self.header = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        req = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: srv-bench\r\n\r\n"
        self.transport.write(req.encode())  # type: ignore[union-attr]

    def buffer_updated(self, nbytes: int) -> None:
        self.total += nbytes
        if self.counting:
            self.bytes += nbytes
            return
        self.header += bytes(_SHARED[:nbytes])
        end = self.header.find(b"\r\n\r\n")
        if end < 0:
            if len(self.header) > 16384:
                self._fail("no end of HTTP header")
            return
        status = self.header.split(b"\r\n", 1)[0]
        if b" 200" not in status:
            self._fail(status.decode("latin-1"))
            return
        self._start_counting()
        self.bytes = len(self.header) - end - 4
        self.header = b""


def publish_step(e: ev.Event, session: ClientSession, stream: str) -> TypeGuard[ev.StatusEvent]:
    """Take a publisher's session one step towards publishing `stream`; True for a status."""
    if isinstance(e, ev.Connected):
        session.release_stream(stream)
        session.fc_publish(stream)
        session.create_stream()
    elif isinstance(e, ev.StreamCreated):
        session.publish(stream)
    return isinstance(e, ev.StatusEvent)


class PublishingProtocol(asyncio.Protocol):
    """What both publishers share: TCP_NODELAY (and a send buffer size), the session's bytes out."""

    session: ClientSession
    transport: asyncio.Transport | None
    bytes_sent: int
    sndbuf = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        self.session.start()
        self._flush()

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
            self.bytes_sent += len(out)


class Publisher(PublishingProtocol):
    """Publishes an FLV file in real time (looped), remembering when each video message left."""

    def __init__(self, url: RtmpUrl, flv_path: str) -> None:
        self.url = url
        self.tags = [t for t in read_flv_file(flv_path)]
        self.session = ClientSession(url.app, url.tc_url)
        self.transport: asyncio.Transport | None = None
        self.sent: dict[tuple[int, bytes], float] = {}
        self.started = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.bytes_sent = 0

    def data_received(self, data: bytes) -> None:
        for e in self.session.receive_data(data):
            if publish_step(e, self.session, self.url.stream):
                if e.code == "NetStream.Publish.Start" and self.task is None:
                    self.task = asyncio.ensure_future(self._pump())
                    if not self.started.done():
                        self.started.set_result(True)
                elif e.level == "error" and not self.started.done():
                    self.started.set_exception(RuntimeError(f"publish: {e.code} {e.description}"))
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.started.done():
            self.started.set_exception(RuntimeError(f"publisher connection lost: {exc}"))
        if self.task is not None:
            self.task.cancel()

    async def _pump(self) -> None:
        """Send the tags at their timestamps; sequence headers and metadata only once."""
        sid = self.session.stream_id or 1
        duration = self.tags[-1].timestamp + 40
        t0 = time.monotonic()
        loop_no = 0
        while True:
            offset = loop_no * duration
            for tag in self.tags:
                is_header = tag.tag_type == 18 or (len(tag.payload) > 1 and tag.payload[1] == 0
                                                   and tag.tag_type in (8, 9))
                if loop_no and is_header:
                    continue
                ts = tag.timestamp + offset
                delay = t0 + ts / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload = tag.payload
                if tag.tag_type == 18:
                    # ffmpeg's FLV has "onMetaData"; publishers send "@setDataFrame" + it
                    from srv.rtmp import amf0

                    payload = amf0.encode("@setDataFrame") + payload
                self.session.send_media(Message(tag.tag_type, sid, ts, payload))
                self._flush()
                if tag.tag_type == 9 and not is_header:
                    self.sent[latency_key(payload)] = time.monotonic()
            loop_no += 1

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()


#: Chunk size of the ingest publishers (announced with Set Chunk Size after connect).
INGEST_CHUNK = 4096
#: SO_SNDBUF of an ingest publisher: small, so a server that reads too slowly shows up as bytes
#: waiting in the client (lag), not hidden in a multi-megabyte kernel buffer.
INGEST_SNDBUF = 64 * 1024
_CSID = {8: 4, 9: 6, 18: 5}


class IngestFleet:
    """Many publishers of one FLV file, each in real time, from one process (the ingest bench).

    The file is chunked once per loop of it (message stream 1, fmt 0 headers, INGEST_CHUNK
    chunks) and every publisher writes the same bytes at their times: after its handshake a
    publisher costs the client one `write` per tick, so the client is not the bottleneck.
    A publisher's lag = bytes it could not hand to the kernel yet / the file's byte rate: a
    server that keeps it at real time keeps that near 0.
    """

    def __init__(self, flv_path: str, tick: float = 0.01) -> None:
        self.tags = [t for t in read_flv_file(flv_path)]
        # the next loop starts after the file's last timestamp (audio may end after the last tag)
        self.duration_ms = max(t.timestamp for t in self.tags) + 40
        self.tick = tick
        self.publishers: list[IngestPublisher] = []
        self._loops: dict[int, list[tuple[float, bytes]]] = {}
        self.byte_rate = sum(len(b) for _, b in self.chunks(1)) / (self.duration_ms / 1000)
        self.task: asyncio.Task[None] | None = None

    def chunks(self, loop_no: int) -> list[tuple[float, bytes]]:
        """(seconds from the publish start, chunked bytes) of every message of one loop."""
        got = self._loops.get(loop_no)
        if got is None:
            from srv.rtmp import amf0

            got = []
            offset = loop_no * self.duration_ms
            for tag in self.tags:
                if tag.tag_type not in _CSID:
                    continue
                is_header = tag.tag_type == 18 or (len(tag.payload) > 1 and tag.payload[1] == 0)
                if loop_no and is_header:
                    continue
                payload = amf0.encode("@setDataFrame") + tag.payload if tag.tag_type == 18 else tag.payload
                ts = tag.timestamp + offset
                got.append((ts / 1000, encode(Message(tag.tag_type, 1, ts, payload), INGEST_CHUNK,
                                              _CSID[tag.tag_type])))
            self._loops = {n: c for n, c in self._loops.items() if n >= loop_no - 1}
            self._loops[loop_no] = got
        return got

    async def add(self, urls: list[str], timeout: float = 30.0) -> None:
        """Connect and publish one stream per URL; return once all publish (raise otherwise)."""
        loop = asyncio.get_running_loop()
        new = []
        for u in urls:
            url = RtmpUrl.parse(u)
            _, p = await loop.create_connection(functools.partial(IngestPublisher, self, url), url.host, url.port)
            new.append(p)
        await asyncio.wait_for(asyncio.gather(*(p.started for p in new)), timeout)
        self.publishers += new
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            for p in self.publishers:
                p.pump(now)
            await asyncio.sleep(self.tick)

    def lag(self) -> list[float]:
        """Each publisher's worst lag (seconds) since the last call, and start counting again."""
        out = [p.max_lag for p in self.publishers]
        for p in self.publishers:
            p.max_lag = 0.0
        return out

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for p in self.publishers:
            p.close()


class IngestPublisher(PublishingProtocol):
    """One publisher of an IngestFleet: RTMP up to Publish.Start, then the fleet's bytes."""

    sndbuf = INGEST_SNDBUF

    def __init__(self, fleet: IngestFleet, url: RtmpUrl) -> None:
        self.fleet = fleet
        self.url = url
        self.session = ClientSession(url.app, url.tc_url, out_chunk_size=INGEST_CHUNK)
        self.transport: asyncio.Transport | None = None
        self.started = asyncio.get_running_loop().create_future()
        self.t0 = 0.0
        self.loop_no = 0
        self.index = 0
        self.bytes_sent = 0
        self.max_lag = 0.0
        self.failed = ""

    def data_received(self, data: bytes) -> None:
        for e in self.session.receive_data(data):
            if publish_step(e, self.session, self.url.stream) and not self.started.done():
                if e.code == "NetStream.Publish.Start":
                    if self.session.stream_id != 1:
                        self.started.set_exception(RuntimeError(f"stream id {self.session.stream_id}, not 1"))
                        return
                    self.t0 = time.monotonic()
                    self.started.set_result(True)
                elif e.level == "error":
                    self.started.set_exception(RuntimeError(f"publish: {e.code} {e.description}"))
        self._flush()  # acknowledgements, pongs

    def pump(self, now: float) -> None:
        """Write every message due by `now`, in one write."""
        if not self.t0 or self.transport is None or self.transport.is_closing():
            return
        fleet = self.fleet
        elapsed = now - self.t0
        chunks = fleet.chunks(self.loop_no)
        out = []
        while True:
            while self.index < len(chunks) and chunks[self.index][0] <= elapsed:
                out.append(chunks[self.index][1])
                self.index += 1
            if self.index < len(chunks):
                break
            self.loop_no += 1
            self.index = 0
            chunks = fleet.chunks(self.loop_no)
        if out:
            data = b"".join(out)
            self.transport.write(data)
            self.bytes_sent += len(data)
        lag = self.transport.get_write_buffer_size() / fleet.byte_rate
        if lag > self.max_lag:
            self.max_lag = lag

    def connection_lost(self, exc: Exception | None) -> None:
        self.failed = f"connection lost: {exc}" if exc else "closed by the server"
        if not self.started.done():
            self.started.set_exception(RuntimeError(f"publisher {self.failed}"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); Python's socket module lacks it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


class TimedProbe:
    """A parse-everything RTMP player that times each video message three ways.

    It reads its socket itself (``loop.add_reader`` + ``recvmsg``) so that, for each read, it
    knows (a) when the kernel received the last segment of it (``SO_TIMESTAMPNS``, stamped as the
    segment crossed loopback: what the server alone decides), (b) when this process's loop got
    round to the socket (``woke``), and (c) when the message was parsed (``parsed``: what a player
    would see). Latency of a video message = each of these minus the publisher's write time
    (``CLOCK_MONOTONIC`` is one clock for every process, so the publisher may be another process's
    table as long as it lives in this one). ``parsed - kernel`` is what this process's own loop
    added: with hundreds of busy sockets in the same loop (the load client) that is not the
    server's.
    """

    def __init__(self, url: RtmpUrl, sent: dict[tuple[int, bytes], float]) -> None:
        self.url = url
        self.sent = sent
        self.session = ClientSession(url.app, url.tc_url)
        self.sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at = 0.0
        self.counting = False
        self.failed = ""
        self.closed = False
        self.pending = b""
        #: per timed video message: (kernel, woke, parsed) latency in seconds
        self.samples: list[tuple[float, float, float]] = []
        self.ready: asyncio.Future[bool] | None = None

    async def start(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        sock = self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        await loop.sock_connect(sock, (self.url.host, self.url.port))
        self.session.start()
        loop.add_reader(sock.fileno(), self._readable)
        self._send()

    def _send(self) -> None:
        self.pending += self.session.data_to_send()
        if self.pending and self.sock is not None and not self.closed:
            try:
                n = self.sock.send(self.pending)
            except BlockingIOError:
                n = 0
            except OSError as e:
                self._close(f"send: {e}")
                return
            self.pending = self.pending[n:]  # the rest goes with the next read's answer

    def _readable(self) -> None:
        woke = time.monotonic()
        assert self.sock is not None
        try:
            data, anc, _, _ = self.sock.recvmsg(_READ_SIZE, socket.CMSG_SPACE(_TIMESPEC.size))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._close(f"recv: {e}")
            return
        if not data:
            self._close("closed by the server")
            return
        kernel = woke
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack(value[:_TIMESPEC.size])
                # wall clock -> monotonic, at this moment (the two differ by a constant here)
                kernel = sec + nsec / 1e9 - (time.time() - time.monotonic())
        try:
            events = self.session.receive_data(data)
        except Exception as e:
            self._close(f"protocol error: {e}")
            return
        videos = []
        for e in events:
            if isinstance(e, ev.StatusEvent):
                if e.code == "NetStream.Play.Start" and not self.counting:
                    self.counting = True
                    self.started_at = time.monotonic()
                    if self.ready is not None and not self.ready.done():
                        self.ready.set_result(True)
                elif e.level == "error":
                    self._close(f"{e.code}: {e.description}")
            elif isinstance(e, ev.Connected):
                self.session.create_stream()
            elif isinstance(e, ev.StreamCreated):
                self.session.play(self.url.stream)
            elif isinstance(e, ev.ConnectFailed):
                self._close(f"connect failed: {e}")
            elif isinstance(e, ev.MediaMessage) and self.counting and e.message.type_id == MessageType.VIDEO:
                videos.append(e.message.payload)
        parsed = time.monotonic()
        for payload in videos:
            sent = self.sent.get(latency_key(payload))
            if sent is not None and sent >= self.started_at:
                self.samples.append((kernel - sent, woke - sent, parsed - sent))
        self._send()

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.failed = self.failed or reason
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(False)
        if self.sock is not None:
            if self.loop is not None:
                self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def close(self) -> None:
        self._close("closed")


def latency_figures(probes: list[TimedProbe], prefix: str = "latency_ms") -> dict[str, float]:
    """p50/p95/max in ms of the probes' samples: `<prefix>_*` (parsed, what a player sees),
    `<prefix>_kernel_*` (the kernel's arrival stamp: the server and loopback alone) and the
    sample count (`latency_samples` for the prefix `latency_ms`)."""
    out: dict[str, float] = {}
    for i, kind in ((2, ""), (0, "_kernel")):
        xs = sorted(s[i] for p in probes for s in p.samples)
        if xs:
            out[f"{prefix}{kind}_p50"] = round(xs[len(xs) // 2] * 1000, 1)
            out[f"{prefix}{kind}_p95"] = round(xs[int(len(xs) * 0.95)] * 1000, 1)
            out[f"{prefix}{kind}_max"] = round(xs[-1] * 1000, 1)
    if probes:
        out[f"{prefix.replace('_ms', '')}_samples"] = sum(len(p.samples) for p in probes)
    return out


async def open_latency_probes(publish_url: str, play_url: str, n: int, flv_path: str,
                              ) -> tuple[Publisher, list[TimedProbe]]:
    """Publish `flv_path` to `publish_url` (timing each video message) and play it with n
    TimedProbes; return once the probes play."""
    loop = asyncio.get_running_loop()
    to = RtmpUrl.parse(publish_url)
    _, pub = await loop.create_connection(lambda: Publisher(to, flv_path), to.host, to.port)
    await asyncio.wait_for(pub.started, 10)
    await asyncio.sleep(1)
    url = RtmpUrl.parse(play_url)
    probes = [TimedProbe(url, pub.sent) for _ in range(n)]
    for p in probes:
        await p.start()
    await asyncio.wait_for(asyncio.gather(*(p.ready for p in probes if p.ready)), 10)
    return pub, probes


async def _probe_main(args: argparse.Namespace) -> None:
    """`--probe-publish`: the latency probes alone in this process, driven over stdin/stdout
    (one JSON line per command: "clear" forgets the samples, "report" prints the figures,
    "samples" the raw (kernel, woke, parsed) seconds, EOF ends). scripts/bench runs it beside the
    load client so that the latency is timed by a process that does nothing else."""
    pub, probes = await open_latency_probes(args.probe_publish, args.url, args.players, args.flv)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": sum(1 for p in probes if p.counting)}), flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line:
            break
        if line == "clear":
            for p in probes:
                p.samples.clear()
            out: dict[str, Any] = {"cleared": True}
        elif line == "samples":
            out = {"samples": [s for p in probes for s in p.samples]}
        else:
            out = latency_figures(probes)
            out["failed"] = [p.failed for p in probes if p.failed]
        print(json.dumps(out), flush=True)
    for p in probes:
        p.close()
    pub.close()


def _insecure_tls() -> ssl.SSLContext:
    """One client context for every TLS player (the bench's self-signed certificate)."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
        _TLS.check_hostname = False
        _TLS.verify_mode = ssl.CERT_NONE
    return _TLS


_TLS: ssl.SSLContext | None = None


@dataclass
class LoadClient:
    """A set of players against one server; grows by ``add``, measured by ``window``."""

    rtmp_url: str
    flv_url: str | None = None
    rtmps_url: str | None = None  # protocol "rtmps": RTMP over TLS, certificate not checked
    players: list[Player] = field(default_factory=list)
    connect_batch: int = 50

    async def add(self, n: int, protocol: str = "rtmp", timeout: float = 30.0) -> int:
        """Open n more players, `connect_batch` at a time; return how many reached playing."""
        loop = asyncio.get_running_loop()
        new: list[Player] = []
        for i in range(0, n, self.connect_batch):
            batch = min(self.connect_batch, n - i)
            coros = [self._open(loop, protocol) for _ in range(batch)]
            for r in await asyncio.gather(*coros, return_exceptions=True):
                if isinstance(r, Player):
                    new.append(r)
        self.players.extend(new)
        if new:
            await asyncio.wait([asyncio.ensure_future(p.ready) for p in new], timeout=timeout)
        return sum(1 for p in new if p.counting and not p.closed)

    async def _open(self, loop: asyncio.AbstractEventLoop, protocol: str) -> Player:
        if protocol == "flv":
            assert self.flv_url
            u = urlsplit(self.flv_url)
            _, p = await loop.create_connection(
                lambda: FlvPlayer(self.flv_url or ""), u.hostname, u.port or 80
            )
            return p
        if protocol == "rtmps":
            assert self.rtmps_url
            url = RtmpUrl.parse(self.rtmps_url)
            _, p = await loop.create_connection(lambda: RtmpPlayer(url), url.host, url.port,
                                                ssl=_insecure_tls(), server_hostname=url.host)
            return p
        url = RtmpUrl.parse(self.rtmp_url)
        _, p = await loop.create_connection(lambda: RtmpPlayer(url), url.host, url.port)
        return p

    def alive(self) -> list[Player]:
        return [p for p in self.players if p.counting and not p.closed]

    def snapshot(self) -> dict[int, int]:
        return {id(p): p.bytes for p in self.players}

    async def window(self, seconds: float) -> dict[str, Any]:
        """Count what every player receives during `seconds`; also this process's own CPU."""
        before = self.snapshot()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        per = []
        dropped = 0
        for p in self.players:
            if not p.counting:
                continue
            if p.closed:
                dropped += 1
            per.append(p.bytes - before.get(id(p), p.bytes))
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        return {
            "seconds": elapsed,
            "players": len(per),
            "dropped": dropped,
            "bytes": sum(per),
            "per_player_bytes": per,
            "client_cpu": cpu / elapsed,
        }

    def close(self) -> None:
        for p in self.players:
            p.close()
        self.players.clear()


def summarize(per: list[int], seconds: float, source_bps: float) -> dict[str, float]:
    """Delivery of a window as ratios of the source's media rate (bytes/s)."""
    if not per:
        return {"mean": 0.0, "p5": 0.0, "min": 0.0}
    rates = sorted(b / seconds / source_bps for b in per)
    return {
        "mean": statistics.fmean(rates),
        "p5": rates[max(0, int(len(rates) * 0.05) - 1)] if len(rates) > 1 else rates[0],
        "min": rates[0],
    }


def install_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


async def _main(args: argparse.Namespace) -> None:
    lc = LoadClient(args.url if args.url.startswith("rtmp") else "", args.url)
    proto = "rtmp" if args.url.startswith("rtmp") else "flv"
    ok = await lc.add(args.players, proto)
    print(f"{ok}/{args.players} players started", file=sys.stderr)
    if args.report_every:  # a line a period, for a test that watches players across events
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            print(json.dumps({"t": time.monotonic() - t0, "alive": len(lc.alive()),
                              "bytes": [p.bytes for p in lc.players]}), flush=True)
            await asyncio.sleep(args.report_every)
        lc.close()
        return
    w = await lc.window(args.seconds)
    per = w.pop("per_player_bytes")
    w["min_bytes"] = min(per) if per else 0
    w["max_bytes"] = max(per) if per else 0
    w["mbps_per_player"] = (w["bytes"] / max(1, len(per))) * 8 / w["seconds"] / 1e6
    print(json.dumps(w))
    lc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="rtmp://host:port/app/stream or http://host:port/app/stream.flv")
    ap.add_argument("-n", "--players", type=int, default=10)
    ap.add_argument("-t", "--seconds", type=float, default=10.0)
    ap.add_argument("--report-every", type=float, default=0.0,
                    help="print {t, alive, bytes per player} as a JSON line this often (seconds) "
                         "until --seconds are over, instead of one window's summary")
    ap.add_argument("--probe-publish", metavar="RTMP_URL",
                    help="latency probe mode: publish --flv to this URL, play `url` with -n timing "
                         "probes, answer \"clear\" / \"report\" / \"samples\" lines on stdin with JSON lines")
    ap.add_argument("--flv", help="the FLV the probe mode publishes (looped, paced by its timestamps)")
    args = ap.parse_args()
    install_uvloop()
    asyncio.run(_probe_main(args) if args.probe_publish else _main(args))


if __name__ == "__main__":
    main()
