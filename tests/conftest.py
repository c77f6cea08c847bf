"""Shared test harness: start the real `./objs/srs` on free ports, drive real clients.

`srs_server(...)` (fixture) writes a config into the test's tmp dir, starts `./objs/srs -c it`
and waits until the master says READY=1 on its sd_notify socket (every worker accepts), as
systemd would. Logs go to a file that tests grep.

Every server and client starts in a process group of its own and the whole group is stopped at
teardown (SIGTERM, then SIGKILL), even when the test fails, so a child a client forked (the
nginx-rtmp worker, a srs worker) cannot outlive the test. A session-end check fails the run if
any process of those groups is still alive. Ports come from `free_port()`, reserved across
xdist workers and concurrent runs until the test ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SRS = REPO / "objs" / "srs"
FFMPEG_PUBLISH = [
    "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv",
]


# A ceiling on the wait for a server (or a respawned worker) to say it accepts, never a speed
# claim: starting costs ~1.5 CPU-s of imports and config parsing (master, then each worker), which
# took over 20 s at a load of 30 on 2 cores (63 tests of one full-suite run failed on it so)
STARTUP_TIMEOUT = 90.0

PORT_LOCKS = Path(tempfile.gettempdir()) / "srv-test-ports"
_held_ports: dict[int, int] = {}  # port -> fd of its lock file, released when the test ends


def _port_range() -> tuple[int, int]:
    """Below the kernel's ephemeral range, so no client's outgoing connection is given the port."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return 10000, max(low, 12000) - 1


