"""A real HTTP hook server for tests: `http.server` in a thread, recording every POST and
answering the way SRS's hook servers may, including the ones SRS refuses.

What it answers is chosen by the stream (or, without one, the app) named in the body, so one
server can play every variant at once: a stream called "zero_nl" gets `0\\n`, "hang" gets
nothing at all, "flood" gets 10 MB. Anything not in VARIANTS gets SRS's `0`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: name -> (HTTP status, body), or "hang" / "flood"
VARIANTS: dict[str, tuple[int, bytes] | str] = {
    "zero": (200, b"0"),
    "zero_nl": (200, b"0\n"),
    "code0": (200, b'{"code":0}'),
    "code0_data": (200, b'{"code": 0, "data": {"anything": true}}'),
    "code_str": (200, b'{"code":"0"}'),
    "code1": (200, b'{"code":1}'),
    "empty_obj": (200, b"{}"),
    "empty": (200, b""),
    "status500": (500, b"0"),
    "created": (201, b"0"),
    "hang": "hang",
    "flood": "flood",
}
ACCEPTED = {"zero", "code0", "code0_data", "created"}
HANG_SECONDS = 10.0  # longer than any hook timeout the tests set


def serve_in_thread(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threaded HTTP server on a free loopback port, serving from a daemon thread; stop it
    with `stop_server`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def stop_server(httpd: ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


class HookServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (path, body), in arrival order
        self.gets: list[str] = []  # GET paths (on_hls_notify), in arrival order
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with hook.lock:
                    hook.requests.append((self.path, body))
                name = body.get("stream") or body.get("app") or ""
                answer = VARIANTS.get(name.split("_", 1)[1] if name.startswith("v_") else "", (200, b"0"))
                if answer == "hang":
                    time.sleep(HANG_SECONDS)
                    return
                status, data = (200, b"0" * (10 * 1024 * 1024)) if answer == "flood" else answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the client stopped reading: that is the point of the flood

            def do_GET(self) -> None:  # noqa: N802 - http.server's name; on_hls_notify
                with hook.lock:
                    hook.gets.append(self.path)
                data = b"x" * 1000
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = serve_in_thread(Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def bodies(self, action: str | None = None, stream: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [b for _, b in self.requests
                    if (action is None or b.get("action") == action) and (stream is None or b.get("stream") == stream)]

    def close(self) -> None:
        stop_server(self.httpd)
