"""A stand-in for an origin-cluster proxy's register API in tests: records every POST body and
answers SRS's ``{"code": 0, "pid": ...}`` (or, when told, an HTTP error)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from hookserver import serve_in_thread, stop_server


class RegisterServer:
    def __init__(self, pid: str = "4242") -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200  # what the next POSTs get
        self.pid = pid
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with owner.lock:
                    owner.bodies.append(body)
                    status = owner.status
                data = json.dumps({"code": 0 if status == 200 else status, "pid": owner.pid}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = serve_in_thread(Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1/srs/register"

    def count(self) -> int:
        with self.lock:
            return len(self.bodies)

    def close(self) -> None:
        stop_server(self.httpd)