def free_port() -> int:
    """A 127.0.0.1 TCP port nothing listens on, reserved for the calling test.

    Binding port 0 and closing races: the kernel hands the same port to the next caller (another
    xdist worker, a client's outgoing connection) before the server binds it. Instead a port
    below the ephemeral range is locked with a lock file (flock: released by the kernel if this
    process dies) that every xdist worker and every concurrent run honours, and checked free by
    binding it. The lock is dropped when the test ends (`_release_ports`).
    """
    PORT_LOCKS.mkdir(exist_ok=True)
    low, high = _port_range()
    start = random.randrange(low, high + 1)
    for i in range(high - low + 1):
        port = low + (start - low + i) % (high - low + 1)
        if port in _held_ports:
            continue
        fd = os.open(PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            os.close(fd)
            continue
        _held_ports[port] = fd
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


@pytest.fixture(autouse=True)
def _release_ports() -> Iterator[None]:
    """Set up first, torn down last: the ports a test reserved stay reserved until its servers stop."""
    before = set(_held_ports)
    yield
    for port in set(_held_ports) - before:
        os.close(_held_ports.pop(port))


# ---- process groups: nothing a test starts outlives it ---------------------------------------

_groups: set[int] = set()  # process groups and sessions the tests started
# pgid -> its leader's start time (jiffies since boot) when it was tracked: pids wrap (pid_max is
# often 32768) and Linux may give a finished group's id to a new process, maybe another test's
# server; a group whose leader now has another start time is not ours, and is never signalled
_leader_start: dict[int, int] = {}


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _reused(pgid: int) -> bool:
    """Whether `pgid` now names another group than the one tracked (its leader was replaced)."""
    then = _leader_start.get(pgid)
    now = _start_time(pgid)
    return then is not None and now is not None and now != then


def track_group(pgid: int) -> None:
    """Count every process of group (or session) `pgid` as started by the tests."""
    _groups.add(pgid)
    started = _start_time(pgid)
    if started is not None:
        _leader_start.setdefault(pgid, started)


def group_members(ids: Iterable[int]) -> list[tuple[int, str]]:
    """Live (not zombie) processes whose process group or session is in `ids`: (pid, cmdline)."""
    wanted = {pgid for pgid in ids if not _reused(pgid)}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
        if state != "Z" and (pgrp in wanted or session in wanted):
            found.append((int(entry.name), cmdline.strip()))
    return found


def stop_groups(pgids: Iterable[int], grace: float = 5.0) -> None:
    """Stop every process of the groups `pgids`: SIGTERM to all, SIGKILL what is left after `grace` s."""
    pgids = {pgid for pgid in pgids if not _reused(pgid)}
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        live = {pgid for pgid in pgids if group_members([pgid])}
        for pgid in live:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while live and group_members(live) and time.monotonic() < deadline:
            time.sleep(0.05)


def stop_group(pgid: int, grace: float = 5.0) -> None:
    stop_groups([pgid], grace)


def spawn_in_group(args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen` in a new process group, tracked so the session-end check sees it."""
    p: subprocess.Popen[bytes] = subprocess.Popen(args, process_group=0, **kw)
    track_group(p.pid)
    return p


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """Session end (each xdist worker checks its own): fail if a started process still runs."""
    yield
    left = group_members(_groups)
    stop_groups(_groups, grace=1.0)
    assert not left, "processes the tests started are still running:\n" + \
        "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in left)


# ---- sd_notify ---------------------------------------------------------------------------------


SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux's value; Python's socket module lacks it


class NotifySocket:
    """What systemd does for `Type=notify`: a unix datagram socket given as NOTIFY_SOCKET.

    Abstract address (`@name`): nothing on disk to clean up, no sun_path length limit to hit.
    """

    def __init__(self) -> None:
        self.address = f"@srv-test-notify-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.setblocking(False)
        # the kernel stamps each datagram as it arrives: when the test reads it does not matter
        # (a test slowed for 0.5 s read two WATCHDOG=1 at once and saw a gap the server never left)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.messages: list[dict[str, str]] = []  # one dict per datagram
        self.times: list[float] = []  # when each arrived (wall clock, s)

    def poll(self) -> list[dict[str, str]]:
        stamp = struct.Struct("@ll")  # struct timeval
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(stamp.size))
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)
            arrived = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    sec, usec = stamp.unpack(value[:stamp.size])
                    arrived = sec + usec / 1e6
            self.times.append(arrived)

    def wait(self, pred: Callable[[dict[str, str]], bool], after: int = 0, timeout: float = 15,
             what: str = "notify message", alive: Callable[[], None] | None = None) -> int:
        """Index of the first message from `after` on that matches (`alive` raises if it never can)."""
        def found() -> int | None:
            if alive is not None:
                alive()
            msgs = self.poll()
            return next((i + 1 for i in range(after, len(msgs)) if pred(msgs[i])), None)
        return int(wait_for(found, timeout, what=what)) - 1

    def close(self) -> None:
        self.sock.close()


def refused(port: int) -> bool:
    """True once nothing listens on 127.0.0.1:port (a connection attempt is refused)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Server:
    """One running srs (master + workers) with its config, log and ports."""

    def __init__(self, tmp: Path, body: str, workers: int, name: str = "srs",
                 http: bool = False, env: dict[str, str] | None = None,
                 settings: dict[str, str] | None = None) -> None:
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.api_port = free_port()
        self.http_port = free_port()
        self.exporter_port = free_port()
        self.conf = self.dir / "srs.conf"
        self.log = self.dir / "srs.log"
        self.pid_file = self.dir / "srs.pid"
        self.workers = workers
        self.env = env
        http_block = ""
        if http:
            http_block = (f"http_api {{ enabled on; listen 127.0.0.1:{self.api_port}; "
                          f"raw_api {{ enabled on; allow_reload on; }} }}\n"
                          f"http_server {{ enabled on; listen 127.0.0.1:{self.http_port}; dir {self.dir}; }}\n"
                          f"exporter {{ enabled on; listen 127.0.0.1:{self.exporter_port}; }}\n")
        self.header = (f"listen 127.0.0.1:{self.port};\npid {self.pid_file};\ndaemon off;\n"
                       f"srs_log_tank file;\nsrs_log_file {self.log};\nsrs_log_level info;\n"
                       f"workers {workers};\ngrace_start_wait 100;\ngrace_final_wait 1000;\n{http_block}")
        for key, value in (settings or {}).items():  # override or add a global directive
            line = f"{key} {value};\n"
            self.header, n = re.subn(rf"(?m)^{re.escape(key)} .*;\n", lambda _m, ln=line: ln, self.header)
            if not n:
                self.header += line
        self.write_conf(body)
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify: NotifySocket | None = None
        self._ready_after = 0  # READY=1 counts from this notify message on (the last launch)

    def write_conf(self, body: str) -> None:
        self.conf.write_text(self.header + body)

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}"

    @property
    def notify(self) -> NotifySocket:
        """The sd_notify socket this server reports to (made on first use)."""
        if self._notify is None:
            self._notify = NotifySocket()
        return self._notify

    def environ(self) -> dict[str, str]:
        """Environment to launch this server with; READY=1 is awaited from this launch on."""
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.notify.address
        env.update(self.env or {})
        self._ready_after = len(self.notify.poll())
        return env

    def start(self, wait: bool = True) -> Server:
        self.proc = spawn_in_group([str(SRS), "-c", str(self.conf)], cwd=self.dir, env=self.environ(),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until the master of the last launch sends READY=1 (every worker accepts)."""
        def exited() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise AssertionError(f"srs exited with {self.proc.returncode}: {out}\n{self.log_text()}")
        self.notify.wait(lambda m: m.get("READY") == "1", after=self._ready_after, timeout=timeout,
                         what="srs READY=1", alive=exited)

    def wait_worker_ready(self, slot: int, not_pid: int | None = None, timeout: float = STARTUP_TIMEOUT) -> int:
        """Until the master's sd_notify says worker `slot` accepts (`X_SRS_WORKERS=slot:pid ...`,
        with a pid other than `not_pid`: the respawned one); returns its pid."""
        def ready_pid(msg: dict[str, str]) -> int | None:
            pids = dict(item.split(":") for item in msg.get("X_SRS_WORKERS", "").split())
            pid = pids.get(str(slot))
            return int(pid) if pid is not None and int(pid) != not_pid else None

        i = self.notify.wait(lambda msg: ready_pid(msg) is not None, after=self._ready_after,
                             timeout=timeout, what=f"worker {slot} ready (sd_notify X_SRS_WORKERS)")
        pid = ready_pid(self.notify.messages[i])
        assert pid is not None
        return pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle: str, timeout: float = 10, count: int = 1) -> None:
        wait_for(lambda: self.log_text().count(needle) >= count, timeout, what=f"log line {needle!r}")

    @property
    def master_pid(self) -> int:
        """The launcher execs python, so the process we started is the master."""
        assert self.proc is not None
        return self.proc.pid

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Stop the master with `sig`, then whatever of its process group is left."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_group(self.proc.pid, grace=0)
                code = self.proc.wait(5)
        stop_group(self.proc.pid)
        return code

    def close(self) -> None:
        self.stop()
        if self._notify is not None:
            self._notify.close()


class Clients:
    """Real client processes (ffmpeg, ffprobe, rtmpdump) stopped at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def publish(self, url: str, seconds: float | None = None, extra: list[str] | None = None,
                video: list[str] | None = None) -> subprocess.Popen[bytes]:
        args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"] + list(extra or [])
        spec = list(FFMPEG_PUBLISH)
        if video is not None:
            i = spec.index("-c:v")
            spec[i:i + 10] = video
        if seconds is not None:
            spec += ["-t", str(seconds)]  # an output option: ends every input
        return self.spawn(args + spec + [url], stdout=subprocess.DEVNULL)

    def spawn(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start a client in a process group of its own (stopped as a group at teardown)."""
        p = spawn_in_group(args, stdout=kw.pop("stdout", subprocess.PIPE),
                           stderr=kw.pop("stderr", subprocess.PIPE), **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        """Stop every client's whole group, gracefully first: a forked child (nginx's worker)
        must not outlive its parent."""
        stop_groups(p.pid for p in self.procs)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


def ffprobe(url: str, timeout: float = 15, extra: list[str] | None = None) -> dict[str, Any]:
    """Streams of `url` as ffprobe sees them (raises on failure)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-rw_timeout", str(int(timeout * 1e6))] + list(extra or []) +
                         ["-show_streams", "-of", "json", url],
                         capture_output=True, timeout=timeout + 5)
    if out.returncode != 0:
        raise AssertionError(f"ffprobe {url} failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def codecs(probe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["codec_type"]: s for s in probe.get("streams", [])}


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Clients]:
    c = Clients(tmp_path)
    yield c
    c.close()


@pytest.fixture
def srs_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(body: str = "vhost __defaultVhost__ { }\n", workers: int = 2, name: str = "srs",
              http: bool = False, wait: bool = True, env: dict[str, str] | None = None,
              settings: dict[str, str] | None = None) -> Server:
        s = Server(tmp_path, body, workers, name=name, http=http, env=env, settings=settings)
        servers.append(s)
        return s.start(wait=wait)

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium (tests/browser.py); screenshots and its console go to
    objs/test-artifacts/<test name>/."""
    from browser import Browser, artifact_dir

    b = Browser(artifact_dir(request.node.name))
    yield b
    b.close()


def worker_procs(master_pid: int) -> dict[int, Any]:
    """The master's live workers by slot, from their process titles (`srs: worker process N`)."""
    import psutil

    out: dict[int, Any] = {}
    try:
        children = psutil.Process(master_pid).children()
    except psutil.NoSuchProcess:
        return out
    for child in children:
        try:
            cmdline = child.cmdline()
            title = cmdline[0] if cmdline else ""
            zombie = child.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            continue
        if not zombie and title.startswith("srs: worker process "):
            out[int(title.rsplit(" ", 1)[1])] = child
    return out


def player(clients: Clients, url: str) -> subprocess.Popen[bytes]:
    """A long-lived RTMP player (ffmpeg decoding to null) that runs while the stream plays."""
    return clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", url,
                          "-f", "null", "-"], stdout=subprocess.DEVNULL)


# ---- helpers for multi-server tests (forward) ----------------------------------------------


def record_flv(clients: Clients, url: str, path: Path, extra: list[str] | None = None) -> None:
    """A player that copies `url` into the FLV file `path` as it plays (`extra`: input options)."""
    clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "15000000",
                   *(extra or []), "-i", url, "-c", "copy", "-flush_packets", "1", "-f", "flv", str(path)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def keeps_growing(path: Path, seconds: float = 2.0) -> bool:
    """Whether the recording at `path` grows within `seconds` (its player still receives)."""
    before = file_size(path)
    time.sleep(seconds)
    return file_size(path) > before


def video_frames(url: str, count: int = 5, timeout: float = 15) -> list[dict[str, Any]]:
    """The first `count` decoded video frames of `url` (ffprobe -show_frames); raises on failure."""
    out = subprocess.run(["ffprobe", "-v", "error", "-rw_timeout", str(int(timeout * 1e6)),
                          "-select_streams", "v", "-show_frames", "-read_intervals", f"%+#{count}",
                          "-show_entries", "frame=key_frame,pict_type,pts_time", "-of", "json", url],
                         capture_output=True, timeout=timeout + 5)
    if out.returncode != 0:
        raise AssertionError(f"ffprobe {url} failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    return json.loads(out.stdout).get("frames", [])  # type: ignore[no-any-return]


def process_tree(pid: int) -> list[int]:
    """`pid` and its direct children (a server's master and workers)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                kids.append(int(entry.name))
    return [pid, *kids]


def haproxy_stat(stats_socket: Path) -> dict[tuple[str, str], str]:
    """HAProxy's `(backend, server) -> status` (UP, DOWN, ...), from `show stat` on its stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(stats_socket))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    head = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(head, ln.split(","), strict=False)) for ln in lines[1:] if ln]
    return {(r["pxname"], r["svname"]): r["status"] for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}
