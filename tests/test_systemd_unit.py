"""The systemd unit runs the server with least privilege: `systemd-analyze verify` accepts it,
`systemd-analyze security` rates it well, and the server works the way the unit runs it
(its environment, umask, fd limit, watchdog, and no writable+executable memory)."""

from __future__ import annotations

import ctypes
import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from conftest import REPO, SRS, Clients, codecs, ffprobe, free_port, wait_for

UNIT = REPO / "systemd" / "srs.service"
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # what MemoryDenyWriteExecute= enforces


def service_section() -> dict[str, list[str]]:
    """`key -> values` of the unit's [Service] section, in file order."""
    section = UNIT.read_text().split("[Service]", 1)[1].split("\n[", 1)[0]
    out: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def installed_unit(tmp_path: Path) -> Path:
    """The unit as README installs it, with the repository where this checkout is."""
    path = tmp_path / "srs.service"
    path.write_text(UNIT.read_text().replace("/opt/srv", str(REPO)))
    return path


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    out = subprocess.run(["systemd-analyze", "verify", str(installed_unit(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "srs.service" not in out.stdout + out.stderr  # no complaint about the unit


def test_systemd_analyze_security_rates_the_unit_ok_or_better(tmp_path: Path) -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(installed_unit(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    m = re.search(r"Overall exposure level for srs\.service: (\d+\.\d+) (\w+)", out.stdout)
    assert m, out.stdout
    # 0-10, lower is better; the unit as root without a sandbox was 9.6 UNSAFE
    assert float(m.group(1)) <= 2.0 and m.group(2) in ("PERFECT", "SAFE", "OK"), out.stdout


def test_the_unit_runs_as_a_dedicated_user_with_the_sandbox_issue_9_asks_for() -> None:
    svc = service_section()
    assert svc["User"] == ["srs"] and "DynamicUser" not in svc
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("CapabilityBoundingSet", ""),
                       ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")]:
        assert svc[key] == [value], key
    assert float(svc["WatchdogSec"][0]) > 0  # the watchdog is on by default
    assert int(svc["LimitNOFILE"][0]) >= 65536
    # where the unit lets it write: the pid file and log file (moved there by SRS_PID and
    # SRS_LOG_FILE), and the HLS/DVR folder
    env = dict(kv.split("=", 1) for kv in " ".join(svc["Environment"]).split())
    assert env["SRS_PID"].startswith("/run/srs/") and svc["RuntimeDirectory"] == ["srs"]
    assert env["SRS_LOG_FILE"].startswith("/var/log/srs/") and svc["LogsDirectory"] == ["srs"]
    assert svc["ReadWritePaths"] == ["-/opt/srv/objs/nginx/html"]
    assert svc["ExecStart"] == ["/opt/srv/objs/srs -c conf/srs.conf"]


class NotifySocket:
    """What systemd listens on for Type=notify (READY=1, WATCHDOG=1)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="srsu", dir="/tmp"))  # sun_path is 108 bytes
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)
        self.seen: list[str] = []

    def has(self, line: str) -> bool:
        while True:
            try:
                self.seen.extend(self.sock.recv(4096).decode().splitlines())
            except BlockingIOError:
                return line in self.seen

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self.dir.rmdir()


def test_server_works_the_way_the_unit_runs_it(tmp_path: Path, clients: Clients) -> None:
    svc = service_section()
    env = dict(os.environ)
    for kv in " ".join(svc["Environment"]).split():
        key, value = kv.split("=", 1)
        env[key] = value.replace("/run/srs", str(tmp_path / "run")).replace("/var/log/srs", str(tmp_path / "log"))
    (tmp_path / "run").mkdir()
    (tmp_path / "log").mkdir()
    notify = NotifySocket()
    env["NOTIFY_SOCKET"] = str(notify.path)
    env["WATCHDOG_USEC"] = str(int(float(svc["WatchdogSec"][0]) * 1e6))
    # LimitNOFILE as far as this machine lets a process raise it (systemd sets it as root)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = min(int(svc["LimitNOFILE"][0]), hard if hard != resource.RLIM_INFINITY else 1 << 20)
    port, umask = free_port(), int(svc["UMask"][0], 8)
    conf = tmp_path / "srs.conf"  # no pid and no log path: the unit's environment decides
    conf.write_text(f"listen 127.0.0.1:{port};\ndaemon off;\nsrs_log_tank file;\nworkers 2;\n"
                    "grace_start_wait 100;\ngrace_final_wait 500;\nvhost __defaultVhost__ { }\n")

    def as_the_unit() -> None:
        os.umask(umask)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")

    proc = subprocess.Popen([str(SRS), "-c", str(conf)], cwd=tmp_path, env=env, preexec_fn=as_the_unit,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: notify.has("READY=1") or proc.poll() is not None, 30, what="READY=1")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        wait_for(lambda: notify.has("WATCHDOG=1"), 15, what="a watchdog ping")
        pid_file, log_file = Path(env["SRS_PID"]), Path(env["SRS_LOG_FILE"])
        assert pid_file.read_text().strip() == str(proc.pid)
        assert log_file.stat().st_mode & 0o777 == 0o666 & ~umask
        assert not (tmp_path / "objs").exists()  # nothing written under the working directory
        clients.publish(f"rtmp://127.0.0.1:{port}/live/unit")
        assert set(codecs(ffprobe(f"rtmp://127.0.0.1:{port}/live/unit"))) == {"video", "audio"}
        proc.send_signal(getattr(signal, svc["KillSignal"][0]))
        assert proc.wait(float(svc["TimeoutStopSec"][0])) == 0
        assert not pid_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        notify.close()


def test_install_steps_in_the_docs_match_the_unit() -> None:
    user = service_section()["User"][0]
    for doc in (REPO / "README.md", REPO / "docs" / "process.md", UNIT):
        text = doc.read_text()
        steps = text.split("useradd", 1)
        assert len(steps) == 2, f"{doc.name}: no step creates the service user"
        assert re.match(rf"[^\n]*--system[^\n]* {user}\n", steps[1]), doc.name
        assert "/opt/srv/objs/srs --bootstrap-only" in text, doc.name  # the venv is read-only to the service
        assert "systemctl enable --now srs" in text, doc.name
