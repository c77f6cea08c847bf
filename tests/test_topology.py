"""The topology of docs/cluster.md, started and stopped by its two scripts, under test.

scripts/topology-start runs Debian's HAProxy in front of three srv "hosts" (own loopback
addresses 127.0.0.2-4), media03 taking the uploads and forwarding them to the other two, and
an edge (127.0.0.5) pulling from media03. Clients connect from addresses of their own
(127.0.0.10...), so HAProxy's `stick on src` + `balance roundrobin` spreads them, and each
server's API says which server got which client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO as ROOT
from conftest import Clients, free_port, group_members, haproxy_stat, spawn_in_group, stop_group, wait_for
from rtmp_tools import RtmpTestClient, run

from srv.rtmp import events as ev

NODES = {"media01": "127.0.0.2", "media02": "127.0.0.3", "media03": "127.0.0.4", "edge": "127.0.0.5"}
GRACE_START_MS = 4000
GRACE_FINAL_MS = 6000


class Topology:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "topology"
        self.ports = {name: free_port() for name in ("LB_RTMP", "LB_UPLOAD", "LB_FLV", "RTMP", "RTMP_PP",
                                                      "API", "HTTP")}
        self.env = {**os.environ, "TOPOLOGY_DIR": str(self.dir),
                    "TOPOLOGY_GRACE_START_WAIT": str(GRACE_START_MS),
                    "TOPOLOGY_GRACE_FINAL_WAIT": str(GRACE_FINAL_MS),
                    **{f"TOPOLOGY_{k}": str(v) for k, v in self.ports.items()}}
        self.start = spawn_in_group([str(ROOT / "scripts" / "topology-start")], env=self.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.group = self.start.pid  # everything it starts stays in its process group
        out, _ = self.start.communicate(timeout=120)
        self.output = out.decode(errors="replace")
        assert self.start.returncode == 0, self.output

    def stop(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / "scripts" / "topology-stop")], env=self.env, capture_output=True,
                              text=True, timeout=120)

    def clients(self, node: str) -> list[dict[str, Any]]:
        url = f"http://{NODES[node]}:{self.ports['API']}/api/v1/clients?count=500"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["clients"]  # type: ignore[no-any-return]

    def node_of(self, ip: str, kind: str) -> str | None:
        """Which media server lists a `kind` client from `ip`."""
        for node in ("media01", "media02", "media03"):
            if any(c["ip"] == ip and c["type"] == kind for c in self.clients(node)):
                return node
        return None

    def haproxy_status(self, backend: str, server: str) -> str:
        return haproxy_stat(self.dir / "haproxy.sock").get((backend, server), "")

    def pid(self, node: str) -> int:
        return int((self.dir / f"{node}.pid").read_text())


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    topo = Topology(tmp_path)
    try:
        yield topo
    finally:
        topo.stop()
        stop_group(topo.group)


async def rtmp_player(port: int, source: str, host: str = "127.0.0.1") -> RtmpTestClient:
    c = RtmpTestClient(port, host=host, source=source)
    c.keep_media = False
    await c.open()
    await c.play("s")
    await c.expect(ev.MediaMessage, timeout=15)
    return c


def flv_player(port: int, source: str) -> socket.socket:
    """An HTTP-FLV GET through HAProxy from `source`; returns once the FLV body flows."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0))
    sock.sendall(b"GET /live/s.flv HTTP/1.1\r\nHost: topology\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 4096:
        chunk = sock.recv(65536)
        assert chunk, data[:200]
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"FLV\x01" in body[:16], body[:16]  # after a chunk size line when chunked
    return sock


def test_topology_serves_from_all_three_and_drains_one_gracefully(topology: Topology, clients: Clients) -> None:
    t = topology
    p = t.ports
    clients.publish(f"rtmp://127.0.0.1:{p['LB_UPLOAD']}/live/s")
    for node in ("media01", "media02", "media03"):  # media03 by HAProxy's upload frontend, the others by its forward
        wait_for(lambda n=node: any(c["type"] == "fmle-publish" for c in t.clients(n)), 30,
                 what=f"the stream on {node}")

    async def scenario() -> None:
        # RTMP through HAProxy: new sources go round-robin, so every server gets players
        players: dict[str, RtmpTestClient] = {}
        others: list[RtmpTestClient] = []
        for i in range(10, 30):
            src = f"127.0.0.{i}"
            c = await rtmp_player(p["LB_RTMP"], src)
            node = t.node_of(src, "rtmp-play")
            assert node is not None, src
            if node in players:
                others.append(c)
            else:
                players[node] = c
            if len(players) == 3:
                break
        assert sorted(players) == ["media01", "media02", "media03"]

        # HTTP-FLV through HAProxy, the same way
        served: set[str] = set()
        socks = []
        for i in range(40, 60):
            src = f"127.0.0.{i}"
            socks.append(flv_player(p["LB_FLV"], src))
            node = wait_for(lambda s=src: t.node_of(s, "flv-play"), 20, what=f"the server of {src}")
            served.add(node)
            if len(served) == 3:
                break
        assert served == {"media01", "media02", "media03"}
        for s in socks:
            s.close()

        # the edge pulls from media03 (its first origin)
        e = await rtmp_player(p["RTMP"], "127.0.0.5", host=NODES["edge"])
        await e.close()
        assert f"playing from origin 127.0.0.4:{p['RTMP']}" in (t.dir / "edge.log").read_text()

        # graceful stop of media01: HAProxy takes it out while it still accepts, its player goes on
        kept = players["media01"]
        os.kill(t.pid("media01"), signal.SIGQUIT)
        quit_at = time.monotonic()
        while not t.haproxy_status("bk_rtmp", "media01").startswith("DOWN"):
            assert time.monotonic() - quit_at < GRACE_START_MS / 1000, "HAProxy still sends clients to media01"
            await asyncio.sleep(0.1)
        with socket.create_connection((NODES["media01"], p["RTMP"]), timeout=2):
            pass  # DOWN before media01 stopped accepting: no client was refused meanwhile
        for i in range(60, 66):
            src = f"127.0.0.{i}"
            c = await rtmp_player(p["LB_RTMP"], src)
            assert t.node_of(src, "rtmp-play") in ("media02", "media03"), src
            others.append(c)

        last_growth, seen = time.monotonic(), kept.media_bytes
        while not kept.closed.is_set() and time.monotonic() - quit_at < (GRACE_START_MS + GRACE_FINAL_MS) / 1000 + 10:
            await asyncio.sleep(0.1)
            if kept.media_bytes > seen:
                last_growth, seen = time.monotonic(), kept.media_bytes
        cut = time.monotonic() - quit_at
        assert kept.closed.is_set(), "media01's player was never closed"
        # not cut before grace_start_wait + grace_final_wait, and fed until then
        assert cut >= (GRACE_START_MS + GRACE_FINAL_MS) / 1000 - 0.5, cut
        assert time.monotonic() - last_growth < 2.0
        for c in [*players.values(), *others]:
            if c is not kept:
                await c.close()

    run(scenario())

    # one command stops it all, and nothing it started is left
    done = t.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not group_members([t.group]), 10, what="every process of the topology gone")
    for ip in NODES.values():
        with pytest.raises(OSError):
            socket.create_connection((ip, p["API"]), timeout=2).close()
