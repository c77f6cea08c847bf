"""The worker's HTTP hook client: SRS's forward `backend` and its `http_hooks`.

One `HookClient` per worker, built when the worker starts and closed explicitly when it stops
(`aclose`). It wraps one `aiohttp.ClientSession` (made on the first call, inside the worker's
loop), so a hook never blocks the event loop nor takes a thread, and connections to a hook server
are reused. aiohttp rather than httpx: the same call costs ~8x less CPU (measured in
docs/performance.md, "Hooks"), and every RTMP join may make one.

Invariants:
- Every call is bounded in time (the timeout, given at construction or per call, covers the
  whole call: connect, write, the pool wait and the complete answer) and in size (an answer
  longer than `max_answer` bytes is a failure, read no further), so a hanging, trickling or
  flooding hook server costs one failed call, nothing more.
- Failures are `HookError`s whose message names the (redacted) URL and the reason, and whose
  `kind` (timeout, too_large, network, closed) labels the exporter's failure counter; what a
  failure means (refuse the publish, or only log it) is the caller's decision.

`call_hooks` runs one SRS http_hooks event: its URLs in order, each answer judged by SRS's rule
(srv.app.http_hooks), counted per hook in the worker's counters (calls by outcome, failures by
kind, latency buckets) that travel to the master in snapshots for the exporter. Connections
(RTMP, HTTP-FLV) ask through `decide` (awaited: on_connect, on_publish, on_play) and `notify`
(a background task: on_close, on_unpublish, on_stop), which read the vhost's hooks as last
reloaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from srv import log as srvlog
from srv.app.access import Refusal
from srv.app.http_hooks import DECIDING, HookRequest, answer_refusal, hook_body, hook_refusal
from srv.log import redact_url

if TYPE_CHECKING:
    import aiohttp

    from srv.net.context import ConnectionContext

DEFAULT_TIMEOUT = 5.0  # seconds, for the forward backend (srv's figure since it was added)
MAX_ANSWER = 64 * 1024  # bytes: SRS's answers are a few bytes; a list of URLs fits easily


class HookError(Exception):
    """A hook call that did not produce an answer (network, timeout, oversized reply)."""

    def __init__(self, message: str, kind: str = "network") -> None:
        super().__init__(message)
        self.kind = kind  # "timeout" | "too_large" | "network" | "closed"


@dataclass(frozen=True)
class HookAnswer:
    status: int
    text: str


class HookClient:
    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_answer: int = MAX_ANSWER) -> None:
        self.timeout = timeout
        self.max_answer = max_answer
        self.session: aiohttp.ClientSession | None = None
        self.closed = False

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            import aiohttp  # on the first hook call: a worker without hooks never pays its ~11 MiB
            # no proxy from the environment, no cookies kept between hooks, bodies as sent
            # (an answer is bounded by its bytes on the wire, never inflated)
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, limit_per_host=0, keepalive_timeout=15),
                trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                headers={"User-Agent": "srv-hooks"})
        return self.session

    async def post_json(self, url: str, body: dict[str, Any], timeout: float | None = None) -> HookAnswer:
        """POST `body` as JSON to `url`; the status and the text of the answer, within
        `timeout` seconds (the client's when None)."""
        return await self._call("POST", url, json.dumps(body).encode(), timeout, self.max_answer, True)

    async def get(self, url: str, max_bytes: int, timeout: float | None = None) -> HookAnswer:
        """GET `url` and read at most `max_bytes` of the answer, the rest left unread (SRS's
        on_hls_notify), within `timeout` seconds (the client's when None)."""
        return await self._call("GET", url, None, timeout, max_bytes, False)

    async def _call(self, method: str, url: str, data: bytes | None, timeout: float | None, max_bytes: int,
                    whole: bool) -> HookAnswer:
        """One request, bounded in time and size: `whole` answers longer than `max_bytes` fail
        (too_large), otherwise the first `max_bytes` are the answer. An answer not read to its
        end closes its connection (aiohttp never pools it)."""
        if self.closed:
            raise HookError(f"{redact_url(url)}: hook client closed", "closed")
        limit = self.timeout if timeout is None else timeout
        headers = {"Content-Type": "application/json"} if data is not None else {}
        session = self._session()
        import aiohttp  # loaded by _session: this only binds the name for the except below
        try:
            async with asyncio.timeout(limit):
                async with session.request(method, url, data=data, headers=headers,
                                                   allow_redirects=False) as r:
                    got = await r.content.read(max_bytes + 1)
                    while len(got) <= max_bytes and not r.content.at_eof():
                        more = await r.content.read(max_bytes + 1 - len(got))
                        if not more:
                            break
                        got += more
                    if len(got) > max_bytes and whole:
                        raise HookError(f"{redact_url(url)}: answer longer than {max_bytes} bytes", "too_large")
                    return HookAnswer(r.status, got[:max_bytes].decode("utf-8", "replace"))
        except TimeoutError:
            raise HookError(f"{redact_url(url)}: no answer within {limit:g}s", "timeout") from None
        except (aiohttp.ClientError, ValueError) as e:  # ValueError: a URL yarl cannot parse
            raise HookError(f"{redact_url(url)}: {type(e).__name__}: {redact_url(str(e))}") from None

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            if self.session is not None:
                await self.session.close()


# ---- SRS http_hooks ----------------------------------------------------------------------------

#: upper bounds (seconds) of the latency buckets counted per hook (the exporter's histogram)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def count_call(counters: Counter[str], hook: str, outcome: str, seconds: float, failure: str = "") -> None:
    """Count one call of `hook` in a worker's counters (ints, so they add up across workers):
    `hook_calls:<hook>:<outcome>` (accepted, refused, failed), `hook_failures:<hook>:<kind>`,
    `hook_ms:<hook>` (total latency) and `hook_le:<hook>:<bucket>` (calls per latency bucket,
    "+Inf" past the last)."""
    counters[f"hook_calls:{hook}:{outcome}"] += 1
    if failure:
        counters[f"hook_failures:{hook}:{failure}"] += 1
    counters[f"hook_ms:{hook}"] += round(seconds * 1000)
    bucket = next((f"{b:g}" for b in LATENCY_BUCKETS if seconds <= b), "+Inf")
    counters[f"hook_le:{hook}:{bucket}"] += 1


Logger = logging.Logger | logging.LoggerAdapter[Any]


async def call_hooks(client: HookClient, counters: Counter[str], hook: str, urls: tuple[str, ...],
                     body: dict[str, Any], timeout: float, logger: Logger) -> Refusal | None:
    """Call `hook`'s `urls` in order with `body`, as SRS does; why the client is refused, or None.

    A deciding hook (on_connect, on_publish, on_play) stops at the first URL that does not
    accept (no answer, or an answer SRS's rule refuses) and returns why; the caller refuses the
    client. A notification calls every URL and only logs a failure. Lines go through `logger`
    (the connection's, which names the client); the URL is logged with query values hidden.
    """
    deciding = hook in DECIDING
    for url in urls:
        shown = redact_url(url)
        started = time.monotonic()
        failure = ""
        try:
            answer = await client.post_json(url, body, timeout)
            why = answer_refusal(answer.status, answer.text)
        except HookError as e:
            why, failure = str(e).removeprefix(f"{shown}: "), e.kind
        elapsed = time.monotonic() - started
        outcome = "failed" if failure else ("refused" if why else "accepted")
        count_call(counters, hook, outcome, elapsed, failure)
        if why is None:
            logger.log(srvlog.TRACE, "http hook %s %s accepted (%.0f ms)", hook, shown, elapsed * 1000)
        elif deciding:
            logger.log(srvlog.TRACE, "http hook %s %s %s (%.0f ms): %s", hook, shown, outcome,
                       elapsed * 1000, why)
            return hook_refusal(hook, why, answered=not failure)
        else:
            logger.warning("http hook %s %s failed, ignored: %s", hook, shown, why)
    return None


_background: set[asyncio.Task[None]] = set()
#: seconds a stopping worker gives the notifications of its last clients (on_unpublish, on_close)
DRAIN_TIMEOUT = 2.0


def background(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run `work` (a notification) in a task that is kept until it ends, whoever forgets it."""
    task = loop.create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def _hooks_of(ctx: ConnectionContext, vhost: str, hook: str) -> tuple[tuple[str, ...], float]:
    config = ctx.config.vhosts.get(vhost)
    if config is None:
        return (), 0.0
    return config.http_hooks.urls(hook), config.http_hooks.timeout


def wants(ctx: ConnectionContext, vhost: str, hook: str) -> bool:
    """Whether `vhost` (as last reloaded) has URLs for `hook` and hooks enabled."""
    return bool(_hooks_of(ctx, vhost, hook)[0])


async def decide(ctx: ConnectionContext, hook: str, request: HookRequest, logger: Logger) -> Refusal | None:
    """Ask a deciding hook about `request`: why it refuses, or None (also when there is none)."""
    urls, timeout = _hooks_of(ctx, request.vhost, hook)
    if not urls:
        return None
    body = hook_body(hook, ctx.server_id, request)
    return await call_hooks(ctx.hooks, ctx.counters, hook, urls, body, timeout, logger)


def notify(ctx: ConnectionContext, hook: str, request: HookRequest, logger: Logger,
           after: asyncio.Task[None] | None = None, **extra: Any) -> asyncio.Task[None] | None:
    """Send a notification hook in the background, once `after` (the connection's previous
    notification) is done, so one client's events reach the hook server in order. The task, or
    None when `hook` has no URL."""
    urls, timeout = _hooks_of(ctx, request.vhost, hook)
    if not urls:
        return after
    body = hook_body(hook, ctx.server_id, request, **extra)

    async def send() -> None:
        if after is not None:
            await asyncio.wait([after])
        await call_hooks(ctx.hooks, ctx.counters, hook, urls, body, timeout, logger)

    return background(ctx.loop, send())


async def drain(timeout: float = DRAIN_TIMEOUT) -> None:
    """A stopping worker, before it closes its hook client: let pending notifications finish,
    for `timeout` seconds at most (one hanging hook server cannot hold the stop)."""
    await asyncio.sleep(0)  # the clients just kicked have their connection_lost (and notify) first
    if _background:
        await asyncio.wait(set(_background), timeout=timeout)
