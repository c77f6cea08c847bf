"""The hooks scenario's HTTP hook server: accepts every call, for srv and nginx-rtmp alike.

One asyncio process (run on the load client's core by `HookServer`): any POST is answered
`200` with the body `0`, which both SRS's rule (docs/hooks.md: exactly `0`) and nginx-rtmp's
(any 2xx) read as "allowed". Connections are kept alive when the client asks for it (srv's
aiohttp client does; nginx-rtmp sends one HTTP/1.0 request per connection). `GET /stats` answers
the number of POSTs per path as JSON, so the bench can check that every publish and play really
went through a hook.

    python -m bench_lib.hookserver PORT
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections import Counter

from bench_lib import servers as sv

CALLS: Counter[str] = Counter()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, version = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "GET" and path == "/stats":
                body = json.dumps(dict(CALLS)).encode()
            else:
                CALLS[path] += 1
                body = b"0"
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            writer.write(f"{version} 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode() + body)
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


class HookServer:
    """The hook server as a child process pinned to `core`; `base` is its URL."""

    def __init__(self, core: str) -> None:
        self.port = sv.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(["taskset", "-c", core, sys.executable, "-m", "bench_lib.hookserver",
                                      str(self.port)], stdin=subprocess.DEVNULL)
        sv.wait_port(self.port)

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.base}/stats", timeout=5) as r:
            return dict(json.loads(r.read()))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
