"""The worker's HTTP hook client: SRS's forward `backend` today, every `http_hooks` call next.

One `HookClient` per worker, built when the worker starts and closed explicitly when it stops
(`aclose`). It wraps one `httpx.AsyncClient` (on h11, like srv's HTTP server), so a hook never
blocks the event loop nor takes a thread, and connections to a hook server are reused.

Invariants:
- Every call is bounded in time (the timeout given at construction covers connect, write, each
  read and the pool wait) and in size (an answer longer than `max_answer` bytes is a failure,
  read no further), so a hanging or flooding hook server costs one refused call, nothing more.
- Failures are `HookError`s whose message names the (redacted) URL and the reason; what a
  failure means (refuse the publish, or only log it) is the caller's decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from srv.log import redact_url

DEFAULT_TIMEOUT = 5.0  # seconds, for the forward backend (srv's figure since it was added)
MAX_ANSWER = 64 * 1024  # bytes: SRS's answers are a few bytes; a list of URLs fits easily


class HookError(Exception):
    """A hook call that did not produce an answer (network, timeout, oversized reply)."""


@dataclass(frozen=True)
class HookAnswer:
    status: int
    text: str


class HookClient:
    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_answer: int = MAX_ANSWER,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeout = timeout
        self.max_answer = max_answer
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport, trust_env=False,
            follow_redirects=False, headers={"User-Agent": "srv-hooks"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=8))
        self.closed = False

    async def post_json(self, url: str, body: dict[str, Any]) -> HookAnswer:
        """POST `body` as JSON to `url`; the status and the text of the answer."""
        if self.closed:
            raise HookError(f"{redact_url(url)}: hook client closed")
        data = json.dumps(body).encode()
        try:
            async with self.client.stream("POST", url, content=data,
                                          headers={"Content-Type": "application/json"}) as r:
                got = bytearray()
                async for piece in r.aiter_bytes():
                    got += piece
                    if len(got) > self.max_answer:
                        raise HookError(f"{redact_url(url)}: answer longer than {self.max_answer} bytes")
                return HookAnswer(r.status_code, got.decode("utf-8", "replace"))
        except httpx.TimeoutException:
            raise HookError(f"{redact_url(url)}: no answer within {self.timeout:g}s") from None
        except httpx.HTTPError as e:
            raise HookError(f"{redact_url(url)}: {type(e).__name__}: {redact_url(str(e))}") from None

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.client.aclose()
