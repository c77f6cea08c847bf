"""What ingest costs: CPU seconds per GB a publisher sends (run through scripts/ingest-cost).

Two measurements:

* ``session`` (default, in one process, no sockets): the bench's source FLV, chunked as a
  publisher sends it (``--chunk-size``), is fed in ``--read``-byte pieces (what one socket read
  returns) through a publishing ``ServerSession`` into a ``LiveSource`` with no players: the
  whole per-byte path of a publisher in a worker except the syscalls. Repeated ``--repeat``
  times; prints CPU-s per GB of chunk-stream bytes.
* ``--decoder``: the chunk decoder alone, at any chunk size (1 shows the per-chunk cost).
* ``--server N``: the real server (one worker) with N publishers sending AAC-like audio in
  ``--chunk-size``-byte chunks as fast as the server takes it for ``--seconds``; prints the
  worker's CPU share and whether the server kept or refused them.

The hot path is the compiled one when the bootstrap built it for these sources (srv/accel.py),
the pure Python with ``SRV_ACCEL=off``; the session line says which, and the best pass's CPU
time per message.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ for bench_lib

from bench_lib.run import SOURCE, make_source  # noqa: E402
from srv.accel import status as hot_path  # noqa: E402
from srv.app.source import LiveSource  # noqa: E402
from srv.conf.model import VhostConfig  # noqa: E402
from srv.media.flv import read_flv_file  # noqa: E402
from srv.rtmp import events as ev  # noqa: E402
from srv.rtmp.chunk import CSID_AUDIO, CSID_DATA, CSID_PROTOCOL, CSID_VIDEO, ChunkDecoder, encode, encode_message  # noqa: E402
from srv.rtmp.client import ClientSession  # noqa: E402
from srv.rtmp.messages import Message, set_chunk_size_message  # noqa: E402
from srv.rtmp.session import ServerSession  # noqa: E402

TOP = Path(__file__).resolve().parents[1]
CSID = {8: CSID_AUDIO, 9: CSID_VIDEO, 18: CSID_DATA}


def pump(client: ClientSession, server: ServerSession) -> list[ev.Event]:
    events: list[ev.Event] = []
    for _ in range(50):
        up, down = client.data_to_send(), server.data_to_send()
        if not up and not down:
            break
        if up:
            events += server.receive_data(up)
        if down:
            client.receive_data(down)
    return events


def publishing_session() -> ServerSession:
    """A ServerSession that has accepted connect and publish (setup is not measured)."""
    client = ClientSession("live", "rtmp://127.0.0.1/live")
    server = ServerSession()
    client.start()
    (request,) = pump(client, server)
    assert isinstance(request, ev.ConnectRequest)
    server.accept_connect(request)
    pump(client, server)
    client.create_stream()
    pump(client, server)
    client.publish("s")
    (publish,) = pump(client, server)
    assert isinstance(publish, ev.PublishRequest)
    server.accept_publish(publish.stream_id, "s")
    return server


def media_wire(chunk_size: int, announce: bool = True) -> bytes:
    """The source FLV's tags as one publisher's chunk stream [after its Set Chunk Size]."""
    head = encode(set_chunk_size_message(chunk_size), 128, CSID_PROTOCOL) if announce else b""
    return head + b"".join(
        encode_message(t.tag_type, 1, t.timestamp, bytes(t.payload), chunk_size, CSID.get(t.tag_type, 5))
        for t in read_flv_file(SOURCE) if t.tag_type in CSID
    )


def pieces(wire: bytes, read: int) -> list[bytes]:
    return [wire[i : i + read] for i in range(0, len(wire), read)]


def tick_reads(chunk_size: int, tick_ms: int) -> list[bytes]:
    """The source's chunk stream cut where a real-time publisher writing every `tick_ms` ms
    (the bench's IngestFleet) cuts it: one read per tick that has messages."""
    out: dict[int, list[bytes]] = {-1: [encode(set_chunk_size_message(chunk_size), 128, CSID_PROTOCOL)]}
    for t in read_flv_file(SOURCE):
        if t.tag_type in CSID:
            wire = encode_message(t.tag_type, 1, t.timestamp, bytes(t.payload), chunk_size, CSID[t.tag_type])
            out.setdefault(t.timestamp // tick_ms, []).append(wire)
    return [b"".join(out[k]) for k in sorted(out)]


def run_session(args: argparse.Namespace) -> None:
    reads = tick_reads(args.chunk_size, args.ticks) if args.ticks else pieces(media_wire(args.chunk_size), args.read)
    wire = b"".join(reads)
    messages = sum(1 for t in read_flv_file(SOURCE) if t.tag_type in CSID)
    loop = asyncio.new_event_loop()
    cpu = 0.0
    best = float("inf")
    for i in range(args.repeat):
        server = publishing_session()
        source = LiveSource(f"__defaultVhost__/live/s{i}", VhostConfig(name="__defaultVhost__"), loop)
        on_message = source.on_message
        t0 = time.process_time()
        for data in reads:  # as the worker does: audio and video straight into the source
            for e in server.receive_data(data, on_message):
                if isinstance(e, ev.MediaMessage):  # media after another message in the same read
                    m = e.message
                    on_message(m.type_id, m.timestamp, m.payload)
        spent = time.process_time() - t0
        cpu += spent
        best = min(best, spent)
    gb = len(wire) * args.repeat / 1e9
    how = f"one read per {args.ticks} ms tick" if args.ticks else f"reads of {args.read} B"
    print(f"session: chunk size {args.chunk_size}, {how} ({len(reads)} reads, {len(wire) // len(reads)} B each), "
          f"{len(wire) * args.repeat / 1e6:.0f} MB in {cpu:.2f} CPU-s: {cpu / gb:.2f} CPU-s/GB; "
          f"best pass {best / messages * 1e6:.2f} us per message; {hot_path()}")


def run_decoder(args: argparse.Namespace) -> None:
    wire = media_wire(args.chunk_size, announce=False)
    reads = pieces(wire, args.read)
    cpu = 0.0
    for _ in range(args.repeat):
        decoder = ChunkDecoder()
        decoder.set_chunk_size(args.chunk_size)
        t0 = time.process_time()
        for data in reads:
            decoder.feed(data)
        cpu += time.process_time() - t0
    gb = len(wire) * args.repeat / 1e9
    print(f"decoder: chunk size {args.chunk_size}, reads of {args.read} B, "
          f"{len(wire) * args.repeat / 1e6:.0f} MB in {cpu:.2f} CPU-s: {cpu / gb:.2f} CPU-s/GB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def small_chunk_publisher(port: int, name: str, chunk_size: int, until: float) -> str:
    """Publish, then send 200-byte audio messages in `chunk_size`-byte chunks until `until`
    (the same 50 messages again and again: timestamps repeat, which the server accepts)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    session = ClientSession("live", f"rtmp://127.0.0.1:{port}/live", out_chunk_size=chunk_size)
    session.start()
    writer.write(session.data_to_send())
    sent = 0
    try:
        publishing = False
        while not publishing:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                return f"{name}: closed by the server before publishing"
            for e in session.receive_data(data):
                if isinstance(e, ev.Connected):
                    session.create_stream()
                elif isinstance(e, ev.StreamCreated):
                    session.publish(name)
                elif isinstance(e, ev.StatusEvent) and e.code == "NetStream.Publish.Start":
                    publishing = True
            writer.write(session.data_to_send())
        # chunked once, sent again and again: the client must not be the bottleneck
        out = b"".join(encode_message(8, 1, i * 23, b"\xaf\x01" + b"a" * 198, chunk_size, CSID_AUDIO)
                       for i in range(50))
        while time.monotonic() < until:
            writer.write(out)
            sent += len(out)
            await writer.drain()
            if reader.at_eof():
                return f"{name}: closed by the server after {sent} bytes"
        return f"{name}: kept publishing, sent {sent / 1e6:.1f} MB"
    except (ConnectionError, OSError) as e:
        return f"{name}: closed by the server after {sent} bytes ({e.__class__.__name__})"
    finally:
        writer.close()


def run_server(args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "srs.conf"
        conf.write_text(f"listen {port};\nworkers 1;\ndaemon off;\nsrs_log_tank console;\n"
                        f"pid {tmp}/srs.pid;\nvhost __defaultVhost__ {{ }}\n")
        proc = subprocess.Popen([str(TOP / "objs" / "srs"), "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            cpu0 = sum(sum(p.cpu_times()[:2]) for p in tree)
            t0 = time.monotonic()

            async def go() -> list[str]:
                until = time.monotonic() + args.seconds
                return await asyncio.gather(*(
                    small_chunk_publisher(port, f"a{i}", args.chunk_size, until)
                    for i in range(args.server)))

            outcomes = asyncio.run(go())
            cpu = sum(sum(p.cpu_times()[:2]) for p in tree) - cpu0
            wall = time.monotonic() - t0
        finally:
            proc.terminate()
            proc.wait(15)
    print(f"server: {args.server} publishers, chunk size {args.chunk_size}: server CPU "
          f"{cpu:.2f} s in {wall:.1f} s ({100 * cpu / wall:.0f} % of a core)")
    for line in outcomes:
        print("  " + line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunk-size", type=int, default=4096, help="publisher's chunk size (ffmpeg: 4096)")
    p.add_argument("--read", type=int, default=16384, help="bytes per socket read")
    p.add_argument("--ticks", type=int, default=0, metavar="MS",
                   help="read what a real-time publisher writes every MS ms (the ingest bench: 10)")
    p.add_argument("--repeat", type=int, default=20, help="passes over the 10 s source")
    p.add_argument("--decoder", action="store_true", help="the chunk decoder alone")
    p.add_argument("--server", type=int, default=0, metavar="N", help="N small-chunk publishers against the real server")
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    if args.server:
        run_server(args)
        return
    make_source()
    (run_decoder if args.decoder else run_session)(args)


if __name__ == "__main__":
    main()
