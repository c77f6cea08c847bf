"""A worker process: one asyncio (uvloop) loop serving the sockets it inherited from the master.

Forked by the master; it builds a fresh event loop (it never touches anything loop-related of
its parent), serves RTMP and HTTP on its slot's SO_REUSEPORT sockets, and an internal unix
socket on which other workers pull the streams published here. It heart-beats the master from
inside its loop, so a stuck loop is noticed and the worker replaced; a slow one (a turn of the
loop longer than the master's patience, on a starved core) beats from inside that turn
(`srv/net/pulse.py`) and is kept.

Signals (sent by the master; the SIGNALS table, dispatched to `handle_<sig>` like the master's):
QUIT graceful stop — keep accepting for `grace_start_wait`, then close the listeners and let
sessions finish for up to `grace_final_wait`; TERM/INT fast stop; USR1 reopen log files;
HUP/TTIN/TTOU are the master's business and ignored. ABRT (the master's answer to a missed
heartbeat) makes faulthandler write every thread's stack to the log before the worker dies.
The master's reload arrives as a `Config` message and is applied in place. Messages from the
master go to `handle_<name>` (`srv/process/messages.py`); a bad frame is logged and dropped,
never fatal.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import uvloop
from setproctitle import setproctitle

from srv import log as srvlog
from srv.app.hub import StreamHub
from srv.cluster.role import ProxyRole
from srv.conf.listen import ListenSpec
from srv.conf.model import ServerConfig
from srv.http.hls_serve import expire_viewers
from srv.http.openfiles import FILES as OPEN_FILES
from srv.http.server import HttpConnection
from srv.net import dvr, hooks, pulse
from srv.net.context import ClientQuery
from srv.net.edge import EdgePull, EdgePush
from srv.net.forward import Forwarder
from srv.net.hls import start_hls
from srv.net.proxy_gate import ProxyGate, read_before_tls
from srv.net.pull import Pull
from srv.net.rtmp_server import RtmpServerProtocol
from srv.net.tls import TlsError, TlsListener, server_context
from srv.process import WORKER_BOOT_ERROR, Stop, signal_handler_name
from srv.process import messages as m
from srv.process.channel import Channel, FrameTooLarge
from srv.worker_context import WorkerContext

log = logging.getLogger("srv.worker")

HEARTBEAT_INTERVAL = 1.0
#: a heartbeat this late (seconds) means the loop was held: logged, with how long
STALL_WARNING = 1.0
# signs HLS viewers' hls_ctx: made when the master imports this module, before it forks any
# worker, so every worker of one server (respawned ones too) shares it; a new server, a new one
SERVER_SECRET = secrets.token_bytes(32)

# signal -> what a worker does (each to its `handle_<sig>`); a test checks every one has its handler
SIGNALS = {
    signal.SIGQUIT: "graceful stop",
    signal.SIGTERM: "fast stop",
    signal.SIGINT: "fast stop",
    signal.SIGUSR1: "reopen log files",
    signal.SIGHUP: "ignored: the master reloads",
    signal.SIGTTIN: "ignored: the master's worker count",
    signal.SIGTTOU: "ignored: the master's worker count",
}


def pull_address(master_pid: int, slot: int) -> str:
    """The abstract unix socket where worker `slot` serves pulls (no file to clean up)."""
    return f"\0srv-{master_pid}-{slot}"


class MasterChannel:
    """The worker's end of the control channel: requests with futures, pushes to the worker."""

    def __init__(self, sock: socket.socket, worker: Worker) -> None:
        self.chan = Channel(sock)
        self.worker = worker
        self.loop = asyncio.get_running_loop()
        self.futures: dict[int, asyncio.Future[Any]] = {}
        self.next_req = 1
        self.master_pid = worker.master_pid
        self.handlers = m.handlers(worker, m.TO_WORKER)
        self.loop.add_reader(self.chan.fileno(), self._readable)

    def send(self, msg: m.Message) -> None:
        self.chan.send(msg)
        self._write()

    def _write(self) -> None:
        if self.chan.flush():
            self.loop.add_writer(self.chan.fileno(), self._write)
        else:
            self.loop.remove_writer(self.chan.fileno())

    def _readable(self) -> None:
        got = self.chan.receive()
        if got is None:
            self.loop.remove_reader(self.chan.fileno())
            log.error("master went away; stopping")
            self.worker.stop(graceful=False)
            return
        frames, fds = got
        self.worker.incoming_fds.extend(fds)
        for msg in frames:
            try:
                handler = m.accept(self.handlers, msg)
            except m.BadMessage as e:
                log.error("bad control frame from the master, dropped: %s", e)
                continue
            try:
                handler(msg)
            except Exception:
                log.exception("control message %s failed", getattr(msg, "name", "?"))

    def request(self, make: Callable[[int], m.Message]) -> asyncio.Future[Any]:
        """Send `make(req)` and return the future its reply (same `req`) resolves."""
        req = self.next_req
        self.next_req += 1
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.futures[req] = fut
        self.send(make(req))
        return fut

    def resolve(self, req: int, reply: m.Message) -> None:
        fut = self.futures.pop(req, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    # Registry, for the hub
    async def claim(self, key: str) -> int | None:
        reply: m.ClaimResult = await self.request(lambda req: m.Claim(req, key))
        return None if reply.ok or reply.owner is None else reply.owner

    def release(self, key: str) -> None:
        self.send(m.Release(key))

    # For the HTTP API
    async def snapshot(self, query: ClientQuery | None = None) -> dict[str, Any]:
        """The whole server's figures: {"workers": {slot: WorkerContext.snapshot()}, "master": ...}."""
        fut = self.request(lambda req: m.Snapshot(req, query or ClientQuery()))
        reply: m.SnapshotReply = await asyncio.wait_for(fut, 5)
        return {"workers": reply.workers, "master": reply.master}

    async def reload(self) -> bool:
        reply: m.ReloadResult = await asyncio.wait_for(self.request(m.Reload), 10)
        return reply.ok

    def admit(self, ip: str) -> asyncio.Future[Any]:
        """Ask the master whether a new connection from `ip` may stay; resolves to AdmitResult."""
        return self.request(lambda req: m.Admit(req, ip))

    def leave(self, ip: str) -> None:
        self.send(m.Leave(ip))

    def ban(self, ip: str, seconds: float) -> None:
        self.send(m.Ban(ip, seconds))

    def hls_visit(self, slot: int, ctx: str, sent: int) -> asyncio.Future[Any]:
        """What worker `slot` says of its HLS viewer `ctx`: resolves to HlsVisitResult."""
        return self.request(lambda req: m.HlsVisit(req, slot, ctx, sent))

    def hls_changed(self, key: str, kind: str) -> None:
        self.send(m.HlsChanged(key, kind))

    def hls_watch(self, key: str, on: bool) -> None:
        self.send(m.HlsWatch(key, on))

    def kick(self, client_id: str) -> bool:
        try:
            slot = int(client_id.split("-", 1)[0])
        except ValueError:
            return False
        if slot == self.worker.slot:
            return self.worker.kick(client_id)
        self.send(m.KickRequest(slot, client_id))
        return True


class Worker:
    def __init__(self, slot: int, config: ServerConfig, listeners: dict[ListenSpec, socket.socket],
                 chan: socket.socket, master_pid: int) -> None:
        self.slot = slot
        self.config = config
        self.listen_socks = listeners
        self.chan_sock = chan
        self.master_pid = master_pid
        self.servers: dict[ListenSpec, asyncio.base_events.Server | TlsListener] = {}
        self.internal: asyncio.base_events.Server | None = None
        self.incoming_fds: list[int] = []
        self.stopping: Stop | None = None
        self.proxy: ProxyRole | None = None

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        self.channel = MasterChannel(self.chan_sock, self)
        self.hub = StreamHub(self.config, self.slot, self.channel, loop)
        self.ctx = WorkerContext(self.slot, self.config, self.hub, loop, self.channel,
                                 master_pid=self.master_pid, secret=SERVER_SECRET)
        self._wire_hub()
        dvr.recover(self.ctx)  # what crashed workers were recording
        if self.config.proxy.enabled:
            self.proxy = ProxyRole(self.ctx, self.config.proxy, self.master_pid)
        self.install_signals(loop)
        try:
            for spec, sock in self.listen_socks.items():
                await self.start_listener(spec, sock)
            self.internal = await loop.create_unix_server(
                lambda: RtmpServerProtocol(self.ctx, internal=True), pull_address(self.master_pid, self.slot))
        except Exception as e:
            log.error("worker %d cannot start: %s", self.slot, e)
            return WORKER_BOOT_ERROR
        self.channel.send(m.Ready())
        log.log(srvlog.INFO, "worker %d ready, pid %d", self.slot, os.getpid())
        beat = loop.create_task(self.heartbeat())
        await self.done
        beat.cancel()
        await hooks.drain()  # on_unpublish/on_close of the clients the stop closed
        await self.ctx.disk.drain()  # the files the stopped recordings were finishing
        self.ctx.disk.close()
        await self.ctx.hooks.aclose()
        if self.proxy is not None:
            await self.proxy.aclose()
        return 0

    def _wire_hub(self) -> None:
        def make_pull(src: Any, owner: int) -> Pull:
            return Pull(self.ctx, src, owner, pull_address(self.master_pid, owner))

        self.hub.make_pull = make_pull
        self.hub.make_forwarder = lambda src, dest, fw: Forwarder(self.ctx, src, dest, fw)
        self.hub.make_edge_pull = lambda src, params: EdgePull(self.ctx, src, params)
        self.hub.make_edge_push = lambda src: EdgePush(self.ctx, src)
        self.hub.recorders["hls"] = lambda src: start_hls(self.ctx, src)
        self.hub.recorders["dvr"] = lambda src: dvr.make_recorder(self.ctx, src)

    async def start_listener(self, spec: ListenSpec, sock: socket.socket) -> None:
        def protocol(client: tuple[str, int] | None = None) -> asyncio.Protocol:
            if self.proxy is not None:  # proxy { }: relay to origins (docs/cluster.md)
                relayed = self.proxy.protocol(spec)
                if relayed is not None:
                    return relayed
            if spec.kind == "rtmp":
                return RtmpServerProtocol(self.ctx, client=client)
            return HttpConnection(self.ctx, spec.services, client=client)

        def factory() -> asyncio.Protocol:
            if spec.proxy_protocol:  # load balancers only: the PROXY header says who the client is
                return ProxyGate(self.ctx, protocol, str(spec))
            return protocol()

        if spec.tls is not None:  # a PROXY header comes before TLS: the listener reads it first
            cert, key = spec.tls
            door = (lambda conn, peer, where: read_before_tls(self.ctx, conn, peer, where)) \
                if spec.proxy_protocol else None
            self.servers[spec] = TlsListener(
                self.loop, sock, server_context(cert, key), protocol, str(spec),
                lambda: self.config.handshake_timeout / 1000, lambda why: self.ctx.reject("tls_handshake"),
                door)
        else:
            self.servers[spec] = await self.loop.create_server(factory, sock=sock)

    def reload_certificates(self) -> None:
        """Read every TLS listener's files again: new handshakes use the new certificate, sessions
        under way keep theirs; files that do not load leave the listener on its old ones."""
        for spec, server in self.servers.items():
            if isinstance(server, TlsListener) and spec.tls is not None:
                try:
                    server.context = server_context(*spec.tls)
                except TlsError as e:
                    log.error("%s: %s; keeping the certificate loaded before", spec, e)

    async def heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        def send() -> None:
            self.channel.send(m.Heartbeat(dict(self.ctx.counters)))

        pulse.bind(send)  # the same heartbeat, from inside a long turn of the loop
        while True:
            late = loop.time() - due
            inside = pulse.timer_beat()
            if late > STALL_WARNING:  # the master kills at worker_timeout: say it before that
                if inside:  # callbacks kept running: a slow loop (a starved core), not a stuck one
                    log.warning("worker %d: event loop held for %.1fs (heartbeat late; %d heartbeats "
                                "sent from inside the long turn: slow, not stuck)", self.slot, late, inside)
                else:
                    log.warning("worker %d: event loop held for %.1fs (heartbeat late)", self.slot, late)
            self.hub.sample_rates()
            self.ctx.refresh_bytes()
            expire_viewers(self.ctx)
            OPEN_FILES.expire()
            for slot, sent in self.ctx.hls.take_all_pending().items():
                self.channel.send(m.HlsBytes(slot, sent))
            send()
            due = loop.time() + HEARTBEAT_INTERVAL
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    # ---- control messages ----------------------------------------------------------------------

    def handle_claim_result(self, msg: m.ClaimResult) -> None:
        self.channel.resolve(msg.req, msg)

    def handle_snapshot_reply(self, msg: m.SnapshotReply) -> None:
        self.channel.resolve(msg.req, msg)

    def handle_reload_result(self, msg: m.ReloadResult) -> None:
        self.channel.resolve(msg.req, msg)

    def handle_streams(self, msg: m.Streams) -> None:
        self.hub.on_streams(msg.table)

    def handle_published(self, msg: m.Published) -> None:
        self.hub.on_published(msg.key, msg.slot)

    def handle_unpublished(self, msg: m.Unpublished) -> None:
        self.hub.on_unpublished(msg.key, msg.slot)

    def handle_stats_request(self, msg: m.StatsRequest) -> None:
        try:
            self.channel.send(m.Stats(msg.sid, self.ctx.snapshot(msg.query)))
        except FrameTooLarge as e:  # not expected with trimmed, paged snapshots; say so
            log.error("snapshot not sent: %s", e)

    def handle_admit_result(self, msg: m.AdmitResult) -> None:
        self.channel.resolve(msg.req, msg)

    def handle_hls_visited(self, msg: m.HlsVisited) -> None:
        state = self.ctx.hls.visit(msg.ctx, msg.sent, time.monotonic())
        self.channel.send(m.HlsVisitAnswer(msg.origin, msg.req, state.value))

    def handle_hls_sent(self, msg: m.HlsSent) -> None:
        self.ctx.hls.add_sent(msg.sent)

    def handle_hls_visit_result(self, msg: m.HlsVisitResult) -> None:
        self.channel.resolve(msg.req, msg)

    def handle_hls_change(self, msg: m.HlsChange) -> None:
        self.ctx.playlists.notified(msg.key, msg.kind)

    def handle_banned(self, msg: m.Banned) -> None:
        self.ctx.limiter.ban(self.ctx.config.per_ip, msg.ip, time.monotonic(), msg.seconds)

    def handle_kick(self, msg: m.Kick) -> None:
        self.kick(msg.client_id)

    def handle_config(self, msg: m.Config) -> None:
        self.apply_config(msg.config, msg.listeners)

    def kick(self, client_id: str) -> bool:
        client = self.ctx.clients.get(client_id)
        if client is None:
            return False
        client.kick("kicked by the HTTP API")
        return True

    def apply_config(self, config: ServerConfig, listeners: list[ListenSpec] | None) -> None:
        self.config = config
        self.ctx.config = config
        srvlog.setup(config.srs_log_tank, config.srs_log_level, config.srs_log_file, fmt=config.srs_log_format)
        dump_stacks_on_abort()
        self.hub.apply_config(config)
        self.reload_certificates()
        if listeners is not None:
            fds, self.incoming_fds = self.incoming_fds, []
            self.loop.create_task(self._swap_listeners(listeners, fds))
        log.log(srvlog.INFO, "worker %d applied the new config", self.slot)

    async def _swap_listeners(self, specs: list[ListenSpec], fds: list[int]) -> None:
        new = dict(zip(specs, fds, strict=True))
        for spec, server in list(self.servers.items()):
            if spec not in new:
                server.close()
                del self.servers[spec]
        for spec, fd in new.items():
            if spec in self.servers:
                os.close(fd)
                continue
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            await self.start_listener(spec, sock)
            log.log(srvlog.TRACE, "worker %d now listens on %s", self.slot, spec)

    # ---- signals: handle_<sig> -----------------------------------------------------------------

    def install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in SIGNALS:
            loop.add_signal_handler(sig, getattr(self, signal_handler_name(sig)))

    def handle_quit(self) -> None:
        self.stop(graceful=True)

    def handle_term(self) -> None:
        self.stop(graceful=False)

    def handle_int(self) -> None:
        self.stop(graceful=False)

    def handle_usr1(self) -> None:
        srvlog.reopen()
        dump_stacks_on_abort()
        log.log(srvlog.TRACE, "SIGUSR1: log files reopened")

    def handle_hup(self) -> None:
        """The master reloads and sends the new config over the channel: nothing to do here."""

    def handle_ttin(self) -> None:
        """The master's worker count."""

    def handle_ttou(self) -> None:
        """The master's worker count."""

    # ---- stop ------------------------------------------------------------------------------------

    def stop(self, graceful: bool) -> None:
        if self.stopping is Stop.FAST or (self.stopping and graceful):
            return
        self.stopping = Stop.GRACEFUL if graceful else Stop.FAST
        self.ctx.stopping = True
        if graceful:
            self.loop.create_task(self._graceful())
        else:
            self._close_listeners()
            for client in list(self.ctx.clients.values()):
                client.kick("server stopping")
            if not self.done.done():
                self.done.set_result(None)

    def _close_listeners(self) -> None:
        self.ctx.draining = True  # from here on a connection still in the accept queue is refused
        for server in self.servers.values():
            server.close()
        self.servers.clear()
        if self.internal is not None:
            self.internal.close()

    async def _graceful(self) -> None:
        """QUIT: serve new clients as usual for `grace_start_wait` (health says not ready, so a
        load balancer moves away), then close the listeners and let sessions end."""
        cfg = self.config
        await asyncio.sleep(cfg.grace_start_wait / 1000)
        self._close_listeners()
        deadline = time.monotonic() + cfg.grace_final_wait / 1000
        while self.ctx.clients and time.monotonic() < deadline and self.stopping is Stop.GRACEFUL:
            await asyncio.sleep(0.1)
        left = len(self.ctx.clients)
        if left:
            log.log(srvlog.TRACE, "grace_final_wait over; closing %d sessions", left)
        for client in list(self.ctx.clients.values()):
            client.kick("server stopping")
        if not self.done.done():
            self.done.set_result(None)


def dump_stacks_on_abort() -> None:
    """SIGABRT (a hung worker, from the master) writes every thread's stack to the log, then
    the default action ends the process. Re-armed whenever the log file is reopened."""
    faulthandler.enable(srvlog.stream(), all_threads=True)


def run_worker(slot: int, config: ServerConfig, listeners: dict[ListenSpec, socket.socket],
               chan: socket.socket, master_pid: int) -> int:
    """Entry point in the forked child; returns the exit code."""
    setproctitle(f"srs: worker process {slot}")
    srvlog.set_role(f"w{slot}")
    dump_stacks_on_abort()
    loop = uvloop.new_event_loop()  # a dependency, imported when the master starts: never a fallback
    asyncio.set_event_loop(loop)
    worker = Worker(slot, config, listeners, chan, master_pid)
    try:
        code = loop.run_until_complete(worker.serve())
        # let the last writes (unpublish notices, kicks) reach the kernel
        loop.run_until_complete(asyncio.sleep(0.05))
        return code
    finally:
        loop.close()
