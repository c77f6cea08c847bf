"""The pid file: written and `flock`ed by the master for its whole life.

The lock, not the file's existence, says whether a server runs: a stale file left by a crash
is simply taken over, while a second start on a live pid file fails at once with the holder's
pid. The lock belongs to the open file description, so it dies with the master; workers close
their inherited copy right after fork.
"""

from __future__ import annotations

import fcntl
import os


class PidFileLocked(Exception):
    pass


class PidFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def acquire(self) -> None:
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PidFileLocked(
                f"pid file {self.path} is locked by pid {holder}: is another srs running "
                f"with this config? (stop it, or give this instance its own `pid`)") from None
        self.fd = fd
        self.write_pid()

    def write_pid(self) -> None:
        """(Re)write our pid: a daemonized master inherits the lock from the launcher. Written
        before the truncation, so a reader never finds the file empty (a shorter pid over a longer
        one leaves a stray newline for an instant, which int() reads the same)."""
        data = f"{os.getpid()}\n".encode()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def close_in_child(self) -> None:
        """Drop a forked child's copy of the descriptor. The flock belongs to the shared open
        file description, so the master's own copy keeps holding it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            with open(self.path) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def read_pid(path: str) -> int:
    """The pid of the running master, for `-s signal` (raises OSError / ValueError)."""
    with open(path) as f:
        text = f.read().strip()
    pid = int(text)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return pid  # locked: a live master holds it
    finally:
        os.close(fd)
    raise ProcessLookupError(f"pid file {path} names pid {pid}, but no srs holds it (not running?)")
