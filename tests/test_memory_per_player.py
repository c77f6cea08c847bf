"""What a playing RTMP connection keeps in a worker's memory (issue 18, docs/performance.md).

In-process, deterministic: real RtmpServerProtocol connections on a worker context, each driven
through handshake, connect, createStream and play by a ClientSession over a fake transport; the
client side is dropped once it plays, so what tracemalloc still counts is the server's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
from pathlib import Path

from test_rtmp_robustness import attach_client

from srv.app.hub import StreamHub
from srv.conf.loader import load
from srv.net.rtmp_server import RtmpServerProtocol
from srv.worker_context import WorkerContext

# Before the fix a playing connection kept ~6.1 KiB here (its instance dict alone 1.5 KiB: past
# 29 attributes CPython stops sharing an instance dict's keys); after it ~4.4 KiB.
MAX_BYTES_PER_PLAYER = 5000


def _play(ctx: WorkerContext) -> RtmpServerProtocol:
    conn = RtmpServerProtocol(ctx)
    transport, client, exchange = attach_client(conn)
    for _ in range(4):
        exchange()
    client.create_stream()
    exchange()
    client.play("s")
    exchange()
    transport.out.clear()
    assert conn.consumer is not None and not conn.closed
    return conn


def test_a_playing_connection_keeps_little(tmp_path: Path) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text("listen 1935;\nmax_connections 100000;\nvhost __defaultVhost__ { }\n")
    config = load(str(conf), {})
    loop = asyncio.new_event_loop()
    try:
        ctx = WorkerContext(1, config, StreamHub(config, 1, registry=None, loop=loop), loop, None)  # type: ignore[arg-type]
        players = [_play(ctx) for _ in range(20)]  # the stream, its source and the caches exist
        gc.collect()
        # log lines are written and gone in a worker; here pytest's log capture would keep each
        # record (and with the root logger at srs's trace level, as an in-process `srs -t` leaves
        # it, that was 1.2 to 1.8 KiB more per player): none is made while counting
        logging.disable(logging.CRITICAL)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            n = 300
            players += [_play(ctx) for _ in range(n)]
            gc.collect()
            per_player = (tracemalloc.get_traced_memory()[0] - before) / n
        finally:
            tracemalloc.stop()
            logging.disable(logging.NOTSET)
        assert len(ctx.clients) == 320
        assert per_player < MAX_BYTES_PER_PLAYER, f"{per_player:.0f} bytes per playing connection"
        assert not hasattr(players[-1], "__dict__")
    finally:
        loop.close()
