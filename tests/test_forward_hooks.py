"""The worker's async hook client (srv/net/hooks.py) against a real HTTP server, and the on_forward
answer rule (srv/app/forward_target.py).

The server is a small `http.server` in a thread that can answer, hang, or flood.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import REPO, free_port

from srv.app.forward_target import on_forward_body, on_forward_urls
from srv.net.hooks import HookClient, HookError


class HookServer:
    """Answers POSTs per `mode`: "ok" (a JSON answer), "hang" (never), "flood" (10 MB)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.peers: set[int] = set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append(json.loads(body))
                hook.peers.add(self.client_address[1])
                if hook.mode == "hang":
                    time.sleep(5)
                    return
                data = b"0" * (10 * 1024 * 1024) if hook.mode == "flood" else b'{"code": 0, "data": {"urls": []}}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the client stopped reading: that is the point of the flood test

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1/forward"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook_server():
    servers: list[HookServer] = []

    def make(mode: str = "ok") -> HookServer:
        servers.append(HookServer(mode))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_one_client_posts_json_and_reuses_its_connection(hook_server):
    server = hook_server()

    async def calls() -> list[int]:
        client = HookClient(timeout=5)
        try:
            a = await client.post_json(server.url, {"action": "on_forward", "n": 1})
            b = await client.post_json(server.url, {"action": "on_forward", "n": 2})
            return [a.status, b.status] + [len(on_forward_urls(a.status, a.text))]
        finally:
            await client.aclose()

    assert asyncio.run(calls()) == [200, 200, 0]
    assert [r["n"] for r in server.requests] == [1, 2]
    assert len(server.peers) == 1, "the second call must reuse the first call's connection"


def test_hanging_hook_fails_within_the_timeout_and_the_loop_keeps_running(hook_server):
    server = hook_server("hang")

    async def call() -> tuple[str, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        client = HookClient(timeout=0.5)
        try:
            await client.post_json(server.url, {})
        except HookError as e:
            return str(e), ticks
        finally:
            ticker.cancel()
            await client.aclose()
        return "answered", ticks

    why, ticks = asyncio.run(call())
    assert "no answer within 0.5s" in why
    assert ticks >= 5, "the event loop must keep running while a hook hangs"


def test_flooding_hook_is_cut_off_at_the_size_cap(hook_server):
    server = hook_server("flood")

    async def call() -> str:
        client = HookClient(timeout=5, max_answer=64 * 1024)
        try:
            await client.post_json(server.url, {})
        except HookError as e:
            return str(e)
        finally:
            await client.aclose()
        return "answered"

    assert "answer longer than 65536 bytes" in asyncio.run(call())


def test_unreachable_hook_and_closed_client_are_hook_errors():
    async def calls() -> list[str]:
        client = HookClient(timeout=2)
        out = []
        for _ in range(2):
            try:
                await client.post_json(f"http://127.0.0.1:{free_port()}/hook?key=SECRET", {})
            except HookError as e:
                out.append(str(e))
            await client.aclose()
        return out

    refused, closed = asyncio.run(calls())
    assert "ClientConnectorError" in refused and "key=***" in refused and "SECRET" not in refused
    assert "hook client closed" in closed


def test_on_forward_answer_rule_is_srs_s():
    ok = json.dumps({"code": 0, "data": {"urls": ["rtmp://a/live/s", "rtmp://b/x"]}})
    assert on_forward_urls(200, ok) == ["rtmp://a/live/s", "rtmp://b/x"]
    assert on_forward_urls(200, '{"code": 0}') == []
    for status, text, why in [(500, ok, "HTTP 500"), (200, "nope", "not JSON"),
                              (200, '{"code": 1}', "code 1"), (200, '{"code": "0"}', "code '0'"),
                              (200, '{"code": false}', "code False"),
                              (200, '{"code": 0, "data": {"urls": ["http://x?key=SECRET"]}}', "rtmp://")]:
        with pytest.raises(ValueError, match=why) as e:
            on_forward_urls(status, text)
        assert "SECRET" not in str(e.value)


def test_on_forward_body_is_srs_s_without_srv_via():
    body = on_forward_body("h-1", "1-7", "10.0.0.3", "__defaultVhost__", "live", "rtmp://10.0.0.5/live",
                           "show", {"token": "t1", "srv_via": "up"})
    assert body == {"action": "on_forward", "server_id": "h-1", "client_id": "1-7", "ip": "10.0.0.3",
                    "vhost": "__defaultVhost__", "app": "live", "tcUrl": "rtmp://10.0.0.5/live",
                    "stream": "show", "param": "?token=t1"}


def test_a_worker_loads_the_http_client_only_when_a_hook_is_called() -> None:
    """aiohttp costs a worker ~11 MiB: one that never calls a hook never imports it."""
    code = ("import asyncio, sys\n"
            "import srv.worker\n"
            "from srv.net.hooks import HookClient\n"
            "c = HookClient()\n"
            "print('aiohttp' in sys.modules)\n"
            "asyncio.run(c.aclose())\n"
            "async def call():\n"
            "    c = HookClient(timeout=1)\n"
            "    try:\n"
            "        await c.get('http://127.0.0.1:1/', 10)\n"
            "    except Exception as e:\n"
            "        print(type(e).__name__)\n"
            "    await c.aclose()\n"
            "asyncio.run(call())\n"
            "print('aiohttp' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "HookError", "True"], out.stdout + out.stderr
