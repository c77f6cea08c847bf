"""What one client may make the server hold: field lengths, unfinished messages, chunk size.

Unit tests drive the sans-I/O decoder and session; one integration test sends each abuse to
the real server, which closes only that connection with a log line naming client and reason.
"""

from __future__ import annotations

import re
import socket
import struct
import tracemalloc

import pytest
from test_rtmp_robustness import closed_by_server, handshaken
from test_rtmp_session import connect

from srv.rtmp import amf0
from srv.rtmp.chunk import ChunkDecoder, encode_message
from srv.rtmp.errors import ProtocolError
from srv.rtmp.messages import Message
from srv.rtmp.session import MAX_FIELD_LENGTH, ClientSession, ServerSession

MiB = 2**20


def first_chunk(csid: int, length: int, chunk_size: int = 128) -> bytes:
    """The first chunk of a video message of `length` bytes (the rest never comes)."""
    return encode_message(9, 1, 0, bytes(chunk_size), chunk_size, csid)[:-chunk_size].replace(
        chunk_size.to_bytes(3, "big") + b"\x09", length.to_bytes(3, "big") + b"\x09", 1
    ) + bytes(chunk_size)


def test_unfinished_messages_beyond_the_budget_are_refused_before_buffering() -> None:
    decoder = ChunkDecoder(max_message_size=MiB)  # budget: one such message + 1 MiB
    assert decoder.feed(first_chunk(4, MiB) + first_chunk(5, MiB)) == []
    assert decoder.partial_bytes == 2 * MiB
    with pytest.raises(ProtocolError, match=r"unfinished messages would hold 3145728 bytes, "
                                            r"over the budget of 2097152"):
        decoder.feed(first_chunk(6, MiB))


def test_an_aborted_or_completed_message_gives_its_budget_back() -> None:
    decoder = ChunkDecoder(max_message_size=1000)
    msg = Message(9, 1, 0, b"m" * 1000)
    for _ in range(3000):  # far more than the budget if anything leaked
        assert decoder.feed(encode_message(9, 1, 0, msg.payload, 128, 6)) == [msg]
    assert decoder.partial_bytes == 0


