"""Logging for every srv process: one line per event, SRS-style.

Line shape (console or file, `srs_log_tank`):

    [2026-11-21 06:30:00.123][Trace][w1][12345][c7] 127.0.0.1:50432 publish __defaultVhost__/live/s

- the level uses SRS's names: Verb < Info < Trace < Warn < Error (`srs_log_level`, default trace);
- the role is `master` or `wN` (worker slot N), then the pid, then the connection id (`-` when the
  line is not about a connection);
- a file tank is opened with O_APPEND by every process, so lines from all workers interleave whole;
  SIGUSR1 makes each process reopen it (log rotation).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

VERBOSE = 5
INFO = 15
TRACE = 20
WARN = 30
ERROR = 40

LEVELS = {"verbose": VERBOSE, "info": INFO, "trace": TRACE, "warn": WARN, "error": ERROR}
_NAMES = {VERBOSE: "Verb", INFO: "Info", TRACE: "Trace", WARN: "Warn", ERROR: "Error",
          logging.DEBUG: "Info", logging.CRITICAL: "Error"}

for _level, _name in _NAMES.items():
    logging.addLevelName(_level, _name)

_role = "master"
_handler: logging.Handler | None = None
_tank = "console"
_path = ""


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ct = record.created
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ct))
        cid = getattr(record, "cid", "-")
        msg = record.getMessage()
        line = f"[{stamp}.{int(ct * 1000) % 1000:03d}][{_NAMES.get(record.levelno, record.levelname)}]" \
               f"[{_role}][{record.process}][{cid}] {msg}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _ReopenableFileHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Appends to a file opened O_APPEND; `reopen()` reopens it after rotation."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(self._open())

    def _open(self) -> Any:
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        return open(self.path, "a", buffering=1, encoding="utf-8")

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = self._open()
            old.close()
        finally:
            self.release()


def setup(tank: str = "console", level: str = "trace", path: str = "", role: str | None = None) -> None:
    """(Re)configure the root logger. Idempotent; called again on reload and in each worker."""
    global _handler, _tank, _path
    if role is not None:
        set_role(role)
    root = logging.getLogger()
    if _handler is None or tank != _tank or path != _path:
        if _handler is not None:
            root.removeHandler(_handler)
            _handler.close()
        if tank == "file" and path:
            _handler = _ReopenableFileHandler(path)
        else:
            _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(_Formatter())
        root.addHandler(_handler)
        _tank, _path = tank, path
    root.setLevel(LEVELS.get(level, TRACE))


def set_role(role: str) -> None:
    global _role
    _role = role


def stream() -> Any:
    """The file object lines go to now (the log file, or stderr): for faulthandler's dumps."""
    if isinstance(_handler, logging.StreamHandler):
        return _handler.stream
    return sys.stderr


def reopen() -> None:
    if isinstance(_handler, _ReopenableFileHandler):
        _handler.reopen()


class ConnLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to one connection: every line carries its id and client address."""

    def __init__(self, logger: logging.Logger, cid: str, client: str) -> None:
        super().__init__(logger, {"cid": cid})
        self.client = client
        self.stream = ""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {})["cid"] = self.extra["cid"]  # type: ignore[index]
        where = f" {self.stream}" if self.stream else ""
        return f"{self.client}{where} {msg}", kwargs

    def trace(self, msg: str, *args: Any) -> None:
        self.log(TRACE, msg, *args)


def peer_left(exc: BaseException | None) -> str:
    """How a client's connection ended, in a user's words.

    A reset is how many players leave (they close with our data still unread), so it is not
    reported as an error; only other socket errors are.
    """
    if exc is None:
        return "client left"
    if isinstance(exc, ConnectionResetError):
        return "client left (connection reset)"
    if isinstance(exc, BrokenPipeError):
        return "client left (broken pipe)"
    if isinstance(exc, TimeoutError):
        return "network timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return f"network error: {exc.strerror}"
    return f"network error: {exc}"


def trace(logger: logging.Logger, msg: str, *args: Any) -> None:
    logger.log(TRACE, msg, *args)


# ---- what may be shown of a URL --------------------------------------------------------------

# query parameters srv and SRS set themselves, never secrets: their values stay readable
SHOWN_PARAMS = frozenset({"vhost", "domain", "srv_via"})
REDACTED = "***"


def redact_url(url: str) -> str:
    """`url` as logs, the API and the exporter show it: query values and passwords hidden.

    `rtmp://h/live2/s?key=SECRET&vhost=v` -> `rtmp://h/live2/s?key=***&vhost=v`: a reader still
    sees which parameters were passed. Bare items (`?SECRET`) become `***`; srv's `[param]`
    templates stay. A password in `user:pass@host` becomes `***` too.
    """
    head, sep, query = url.partition("?")
    scheme, slashes, rest = head.partition("://")
    if slashes and "@" in rest.partition("/")[0]:
        auth, _, hostpath = rest.partition("@")
        if ":" in auth:
            head = f"{scheme}://{auth.partition(':')[0]}:{REDACTED}@{hostpath}"
    if not sep:
        return head
    items = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        if eq:
            items.append(item if name in SHOWN_PARAMS or not value else f"{name}={REDACTED}")
        elif not item or (item.startswith("[") and item.endswith("]")):
            items.append(item)
        else:
            items.append(REDACTED)
    return f"{head}?{'&'.join(items)}"
