"""The master process: a small arbiter in gunicorn's vocabulary.

It parses the config, holds the pid file lock and every listening socket, forks `workers` workers
(one slot each) and supervises them from one synchronous selectors loop — no event loop runs in
the master, so a forked child never inherits a live loop. Signal handlers only enqueue; the loop
acts (see SIGNALS). The master is also the registry of who publishes what: a worker must claim a
stream here before it accepts a publisher, which keeps one publisher per stream across all
workers, and every worker is told who owns each stream so its players can pull it. It gathers the
workers' figures for the HTTP API and the exporter, whichever worker serves them.

Pieces: the stream registry (`registry.py`), the snapshot broker (`snapshots.py`) and the
channel transport (`srv/process/channel.py`) live beside this loop; messages arrive as frozen
dataclasses (`srv/process/messages.py`) and go to `handle_<name>`, as signals go to
`handle_<sig>`. Nothing a worker sends can take the master down: a bad frame is logged and
dropped, and a worker that sends BAD_FRAME_LIMIT of them within BAD_FRAME_WINDOW seconds is
killed and respawned. Should the master itself fail, the traceback goes to the log and it
exits 1 after stopping its workers.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import selectors
import signal
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from setproctitle import setproctitle

from srv import __version__, accel
from srv import log as srvlog
from srv.app.access import IpLimiter
from srv.app.diskio import remove_quietly
from srv.app.hls import temp_files
from srv.conf.errors import ConfigErrors
from srv.conf.listen import ListenError, listen_specs
from srv.conf.loader import load, reload_diff
from srv.conf.model import ServerConfig
from srv.master.heartbeat import HeartbeatSender
from srv.master.listeners import ListenerSet
from srv.master.notify import Notifier
from srv.master.pidfile import PidFile
from srv.master.registry import StreamRegistry
from srv.master.snapshots import SnapshotBroker
from srv.net.context import ClientQuery
from srv.process import WORKER_BOOT_ERROR, Stop, signal_handler_name
from srv.process import messages as m
from srv.process.channel import Channel, FrameTooLarge
from srv.worker import run_worker

log = logging.getLogger("srv.master")

# signal -> what the master does (nginx/SRS meaning). docs/process.md has the same table (a test
# keeps them in sync); `srs -s reload|quit|stop|reopen` sends HUP, QUIT, TERM, USR1.
SIGNALS = {
    signal.SIGHUP: "reload",
    signal.SIGQUIT: "graceful stop",
    signal.SIGTERM: "fast stop (graceful with force_grace_quit on)",
    signal.SIGINT: "fast stop",
    signal.SIGUSR1: "reopen log files",
    signal.SIGTTIN: "one worker more",
    signal.SIGTTOU: "one worker less",
}
HANDLED = (*SIGNALS, signal.SIGCHLD)  # SIGCHLD only wakes the loop, which reaps every turn

BAD_FRAME_LIMIT = 3  # bad control frames from one worker within BAD_FRAME_WINDOW: restart it
BAD_FRAME_WINDOW = 60.0
ABORT_GRACE = 3.0  # a hung worker has this long after SIGABRT to log its stack, then SIGKILL


@dataclass
class WorkerProc:
    slot: int
    pid: int
    chan: Channel
    started: float
    last_heartbeat: float
    ready: bool = False
    stopping: bool = False
    killed_for: str = ""
    aborted_at: float = 0.0  # when it was sent SIGABRT for a missed heartbeat
    bad_frames: deque[float] = field(default_factory=deque)
    counters: dict[str, float] = field(default_factory=dict)
    ips: Counter[str] = field(default_factory=Counter)  # its connections the master admitted (Admit)


@dataclass
class SlotState:
    failures: int = 0
    next_spawn: float = 0.0
    boot_failed: bool = False
    restarts: int = 0


class Arbiter:
    def __init__(self, config: ServerConfig, argv_title: str, environ: dict[str, str]) -> None:
        self.config = config
        self.ip_limits = IpLimiter()  # per_ip connections and rate of the whole server (Admit)
        self.title = argv_title
        self.environ = environ
        self.pidfile = PidFile(config.pid)
        self.listeners = ListenerSet()
        self.notifier = Notifier()
        self.workers: dict[int, WorkerProc] = {}  # pid -> worker
        self.slots: dict[int, SlotState] = {}
        self.num_workers = config.workers
        self.sel = selectors.DefaultSelector()
        self.sig_queue: list[int] = []
        self.streams = StreamRegistry()
        self.hls_watchers: dict[str, set[int]] = {}  # LL-HLS stream key -> slots holding its requests
        self.snapshots = SnapshotBroker(self._ask_stats, self._answer_snapshot)
        self.heartbeat = HeartbeatSender(self.sel, config, environ)  # heartbeat { }: SRS's register POST
        self.handlers = m.handlers(self, m.TO_MASTER)
        self.started = time.time()
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_reload: dict[str, Any] | None = None  # {at, ok, message}: the console shows it
        self.worker_restarts = 0
        self.retired: dict[str, float] = {}  # counters of workers that are gone
        self.announced_ready = False
        self.on_started: Callable[[], None] | None = None
        self.stopping: Stop | None = None
        self.stop_deadline = 0.0
        self.exit_code = 0
        # the loop wakes at least this often; fast enough for the watchdog when there is one
        self.tick = min(0.5, self.notifier.watchdog_interval or 0.5)

    # ---- start -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Take the pid file lock and open every listening socket. Run before daemonizing, so
        a second instance or a busy port fails with exit code 1 in the launching shell."""
        if self.pidfile.fd >= 0:
            return
        self.pidfile.acquire()
        try:
            self.listeners.set_specs(listen_specs(self.config), list(range(1, self.num_workers + 1)))
        except ListenError:
            self.listeners.close()
            self.pidfile.release()
            raise

    def start(self) -> None:
        for sig in SIGNALS:  # every signal of the table has its handler
            getattr(self, signal_handler_name(sig))
        setproctitle(f"srs: master process {self.title}")
        self.prepare()
        self.pidfile.write_pid()  # after a daemon fork the master's pid is a new one
        if self.on_started is not None:  # the daemon launcher waits for this (before any fork)
            self.on_started()
            self.on_started = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in HANDLED:
            signal.signal(sig, self._enqueue_signal)
        self.sel.register(self._wake_r, selectors.EVENT_READ, None)
        log.log(srvlog.TRACE, "srv %s master pid %d, config %s, %d workers, listen %s",
                __version__, os.getpid(), self.config.path, self.num_workers,
                ", ".join(str(s) for s in self.listeners.specs))
        log.log(logging.WARNING if accel.failed() else srvlog.TRACE, "%s", accel.status())
        for w in self.config.warnings:
            log.warning("%s", w)
        self.sweep_recordings()
        for slot in range(1, self.num_workers + 1):
            self.slots[slot] = SlotState()
            self.spawn_worker(slot)

    def sweep_recordings(self) -> None:
        """Before any worker writes: remove the temp files a crash (kill -9) left under each
        vhost's hls_path (a writer also sweeps its own stream's when it starts)."""
        removed = 0
        for name in self.config.vhosts:
            hls = self.config.vhosts[name].hls
            if hls.enabled:
                removed += sum(remove_quietly(path) for path in temp_files(hls))
        if removed:
            log.log(srvlog.TRACE, "removed %d temp files a crash left under hls_path", removed)

    def _enqueue_signal(self, signum: int, frame: Any) -> None:
        if len(self.sig_queue) < 16:
            self.sig_queue.append(signum)

    # ---- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
            while True:
                self.notifier.tick()
                for key, mask in self.sel.select(timeout=self.tick):
                    if key.data is None:
                        self._drain_wakeup()
                    elif key.data is self.heartbeat:
                        self.heartbeat.on_ready(mask)
                    else:
                        self._on_channel(key.data, mask)
                self.handle_signals()
                self.reap_workers()
                if self.stopping:
                    if not self.workers or time.monotonic() > self.stop_deadline:
                        break
                    continue
                self.murder_workers()
                self.manage_workers()
                self.heartbeat.tick(time.monotonic())
                self.snapshots.expire()
                if not self.workers and all(s.boot_failed for s in self.slots.values()):
                    log.error("every worker failed to boot; master exits")
                    self.exit_code = 1
                    break
        except Exception:
            # a bug of the master's own: say so where the operator looks, then stop the workers
            log.exception("master crashed")
            self.exit_code = 1
        finally:
            self.halt()
        return self.exit_code

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # ---- signals: handle_<sig> -----------------------------------------------------------------

    def handle_signals(self) -> None:
        while self.sig_queue:
            sig = signal.Signals(self.sig_queue.pop(0))
            if sig == signal.SIGCHLD:
                continue  # reap_workers runs every turn
            if self.stopping and sig not in (signal.SIGTERM, signal.SIGINT):
                log.log(srvlog.TRACE, "%s ignored: stopping", sig.name)
                continue
            getattr(self, signal_handler_name(sig))()

    def handle_hup(self) -> None:
        log.log(srvlog.TRACE, "SIGHUP: reload %s", self.config.path)
        self.reload()

    def handle_quit(self) -> None:
        self.stop(graceful=True, why="SIGQUIT")

    def handle_term(self) -> None:
        self.stop(graceful=self.config.force_grace_quit, why="SIGTERM")

    def handle_int(self) -> None:
        self.stop(graceful=False, why="SIGINT")

    def handle_usr1(self) -> None:
        srvlog.reopen()
        log.log(srvlog.TRACE, "SIGUSR1: log files reopened")
        self.kill_workers(signal.SIGUSR1)

    def handle_ttin(self) -> None:
        self.num_workers += 1
        log.log(srvlog.TRACE, "SIGTTIN: workers %d", self.num_workers)

    def handle_ttou(self) -> None:
        if self.num_workers > 1:
            self.num_workers -= 1
        log.log(srvlog.TRACE, "SIGTTOU: workers %d", self.num_workers)

    # ---- workers -----------------------------------------------------------------------------

    def spawn_worker(self, slot: int) -> None:
        socks = self.listeners.ensure_slot(slot)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 1
            try:
                parent.close()
                self._close_in_child(keep=set(s.fileno() for s in socks.values()))
                code = run_worker(slot, self.config, dict(socks), child, os.getppid())
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                log.exception("worker %d crashed", slot)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        child.close()
        now = time.monotonic()
        w = WorkerProc(slot, pid, Channel(parent), now, now)
        self.workers[pid] = w
        self.sel.register(parent, selectors.EVENT_READ, w)
        self.send(w, m.Streams(self.streams.table()))
        log.log(srvlog.TRACE, "worker %d spawned, pid %d", slot, pid)

    def _close_in_child(self, keep: set[int]) -> None:
        signal.set_wakeup_fd(-1)
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        self.heartbeat.close_in_child()
        self.sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.pidfile.close_in_child()
        for w in self.workers.values():
            w.chan.close()
        for fd in self.listeners.all_fds() - keep:
            os.close(fd)

    def reap_workers(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            for ip, n in w.ips.items():  # its connections died with it
                for _ in range(n):
                    self.ip_limits.release(ip)
            self._forget(w)
            st = self.slots.setdefault(w.slot, SlotState())
            if os.WIFSIGNALED(status):
                how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                how = f"exited with code {os.WEXITSTATUS(status)}"
            if w.killed_for:
                how += f" ({w.killed_for})"
            if self.stopping or w.stopping:
                log.log(srvlog.TRACE, "worker %d (pid %d) %s", w.slot, pid, how)
                continue
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == WORKER_BOOT_ERROR:
                st.boot_failed = True
                # nobody will accept on this slot's sockets: take them out of the SO_REUSEPORT
                # group, or the kernel keeps queueing connections there that are never served
                self.listeners.drop_slot(w.slot)
                log.error("worker %d (pid %d) failed to boot; not respawning it", w.slot, pid)
                continue
            # back off when a slot keeps dying young
            st.failures = st.failures + 1 if time.monotonic() - w.started < 10 else 1
            delay = min(0.1 * 2 ** (st.failures - 1), 10.0)
            st.next_spawn = time.monotonic() + delay
            log.error("worker %d (pid %d) %s; respawning in %.1fs", w.slot, pid, how, delay)

    def _forget(self, w: WorkerProc) -> None:
        """A worker is gone: drop its channel, release its streams, keep its counters."""
        try:
            self.sel.unregister(w.chan.sock)
        except (KeyError, ValueError):
            pass
        w.chan.close()
        for k, v in w.counters.items():
            self.retired[k] = self.retired.get(k, 0) + v
        lost = self.streams.release_all(w.slot)
        for key in lost:
            self.broadcast(m.Unpublished(key, w.slot))
        if lost:
            log.log(srvlog.TRACE, "released %d streams of worker %d: %s", len(lost), w.slot, ", ".join(lost))
        self.snapshots.forget(w.slot)

    def murder_workers(self) -> None:
        """A worker silent for `worker_timeout` gets SIGABRT, so that it logs its stack
        (faulthandler) and dies; one still there ABORT_GRACE seconds later gets SIGKILL."""
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.aborted_at and now - w.aborted_at > ABORT_GRACE and "SIGKILL" not in w.killed_for:
                w.killed_for += f"; no exit {ABORT_GRACE:.0f}s after SIGABRT, SIGKILL"
                log.error("worker %d (pid %d) still there after SIGABRT; killing it", w.slot, w.pid)
                self._kill(w.pid, signal.SIGKILL)
            elif not w.killed_for and now - w.last_heartbeat > self.config.worker_timeout:
                w.killed_for = f"no heartbeat for {now - w.last_heartbeat:.0f}s"
                w.aborted_at = now
                log.error("worker %d (pid %d) %s; aborting it (SIGABRT, its stack goes to the log)",
                          w.slot, w.pid, w.killed_for)
                self._kill(w.pid, signal.SIGABRT)

    def manage_workers(self) -> None:
        alive = {w.slot for w in self.workers.values() if not w.stopping}
        now = time.monotonic()
        for slot in range(1, self.num_workers + 1):
            st = self.slots.setdefault(slot, SlotState())
            if slot not in alive and not st.boot_failed and now >= st.next_spawn:
                if slot in {w.slot for w in self.workers.values()}:
                    continue  # the old one is still stopping
                if st.restarts or st.failures:
                    self.worker_restarts += 1
                st.restarts += 1
                self.spawn_worker(slot)
        for w in list(self.workers.values()):
            if w.slot > self.num_workers and not w.stopping:
                w.stopping = True
                log.log(srvlog.TRACE, "worker %d (pid %d) retired", w.slot, w.pid)
                self._kill(w.pid, signal.SIGQUIT)
                self.listeners.drop_slot(w.slot)
        if not self.announced_ready and self.workers and all(w.ready for w in self.workers.values()):
            self.announced_ready = True
            self.notifier.ready(self._status(), self._ready_workers())
            log.log(srvlog.TRACE, "ready: %s", self._status())

    def _ready_workers(self) -> dict[int, int]:
        """slot -> pid of the workers that accept (what sd_notify's X_SRS_WORKERS says)."""
        return {w.slot: w.pid for w in self.workers.values() if w.ready and not w.stopping}

    def _status(self) -> str:
        ready = sum(1 for w in self.workers.values() if w.ready)
        return f"{ready} workers, {len(self.streams)} streams, listen " + \
            ", ".join(str(s.endpoint) for s in self.listeners.specs)

    def kill_workers(self, sig: int) -> None:
        for pid in list(self.workers):
            self._kill(pid, sig)

    @staticmethod
    def _kill(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise

    # ---- reload and stop ---------------------------------------------------------------------

    def reload(self) -> bool:
        self.notifier.reloading()
        try:
            new = load(self.config.path, self.environ)
            specs = listen_specs(new)
            self.listeners.check_new(specs)
        except (ConfigErrors, ListenError) as e:
            self.reloads_failed += 1
            self.last_reload = {"at": time.time(), "ok": False, "message": str(e)}
            for line in str(e).splitlines():
                log.error("reload failed: %s", line)
            self.notifier.ready(f"reload failed: {str(e).splitlines()[0]}; running on the old config")
            return False
        diff = reload_diff(self.config, new)
        # what needs a restart (pid, daemon, the log sink) keeps its old value, as the warning says
        kept = {p: getattr(self.config, p) for p in diff.needs_restart if "." not in p}
        if kept:
            new = dataclasses.replace(new, **kept)
        for warning in new.warnings:
            log.warning("%s", warning)
        old_specs = list(self.listeners.specs)
        old_workers = self.config.workers
        srvlog.setup(new.srs_log_tank, new.srs_log_level, new.srs_log_file, fmt=new.srs_log_format)
        self.config = new
        self.heartbeat.configure(new)
        if new.workers != old_workers:  # a TTIN/TTOU count stands until the config changes it
            self.num_workers = new.workers
        self.listeners.set_specs(specs, [w.slot for w in self.workers.values() if not w.stopping])
        changed_listeners = specs != old_specs
        for w in self.workers.values():
            if w.stopping:
                continue
            if changed_listeners:
                socks = self.listeners.ensure_slot(w.slot)
                w.chan.send_with_fds(m.Config(new, list(socks)), [s.fileno() for s in socks.values()])
                self._flush(w)
            else:
                self.send(w, m.Config(new))
        self.reloads_ok += 1
        self.last_reload = {"at": time.time(), "ok": True, "message": diff.describe()}
        for st in self.slots.values():  # the operator may have fixed what made a worker fail
            st.boot_failed = False
        for warning in diff.warnings:
            log.warning("reload: %s", warning)
        log.log(srvlog.TRACE, "reload ok: %s", diff.describe())
        self.notifier.ready(self._status(), self._ready_workers())
        return True

    def stop(self, graceful: bool, why: str) -> None:
        if self.stopping is Stop.FAST or (self.stopping and graceful):
            return
        self.stopping = Stop.GRACEFUL if graceful else Stop.FAST
        self.notifier.stopping()
        if graceful:
            wait = (self.config.grace_start_wait + self.config.grace_final_wait) / 1000 + 2
            log.log(srvlog.TRACE, "%s: graceful stop, waiting up to %.1fs for sessions", why, wait)
            self.kill_workers(signal.SIGQUIT)
        else:
            wait = 3.0
            log.log(srvlog.TRACE, "%s: fast stop", why)
            self.kill_workers(signal.SIGTERM)
        # workers hold their own copies: they accept until they close them (grace_start_wait)
        self.listeners.close()
        self.stop_deadline = time.monotonic() + wait

    def halt(self) -> None:
        self.stopping = self.stopping or Stop.FAST
        for pid in list(self.workers):
            log.warning("worker pid %d still running at exit; killing it", pid)
            self._kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while self.workers and time.monotonic() < deadline:
            self.reap_workers()
            time.sleep(0.02)
        self.listeners.close()
        self.pidfile.release()
        log.log(srvlog.TRACE, "master pid %d exit(%d)", os.getpid(), self.exit_code)

    # ---- control channel ---------------------------------------------------------------------

    def send(self, w: WorkerProc, msg: m.Message) -> None:
        try:
            w.chan.send(msg)
        except FrameTooLarge as e:
            log.error("worker %d (pid %d): %s; not sent", w.slot, w.pid, e)
        self._flush(w)

    def broadcast(self, msg: m.Message) -> None:
        for w in list(self.workers.values()):
            self.send(w, msg)

    def _flush(self, w: WorkerProc) -> None:
        pending = w.chan.flush()
        try:
            self.sel.modify(w.chan.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0), w)
        except (KeyError, ValueError):
            pass

    def _on_channel(self, w: WorkerProc, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(w)
        if not mask & selectors.EVENT_READ:
            return
        got = w.chan.receive()
        if got is None:  # the worker is gone; reap_workers tells why
            try:
                self.sel.unregister(w.chan.sock)
            except (KeyError, ValueError):
                pass
            return
        frames, fds = got
        for fd in fds:  # workers never send descriptors
            os.close(fd)
        for msg in frames:
            if w.killed_for:
                return  # being killed (hung, or too many bad frames): nothing more from it
            self.handle_message(w, msg)

    def handle_message(self, w: WorkerProc, msg: object) -> None:
        """Hand one frame to its handle_<name>; a bad one is logged, dropped and counted."""
        try:
            handler = m.accept(self.handlers, msg)
            w.last_heartbeat = time.monotonic()
            handler(w, msg)
        except (m.BadMessage, LookupError, TypeError, ValueError, AttributeError) as e:
            self.bad_frame(w, f"{type(e).__name__}: {e}" if not isinstance(e, m.BadMessage) else str(e))

    def bad_frame(self, w: WorkerProc, why: str) -> None:
        now = time.monotonic()
        w.bad_frames.append(now)
        while w.bad_frames and now - w.bad_frames[0] > BAD_FRAME_WINDOW:
            w.bad_frames.popleft()
        log.error("worker %d (pid %d) sent a bad control frame, dropped: %s", w.slot, w.pid, why)
        if len(w.bad_frames) >= BAD_FRAME_LIMIT and not w.killed_for:
            w.killed_for = f"{len(w.bad_frames)} bad control frames in {BAD_FRAME_WINDOW:.0f}s"
            log.error("worker %d (pid %d) %s; restarting it", w.slot, w.pid, w.killed_for)
            self._kill(w.pid, signal.SIGKILL)

    def handle_heartbeat(self, w: WorkerProc, msg: m.Heartbeat) -> None:
        w.counters = msg.counters

    def handle_ready(self, w: WorkerProc, msg: m.Ready) -> None:
        w.ready = True
        self.slots.setdefault(w.slot, SlotState()).failures = 0
        if self.announced_ready:  # a respawn, TTIN or a reload's new slot: readiness, not a log line
            self.notifier.status(self._status(), self._ready_workers())

    def handle_claim(self, w: WorkerProc, msg: m.Claim) -> None:
        was = self.streams.owners.get(msg.key)
        owner = self.streams.claim(msg.key, w.slot)
        if owner is None and was is None:
            self.broadcast(m.Published(msg.key, w.slot))
        self.send(w, m.ClaimResult(msg.req, owner is None, owner if owner is not None else was))

    def handle_release(self, w: WorkerProc, msg: m.Release) -> None:
        if self.streams.release(msg.key, w.slot):
            self.broadcast(m.Unpublished(msg.key, w.slot))

    def handle_snapshot(self, w: WorkerProc, msg: m.Snapshot) -> None:
        live = {x.slot for x in self.workers.values() if not x.stopping}
        self.snapshots.start(w.slot, msg.req, msg.query, live)

    def handle_stats(self, w: WorkerProc, msg: m.Stats) -> None:
        # the snapshot's counters are fresher than the last heartbeat's: keep them, so the
        # totals kept for a worker that dies never fall below what was already reported
        counters = msg.data.get("counters")
        if isinstance(counters, dict):
            w.counters = counters
        self.snapshots.on_stats(w.slot, msg.sid, msg.data)

    def handle_kick_request(self, w: WorkerProc, msg: m.KickRequest) -> None:
        target = self._worker_in(msg.slot)
        if target is not None:
            self.send(target, m.Kick(msg.client_id))

    def handle_reload(self, w: WorkerProc, msg: m.Reload) -> None:
        ok = self.reload()
        self.send(w, m.ReloadResult(msg.req, ok))

    def handle_admit(self, w: WorkerProc, msg: m.Admit) -> None:
        # per_ip max_connections and connect_rate over every worker (bans: each worker's limiter)
        cfg = dataclasses.replace(self.config.per_ip, ban_after=0)
        refusal = self.ip_limits.admit(cfg, msg.ip, time.monotonic())
        if refusal is None:
            w.ips[msg.ip] += 1
        self.send(w, m.AdmitResult(msg.req, refusal.counter if refusal else "", refusal.reason if refusal else ""))

    def handle_leave(self, w: WorkerProc, msg: m.Leave) -> None:
        if w.ips[msg.ip] > 0:
            w.ips[msg.ip] -= 1
            self.ip_limits.release(msg.ip)

    def handle_ban(self, w: WorkerProc, msg: m.Ban) -> None:
        # a ban is the server's: every worker refuses the address (the one that banned it too)
        if msg.seconds > 0:
            self.broadcast(m.Banned(msg.ip, msg.seconds))

    def handle_hls_visit(self, w: WorkerProc, msg: m.HlsVisit) -> None:
        # to the viewer's owner; with no such worker (it died) the viewer is gone
        target = self._worker_in(msg.slot)
        if target is None:
            self.send(w, m.HlsVisitResult(msg.req, "unknown"))
        else:
            self.send(target, m.HlsVisited(w.slot, msg.req, msg.ctx, msg.sent))

    def handle_hls_bytes(self, w: WorkerProc, msg: m.HlsBytes) -> None:
        target = self._worker_in(msg.slot)
        if target is not None:
            self.send(target, m.HlsSent(msg.sent))

    def handle_hls_visit_answer(self, w: WorkerProc, msg: m.HlsVisitAnswer) -> None:
        target = self._worker_in(msg.origin)
        if target is not None:
            self.send(target, m.HlsVisitResult(msg.req, msg.state))

    def handle_hls_watch(self, w: WorkerProc, msg: m.HlsWatch) -> None:
        slots = self.hls_watchers.setdefault(msg.key, set())
        if msg.on:
            slots.add(w.slot)
            # a change told before this one was handled did not reach the worker: it reads again
            self.send(w, m.HlsChange(msg.key, "watch"))
        else:
            slots.discard(w.slot)
            if not slots:
                del self.hls_watchers[msg.key]

    def handle_hls_changed(self, w: WorkerProc, msg: m.HlsChanged) -> None:
        # LL-HLS: wake the held requests of the stream on the workers that hold some
        for slot in self.hls_watchers.get(msg.key, ()):
            target = self._worker_in(slot) if slot != w.slot else None
            if target is not None:
                self.send(target, m.HlsChange(msg.key, msg.kind))

    def _worker_in(self, slot: int) -> WorkerProc | None:
        return next((x for x in self.workers.values() if x.slot == slot and not x.stopping), None) or \
            next((x for x in self.workers.values() if x.slot == slot), None)

    def _ask_stats(self, slot: int, sid: int, query: ClientQuery) -> None:
        w = self._worker_in(slot)
        if w is not None:
            self.send(w, m.StatsRequest(sid, query))

    def _answer_snapshot(self, slot: int, req: int, results: dict[int, dict[str, Any]]) -> None:
        w = self._worker_in(slot)
        if w is not None:
            self.send(w, m.SnapshotReply(req, results, self.master_info()))

    def master_info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started": self.started,
            "version": __version__,
            "config": self.config.path,
            "num_workers": self.num_workers,
            "workers": [{"slot": w.slot, "pid": w.pid, "ready": w.ready,
                         "age": time.monotonic() - w.started} for w in self.workers.values()],
            "worker_restarts": self.worker_restarts,
            "reloads_ok": self.reloads_ok,
            "reloads_failed": self.reloads_failed,
            "last_reload": self.last_reload,
            "retired": dict(self.retired),
            "streams": self.streams.table(),
            "stopping": self.stopping.value if self.stopping else "",
            "ready": self.announced_ready and not self.stopping,
        }