@pytest.mark.parametrize("piece", [1, 4096, 1 << 20])
def test_tiny_chunks_of_a_message_accumulate_in_one_buffer(piece: int) -> None:
    """Chunk size 2 once cost ~20 bytes of memory per byte received (one object per piece)."""
    size = 256 * 1024
    wire = encode_message(9, 1, 0, bytes(range(256)) * (size // 256), 2, 6)[:-3]  # last chunk missing
    pieces = [wire[i : i + piece] for i in range(0, len(wire), piece)] if piece > 1 else None
    decoder = ChunkDecoder()
    decoder.set_chunk_size(2)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        if pieces is None:
            for i in range(len(wire)):
                assert decoder.feed(wire[i : i + 1]) == []
        else:
            for p in pieces:
                assert decoder.feed(p) == []
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.25 * size, f"{held} bytes held for {size - 2} bytes received"
    # and the message still completes, whole, with the trailing bytes of a next one kept
    last = encode_message(9, 1, 0, bytes(range(256)) * (size // 256), 2, 6)[-3:]
    assert decoder.feed(last + b"\x06") == [Message(9, 1, 0, bytes(range(256)) * (size // 256))]
    assert decoder.buffered == 1


def test_chunk_size_below_the_floor_is_refused() -> None:
    decoder = ChunkDecoder(min_chunk_size=128)
    decoder.feed(encode_message(1, 0, 0, struct.pack(">I", 128), 128, 2))
    with pytest.raises(ProtocolError, match="chunk size 127 below the floor of 128"):
        decoder.feed(encode_message(1, 0, 0, struct.pack(">I", 127), 128, 2))


def test_server_session_refuses_a_client_chunk_size_below_128() -> None:
    client = ClientSession("live", "rtmp://h/live", out_chunk_size=1)
    server = ServerSession()
    client.start()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    with pytest.raises(ProtocolError, match="chunk size 1 below the floor of 128"):
        server.receive_data(client.data_to_send())  # C2, Set Chunk Size 1, connect


def test_messages_above_1_mib_wait_for_an_accepted_publish() -> None:
    link = connect()
    client, server = link.client, link.server
    client.create_stream()
    link.pump()
    big = Message(9, 1, 0, b"\x17\x01" + bytes(2 * MiB))
    with pytest.raises(ProtocolError, match="message length 2097154 exceeds limit 1048576"):
        server.receive_data(encode_message(9, 1, 0, big.payload, 4096, 6)[:200])
    link = connect()
    client, server = link.client, link.server
    client.create_stream()
    link.pump()
    client.publish("s")
    link.pump()
    link.take("server")
    server.accept_publish(1, "s")
    link.pump()
    client.send_media(big)
    link.pump()
    assert [e.message for e in link.take("server")] == [big]  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", ["tcUrl", "app", "pageUrl", "swfUrl"])
def test_connect_fields_longer_than_the_limit_are_refused(field: str) -> None:
    long = "rtmp://h/live?x=" + "a" * MAX_FIELD_LENGTH
    extra = {field: long} if field not in ("tcUrl", "app") else {}
    client = ClientSession(long if field == "app" else "live",
                           long if field == "tcUrl" else "rtmp://h/live", connect_extra=extra)
    server = ServerSession()
    client.start()
    with pytest.raises(ProtocolError, match=f"connect {field} of {len(long)} characters "
                                            f"exceeds the limit of {MAX_FIELD_LENGTH}"):
        for _ in range(5):
            server.receive_data(client.data_to_send())
            client.receive_data(server.data_to_send())


@pytest.mark.parametrize("command", ["publish", "play"])
def test_stream_names_longer_than_the_limit_are_refused(command: str) -> None:
    link = connect()
    link.client.create_stream()
    link.pump()
    name = "s?token=" + "t" * MAX_FIELD_LENGTH
    getattr(link.client, command)(name)
    with pytest.raises(ProtocolError, match=f"{command} stream of {len(name)} characters"):
        link.pump()
    link = connect()
    link.client.create_stream()
    link.pump()
    getattr(link.client, command)("s?token=" + "t" * 3000)  # a long token still passes
    link.pump()
    assert len(link.take("server")) == 1


def connect_command(tc_url: str) -> bytes:
    obj = {"app": "live", "tcUrl": tc_url, "flashVer": "LNX 9,0,124,2"}
    return encode_message(20, 0, 0, amf0.encode("connect", 1.0, obj), 4096, 3)


def test_real_server_closes_each_abuse_with_a_log_line(srs_server) -> None:  # type: ignore[no-untyped-def]
    s = srs_server(workers=1)
    abuses: list[tuple[str, socket.socket]] = []
    sock = handshaken(s.port)  # a 7 KiB tcUrl (SRS and nginx-rtmp take a few KiB)
    sock.sendall(encode_message(1, 0, 0, struct.pack(">I", 4096), 128, 2)
                 + connect_command("rtmp://127.0.0.1/live?k=" + "x" * 7000))
    abuses.append(("connect tcUrl of 7024 characters exceeds the limit of 4096", sock))
    sock = handshaken(s.port)  # no connect, three messages of 1 MiB started: 3 MiB pinned
    sock.sendall(first_chunk(4, MiB) + first_chunk(5, MiB) + first_chunk(6, MiB))
    abuses.append(("over the budget of 2097152", sock))
    sock = handshaken(s.port)  # a 4 MiB message before publish
    sock.sendall(first_chunk(4, 4 * MiB))
    abuses.append(("message length 4194304 exceeds limit 1048576", sock))
    sock = handshaken(s.port)  # 1-byte chunks
    sock.sendall(encode_message(1, 0, 0, struct.pack(">I", 1), 128, 2))
    abuses.append(("chunk size 1 below the floor of 128", sock))
    for reason, sock in abuses:
        assert closed_by_server(sock), f"{reason}: connection kept"
    log = s.log_text()
    for reason, _ in abuses:
        assert re.search(r"\[Warn\]\[w\d\]\[\d+\]\[[\d-]+\] 127\.0\.0\.1:\d+ protocol error: .*"
                         + re.escape(reason) + ".*; closing", log), reason


def test_media_held_while_a_publish_is_decided_is_bounded_in_bytes(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """Media that arrives before the publish is granted (hooks, forward backends) is held,
    up to 8 MiB: 1000 messages of up to 1 MiB each would be 1 GB for one connection."""
    import asyncio

    from test_rtmp_robustness import FakeTransport

    from srv.app.hub import StreamHub
    from srv.conf.loader import load
    from srv.net.rtmp_server import RtmpServerProtocol
    from srv.worker_context import WorkerContext

    conf = tmp_path / "x.conf"
    conf.write_text("listen 1935;\nvhost __defaultVhost__ { }\n")
    config = load(str(conf), {})
    loop = asyncio.new_event_loop()  # never run: the publish stays undecided
    try:
        ctx = WorkerContext(1, config, StreamHub(config, 1, registry=None, loop=loop), loop, None)  # type: ignore[arg-type]
        conn = RtmpServerProtocol(ctx)
        transport = FakeTransport()
        conn.connection_made(transport)
        client = ClientSession("live", "rtmp://127.0.0.1/live")
        client.start()
        for step in range(6):
            if step == 4:
                client.create_stream()
            if step == 5:
                client.publish("s")
            conn.data_received(client.data_to_send())
            client.receive_data(b"".join(transport.out))
            transport.out.clear()
        assert conn.pending_media == [] and not conn.closed
        frame = b"\x27\x01" + bytes(512 * 1024)
        for i in range(15):  # 7.5 MiB: held
            client.send_media(Message(9, 1, i * 40, frame))
            conn.data_received(client.data_to_send())
        assert not conn.closed and len(conn.pending_media) == 15
        for i in range(15, 18):
            client.send_media(Message(9, 1, i * 40, frame))
            conn.data_received(client.data_to_send())
        assert conn.closed and transport.aborted
        assert "media before publish was granted" in caplog.text
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()
