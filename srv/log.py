"""Logging for every srv process: one line per event, SRS-style.

Line shape (console or file, `srs_log_tank`):

    [2026-11-21 06:30:00.123][Trace][w1][12345][c7] 127.0.0.1:50432 publish __defaultVhost__/live/s

- the level uses SRS's names: Verb < Info < Trace < Warn < Error (`srs_log_level`, default trace);
- the role is `master` or `wN` (worker slot N), then the pid, then the connection id (`-` when the
  line is not about a connection);
- a file tank is opened with O_APPEND by every process and each line is one unbuffered write, so
  lines from all workers interleave whole; SIGUSR1 makes each process reopen it (log rotation);
- on a full disk lines are dropped quietly and counted; when writing works again one line says how
  many were lost (`AppendFileHandler`).

`srs_log_format json` (srv) writes the same events as one JSON object per line, for log shippers:

    {"time": "2026-11-21T06:30:00.123Z", "level": "trace", "worker": "w1", "pid": 12345,
     "cid": "c7", "client": "127.0.0.1:50432", "vhost": "__defaultVhost__", "app": "live",
     "stream": "s", "event": "publish", "msg": "publish start"}

`cid`, `client` and `vhost`/`app`/`stream` appear when the line is about a connection or a
stream (the record's `cid`, `client` and `stream` attributes: a `ConnLog` sets them, other call
sites pass them as `extra`); `event` is a short name given at the call site (`event(...)`), else
the logger's last name (`forward`, `arbiter`); a traceback goes in `exc`. Both formats show the
same text, so what is redacted in one (`redact_url`) is redacted in the other.
"""

from __future__ import annotations

import json
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
FORMATS = ("text", "json")


class LineFormatter(logging.Formatter):
    """SRS's line shape (see the module docstring)."""

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


_LEVEL_WORDS = {VERBOSE: "verbose", INFO: "info", TRACE: "trace", WARN: "warn", ERROR: "error",
                logging.DEBUG: "info", logging.CRITICAL: "error"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring); never a raw newline inside it."""

    def format(self, record: logging.LogRecord) -> str:
        ct = record.created
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ct)) + f".{int(ct * 1000) % 1000:03d}Z",
            "level": _LEVEL_WORDS.get(record.levelno, record.levelname.lower()),
            "worker": _role, "pid": record.process,
        }
        msg = record.getMessage()
        cid = getattr(record, "cid", "-")
        if cid and cid != "-":
            out["cid"] = cid
        client = getattr(record, "client", "")
        key = getattr(record, "stream", "")
        if client:
            out["client"] = client
        if key:
            vhost, _, rest = key.partition("/")
            app, _, name = rest.rpartition("/")
            out.update(vhost=vhost, app=app, stream=name)
        # a ConnLog puts client and stream before the text (for the line format): not twice here
        prefix = " ".join(p for p in (client, key) if p) + " "
        if client and msg.startswith(prefix):
            msg = msg[len(prefix):]
        out["event"] = getattr(record, "event", "") or record.name.rpartition(".")[2]
        out["msg"] = msg
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def event(name: str, **context: str) -> dict[str, str]:
    """`extra` for a log call: the event's short name, and context (`cid`, `client`, `stream`)
    for a line not logged through a `ConnLog`."""
    return {"event": name, **context}


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else LineFormatter()


class AppendFileHandler(logging.Handler):
    """Appends whole lines to a file opened O_APPEND, one `os.write` per line, no buffering.

    Under pressure (disk full, quota, I/O error) a line that cannot be written is dropped and
    counted, quietly: one short notice on stderr when losses start, never a traceback per line.
    A line cut short by a filling disk is cut back out of the file (when no other process
    appended after it), so no torn line is left. When writing works again, one line says how
    many were lost, before the line being logged. `reopen()` reopens the path (log rotation).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.fd = self._open()
        self.dropped = 0
        self.why = ""

    def _open(self) -> int:
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            if self.dropped and not self._append(self._dropped_line()):
                self.dropped += 1
                return
            self.dropped = 0
            if not self._append(data):
                self.dropped += 1

    def _dropped_line(self) -> bytes:
        n = self.dropped
        record = logging.LogRecord("srv.log", WARN, __file__, 0, "%d log line%s dropped: %s",
                                   (n, "" if n == 1 else "s", self.why), None)
        return (self.format(record) + "\n").encode("utf-8", "replace")

    def _append(self, data: bytes) -> bool:
        """Write `data` whole, or leave nothing of it in the file and return False."""
        try:
            written = os.write(self.fd, data)
        except OSError as e:
            self._lost(e.strerror or str(e))
            return False
        if written < len(data):
            self._cut(written)
            self._lost("short write (disk full?)")
            return False
        return True

    def _cut(self, written: int) -> None:
        """Remove the `written` bytes of a line cut short, unless another process appended since."""
        try:
            end = os.lseek(self.fd, 0, os.SEEK_CUR)
            if os.fstat(self.fd).st_size == end:
                os.ftruncate(self.fd, end - written)
        except OSError:
            pass

    def _lost(self, why: str) -> None:
        if not self.dropped:
            self.why = why
            try:
                sys.stderr.write(f"srs: cannot write log file {self.path}: {why}; "
                                 "dropping log lines until it can be written again\n")
            except (OSError, ValueError):
                pass

    def reopen(self) -> None:
        """Open the path again under the same descriptor number (faulthandler keeps writing to
        it), atomically: no line is lost or goes to the old file half-way."""
        new = self._open()
        with self.lock:  # type: ignore[union-attr]
            os.dup2(new, self.fd, inheritable=False)
        os.close(new)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        super().close()


def setup(tank: str = "console", level: str = "trace", path: str = "", role: str | None = None,
          fmt: str = "text") -> None:
    """(Re)configure the root logger. Idempotent; called again on reload and in each worker
    (a reload may switch `fmt`, the line format, in place)."""
    global _handler, _tank, _path
    if role is not None:
        set_role(role)
    root = logging.getLogger()
    if _handler is None or tank != _tank or path != _path:
        if _handler is not None:
            root.removeHandler(_handler)
            _handler.close()
        if tank == "file" and path:
            _handler = AppendFileHandler(path)
        else:
            _handler = logging.StreamHandler(sys.stderr)
        root.addHandler(_handler)
        _tank, _path = tank, path
    _handler.setFormatter(formatter(fmt))
    root.setLevel(LEVELS.get(level, TRACE))


def set_role(role: str) -> None:
    global _role
    _role = role


def stream() -> Any:
    """Where lines go now, for faulthandler's dumps: the log file's descriptor (stable across
    `reopen`), or stderr."""
    if isinstance(_handler, AppendFileHandler):
        return _handler.fd
    if isinstance(_handler, logging.StreamHandler):
        return _handler.stream
    return sys.stderr


def reopen() -> None:
    if isinstance(_handler, AppendFileHandler):
        _handler.reopen()


class ConnLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to one connection: every line carries its id and client address, and
    once known its stream (`stream`, the vhost/app/stream key), in the text and as fields."""

    def __init__(self, logger: logging.Logger, cid: str, client: str) -> None:
        super().__init__(logger, {"cid": cid})
        self.client = client
        self.stream = ""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.setdefault("extra", {})
        extra.update(cid=self.extra["cid"], client=self.client, stream=self.stream)  # type: ignore[index]
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
