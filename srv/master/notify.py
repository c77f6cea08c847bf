"""systemd integration (`Type=notify`), through sdnotify.

READY=1 once every worker accepts; RELOADING=1 with MONOTONIC_USEC before a reload and READY=1
after it; STOPPING=1 on stop; STATUS= lines say what the server is doing (including why a reload
failed); WATCHDOG=1 at half of WATCHDOG_USEC when systemd asks for a watchdog. Each of these
READY=1/STATUS= messages, and one more each time a worker becomes ready (a respawn, TTIN, a
reload's new slot), carries `X_SRS_WORKERS=slot:pid ...`, the workers that accept (sd_notify's
`X_` prefix for a field of our own; systemd ignores it, tests and tools read it). Without
NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import sdnotify  # type: ignore[import-untyped]


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._n = sdnotify.SystemdNotifier() if self.enabled else None
        usec = os.environ.get("WATCHDOG_USEC", "")
        wpid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog_interval = 0.0
        if self.enabled and usec.isdigit() and (not wpid or wpid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._last_watchdog = 0.0

    def send(self, *lines: str) -> None:
        if self._n is not None:
            self._n.notify("\n".join(lines))

    def ready(self, status: str, workers: Mapping[int, int] | None = None) -> None:
        self.send("READY=1", f"STATUS={status}", *workers_field(workers))

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str, workers: Mapping[int, int] | None = None) -> None:
        self.send(f"STATUS={status}", *workers_field(workers))

    def tick(self) -> None:
        """Called from the master loop: pet the watchdog when one is configured."""
        if self.watchdog_interval:
            now = time.monotonic()
            if now - self._last_watchdog >= self.watchdog_interval:
                self._last_watchdog = now
                self.send("WATCHDOG=1")


def workers_field(workers: Mapping[int, int] | None) -> list[str]:
    """`X_SRS_WORKERS=1:4242 2:4243`: the ready workers, slot:pid by slot (none: no field)."""
    if workers is None:
        return []
    return ["X_SRS_WORKERS=" + " ".join(f"{slot}:{pid}" for slot, pid in sorted(workers.items()))]
