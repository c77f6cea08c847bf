"""systemd `Type=notify`: the messages the master sends to `NOTIFY_SOCKET`, received on a unix
datagram socket the test binds (what systemd does).
"""

from __future__ import annotations

import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import wait_for


class NotifySocket:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="srsn", dir="/tmp"))  # short: sun_path is 108 bytes
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []  # one dict per datagram
        self.times: list[float] = []

    def poll(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)
            self.times.append(time.monotonic())

    def wait(self, pred: Callable[[dict[str, str]], bool], after: int = 0, timeout: float = 15,
             what: str = "notify message") -> int:
        """Index of the first message from `after` on that matches."""
        def found() -> int | None:
            msgs = self.poll()
            return next((i + 1 for i in range(after, len(msgs)) if pred(msgs[i])), None)
        return int(wait_for(found, timeout, what=what)) - 1

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self.dir.rmdir()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    n = NotifySocket()
    yield n
    n.close()


def test_ready_reloading_and_stopping_are_notified(srs_server, notify: NotifySocket) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server(workers=2, env={"NOTIFY_SOCKET": str(notify.path)}, wait=False)
    i = notify.wait(lambda m: m.get("READY") == "1", what="READY=1")
    # READY=1 comes once the workers accept: an RTMP connect works right away
    socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    assert "2 workers" in notify.messages[i]["STATUS"]
    assert f"127.0.0.1:{srv.port}" in notify.messages[i]["STATUS"]

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    srv.send_signal(signal.SIGHUP)
    r = notify.wait(lambda m: m.get("RELOADING") == "1", after=i + 1, what="RELOADING=1")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(notify.messages[r]["MONOTONIC_USEC"]) <= after
    ok = notify.wait(lambda m: m.get("READY") == "1", after=r + 1, what="READY=1 after reload")
    assert "workers" in notify.messages[ok]["STATUS"]

    # a failed reload: RELOADING, then READY again (still serving), with the reason in STATUS
    srv.conf.write_text(srv.conf.read_text() + "vhost broken {\n")
    srv.send_signal(signal.SIGHUP)
    r = notify.wait(lambda m: m.get("RELOADING") == "1", after=ok + 1, what="RELOADING=1")
    bad = notify.wait(lambda m: m.get("READY") == "1", after=r + 1, what="READY=1 after failed reload")
    status = notify.messages[bad]["STATUS"]
    assert status.startswith(f"reload failed: {srv.conf}:") and "old config" in status

    srv.send_signal(signal.SIGQUIT)
    s = notify.wait(lambda m: m.get("STOPPING") == "1", after=bad + 1, what="STOPPING=1")
    assert "STATUS" in notify.messages[s]
    assert srv.proc is not None and srv.proc.wait(10) == 0


def test_watchdog_is_pet_at_half_the_interval_when_systemd_asks(srs_server, notify: NotifySocket) -> None:  # type: ignore[no-untyped-def]
    srs_server(workers=1, env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "600000"})
    first = notify.wait(lambda m: m.get("WATCHDOG") == "1", what="WATCHDOG=1")
    start = notify.times[first]
    wait_for(lambda: sum(1 for m in notify.poll() if m.get("WATCHDOG") == "1") >= 5, timeout=5,
             what="5 WATCHDOG=1")
    pets = [t for m, t in zip(notify.messages, notify.times, strict=True) if m.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip(pets, pets[1:], strict=False)]
    assert pets[0] == start
    assert max(gaps) < 0.6, gaps  # never lets the 0.6 s watchdog expire


def test_no_watchdog_without_watchdog_usec(srs_server, notify: NotifySocket) -> None:  # type: ignore[no-untyped-def]
    srs_server(workers=1, env={"NOTIFY_SOCKET": str(notify.path)}, wait=True)
    notify.wait(lambda m: m.get("READY") == "1", what="READY=1")
    time.sleep(1.2)
    assert not any("WATCHDOG" in m for m in notify.poll())
