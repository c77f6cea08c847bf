"""Shared test harness: start the real `./objs/srs` on free ports, drive real clients.

`srs_server(...)` (fixture) writes a config into the test's tmp dir, starts `./objs/srs -c it`
and waits until the master logs that every worker is ready. Logs go to a file that tests grep.
Every server and client started here is stopped at teardown, even when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            http_block = (f"http_api {{ enabled on; listen 127.0.0.1:{self.api_port}; raw_api {{ enabled on; allow_reload on; }} }}\n"
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

    def write_conf(self, body: str) -> None:
        self.conf.write_text(self.header + body)

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Server:
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen([str(SRS), "-c", str(self.conf)], cwd=self.dir, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, count: int = 1, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise AssertionError(f"srs exited with {self.proc.returncode}: {out}\n{self.log_text()}")
            return self.log_text().count("] ready: ") >= count
        wait_for(ready, timeout, what="srs ready")

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
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


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
        p = subprocess.Popen(args + spec + [url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def spawn(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, stdout=kw.pop("stdout", subprocess.PIPE),
                             stderr=kw.pop("stderr", subprocess.PIPE), **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
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
        s.stop()


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
