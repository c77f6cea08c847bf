"""The master/worker control channel holds against bad frames on both ends, snapshots stay
small whatever the clients send, and a failure of the master itself reaches the log file.

The attack this answers (issue 9 §1): twenty RTMP connects with a 7 MiB tcUrl each, then one
API call or `/metrics` scrape, made every worker's snapshot pass the frame limit; the master
raised, exited 1, took every worker with it and logged `exit(0)`.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from srv.app.hub import StreamHub
from srv.conf.loader import load
from srv.master.arbiter import BAD_FRAME_LIMIT, Arbiter, WorkerProc
from srv.net.context import MAX_FIELD, ClientQuery
from srv.process import messages as m
from srv.process.channel import Channel, FrameBuffer, FrameTooLarge, encode
from srv.rtmp.chunk import encode_message
from srv.rtmp.messages import command_message, set_chunk_size_message
from srv.worker_context import WorkerContext
from tests.conftest import REPO, Server, worker_procs
from tests.test_rtmp_robustness import handshaken

# ---- framing ---------------------------------------------------------------------------------


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _feed(buf: FrameBuffer, data: bytes, bytewise: bool) -> list[object]:
    if not bytewise:
        return buf.feed(data)
    out: list[object] = []
    for i in range(len(data)):
        out += buf.feed(data[i:i + 1])
    return out


@pytest.mark.parametrize("bytewise", [False, True])
def test_an_oversized_frame_is_skipped_and_the_next_one_decodes(bytewise: bool) -> None:
    good = m.Release("v/live/s")
    data = struct.pack(">I", 5000) + b"x" * 5000 + encode(good) + b"\0\0"  # trailing partial header
    got = _feed(FrameBuffer(max_frame=1000), data, bytewise)
    assert len(got) == 2
    assert isinstance(got[0], m.BadMessage) and "5000 bytes exceeds" in str(got[0])
    assert got[1] == good


@pytest.mark.parametrize("bytewise", [False, True])
def test_undecodable_and_unpicklable_frames_are_reported_and_skipped(bytewise: bool) -> None:
    # a class the receiver cannot import, and bytes that are no pickle at all
    unpicklable = b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x0bno_such_mod\x94\x8c\x03Cls\x94\x93\x94."
    data = _frame(unpicklable) + _frame(b"garbage!") + encode(m.Ready())
    got = _feed(FrameBuffer(), data, bytewise)
    assert [type(x) for x in got] == [m.BadMessage, m.BadMessage, m.Ready]
    assert "undecodable frame" in str(got[0]) and "undecodable frame" in str(got[1])


def test_the_sender_refuses_a_frame_over_the_limit() -> None:
    with pytest.raises(FrameTooLarge):
        encode(m.Heartbeat({"x" * 2000: 1.0}), max_frame=1000)


def test_messages_of_the_wrong_shape_are_refused_before_any_handler() -> None:
    seen: list[object] = []

    class Master:
        def __getattr__(self, name: str) -> Any:
            return seen.append

    table = m.handlers(Master(), m.TO_MASTER)
    for bad in ({"op": "claim", "key": "k", "req": 1},  # the old dict shape
                m.Claim("1", "k"),  # wrong type
                m.Claim(True, "k"),  # a bool is no int
                m.Snapshot(1, ClientQuery(start="0")),  # type: ignore[arg-type]
                m.Published("k", 1)):  # a master -> worker message sent to the master
        with pytest.raises(m.BadMessage):
            m.accept(table, bad)
    m.accept(table, m.Claim(1, "k"))(m.Claim(1, "k"))
    assert seen == [m.Claim(1, "k")]


def test_every_message_has_its_handler_on_the_receiving_end() -> None:
    from srv.worker import Worker

    m.handlers(Worker, m.TO_WORKER)
    m.handlers(Arbiter, m.TO_MASTER)
    assert {c.name for c in m.TO_MASTER} >= {"heartbeat", "claim", "snapshot", "stats", "kick_request"}


# ---- the master's end ------------------------------------------------------------------------


def _conf(tmp_path: Path, body: str = "") -> Any:
    conf = tmp_path / "x.conf"
    conf.write_text(f"listen 1935;\npid {tmp_path}/x.pid;\nworkers 1;\nvhost __defaultVhost__ {{ }}\n{body}")
    return load(str(conf), {})


def test_master_drops_bad_frames_and_restarts_a_worker_that_keeps_sending_them(tmp_path: Path, caplog: Any) -> None:
    arbiter = Arbiter(_conf(tmp_path), "-c x.conf", {})
    ours, theirs = socket.socketpair()
    w = WorkerProc(2, 4242, Channel(ours, max_frame=1000), time.monotonic(), time.monotonic())
    arbiter.workers[w.pid] = w
    arbiter.sel.register(ours, 1, w)
    killed: list[tuple[int, int]] = []
    arbiter._kill = lambda pid, sig: killed.append((pid, sig))  # type: ignore[method-assign]

    theirs.sendall(struct.pack(">I", 5000) + b"\0" * 3000)  # oversized: skipped as it arrives
    arbiter._on_channel(w, 1)
    theirs.sendall(b"\0" * 2000 + encode(m.Claim(1, "v/live/s")))
    arbiter._on_channel(w, 1)
    assert len(w.bad_frames) == 1 and not killed
    assert arbiter.streams.owners == {"v/live/s": 2}  # the next good frame is served

    theirs.sendall(_frame(pickle.dumps({"op": "claim"})) + encode(m.Claim("x", "k")))  # type: ignore[arg-type]
    arbiter._on_channel(w, 1)
    assert len(w.bad_frames) == BAD_FRAME_LIMIT
    assert killed == [(4242, signal.SIGKILL)]
    assert "bad control frames in 60s" in w.killed_for
    lines = [r.getMessage() for r in caplog.records if "sent a bad control frame" in r.getMessage()]
    assert len(lines) == BAD_FRAME_LIMIT and all(line.startswith("worker 2 (pid 4242)") for line in lines)
    theirs.close()
    ours.close()


def test_master_relays_ll_hls_changes_only_to_the_workers_that_watch_the_stream(tmp_path: Path) -> None:
    arbiter = Arbiter(_conf(tmp_path), "-c x.conf", {})
    ends = {}
    for slot in (1, 2, 3):
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        w = WorkerProc(slot, 4240 + slot, Channel(ours), time.monotonic(), time.monotonic())
        arbiter.workers[w.pid] = w
        ends[slot] = (w, theirs, FrameBuffer())

    def received(slot: int) -> list[object]:
        _, sock, buf = ends[slot]
        try:
            return buf.feed(sock.recv(65536))
        except BlockingIOError:
            return []

    arbiter.handle_message(ends[2][0], m.HlsWatch("v/live/s", True))
    assert received(2) == [m.HlsChange("v/live/s", "watch")]  # read again: a change may have come first
    arbiter.handle_message(ends[1][0], m.HlsChanged("v/live/s", "part"))  # the owner's writer
    arbiter.handle_message(ends[1][0], m.HlsChanged("v/live/other", "part"))
    assert received(2) == [m.HlsChange("v/live/s", "part")]
    assert received(1) == [] and received(3) == []  # not the owner itself, not a worker that does not watch
    arbiter.handle_message(ends[2][0], m.HlsWatch("v/live/s", False))
    arbiter.handle_message(ends[1][0], m.HlsChanged("v/live/s", "chunk"))
    assert received(2) == [] and arbiter.hls_watchers == {}


# ---- the worker's end ------------------------------------------------------------------------


def test_worker_drops_bad_frames_from_the_master_and_handles_the_next(caplog: Any) -> None:
    from srv.worker import MasterChannel

    handled: list[m.Message] = []

    class FakeWorker:
        master_pid = 1
        incoming_fds: list[int] = []

        def __getattr__(self, name: str) -> Any:
            if name.startswith("handle_"):
                return handled.append
            raise AttributeError(name)

    async def go() -> None:
        ours, theirs = socket.socketpair()
        MasterChannel(ours, FakeWorker())  # type: ignore[arg-type]
        theirs.sendall(_frame(b"not a pickle") + _frame(pickle.dumps({"op": "published"}))
                       + encode(m.Claim(1, "x")) + encode(m.Published("v/live/s", 2)))
        for _ in range(50):
            await asyncio.sleep(0.01)
            if handled:
                break
        theirs.close()

    asyncio.run(go())
    assert handled == [m.Published("v/live/s", 2)]
    errors = [r.getMessage() for r in caplog.records if "bad control frame from the master" in r.getMessage()]
    assert len(errors) == 3


# ---- snapshots stay small --------------------------------------------------------------------


class FakeClient:
    def __init__(self, n: int, tc_url: str) -> None:
        self.cid = f"1-{n}"
        self.tc_url = tc_url

    def byte_counts(self) -> tuple[int, int]:
        return 10, 20

    def info(self) -> dict[str, Any]:
        return {"id": self.cid, "ip": "127.0.0.1", "vhost": "__defaultVhost__", "stream": "",
                "url": self.tc_url, "tcUrl": self.tc_url, "type": "rtmp-connect", "alive": 1.0,
                "recv_bytes": 20, "send_bytes": 10}


def test_snapshot_frames_stay_bounded_with_many_clients_and_long_fields(tmp_path: Path) -> None:
    config = _conf(tmp_path)
    loop = asyncio.new_event_loop()
    try:
        ctx = WorkerContext(1, config, StreamHub(config, 1, None, loop), loop, None)  # type: ignore[arg-type]
        long_url = "rtmp://h/live?" + "a" * (1 << 20)
        for n in range(1, 201):
            ctx.register(FakeClient(n, long_url))
        sizes = {}
        for name, query in (("metrics", ClientQuery()), ("page", ClientQuery(0, 10)),
                            ("one", ClientQuery(cid="1-7"))):
            snap = ctx.snapshot(query)
            sizes[name] = len(encode(m.Stats(1, snap)))
            assert snap["clients_total"] == 200 and snap["clients_by_type"] == {"rtmp-connect": 200}
        page = ctx.snapshot(ClientQuery(0, 10))["clients"]
        assert [c["id"] for c in page] == [f"1-{n}" for n in range(1, 11)]
        assert all(len(c["tcUrl"]) == MAX_FIELD for c in page)
        assert [c["id"] for c in ctx.snapshot(ClientQuery(cid="1-7"))["clients"]] == ["1-7"]
        # 200 clients with 1 MiB tcUrls (400 MiB of text): no more than the page's trimmed fields
        assert sizes["metrics"] < 16 * 1024
        assert sizes["one"] < 16 * 1024
        assert sizes["page"] < 10 * 2 * MAX_FIELD + 16 * 1024
    finally:
        loop.close()


# ---- on a running server ---------------------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _long_connect(port: int, tc_url: str) -> socket.socket:
    """A connection whose `connect` carries `tc_url` (the server may refuse it meanwhile:
    RTMP caps what a connect carries, and this test holds either way)."""
    s = handshaken(port)
    connect = command_message("connect", 1.0, {"app": "live", "tcUrl": tc_url})
    try:
        s.sendall(encode_message(1, 0, 0, set_chunk_size_message(1 << 20).payload, 128, 2))
        s.sendall(encode_message(20, 0, 0, connect.payload, 1 << 20, 3))
    except (ConnectionResetError, BrokenPipeError):
        pass
    return s


def test_the_master_survives_twenty_connects_with_a_7mib_tcurl_then_the_api(srs_server: Any) -> None:
    srv: Server = srs_server(workers=2, http=True)
    tc_url = f"rtmp://127.0.0.1:{srv.port}/live?" + "x" * (7 << 20)
    socks = [_long_connect(srv.port, tc_url) for _ in range(20)]
    try:
        time.sleep(2)  # let the workers take in the 140 MiB
        status, body = _get(f"http://127.0.0.1:{srv.exporter_port}/metrics")
        assert status == 200, body[:200]
        for path in ("/api/v1/summaries", "/api/v1/clients", "/api/v1/clients?start=5&count=10",
                     "/api/v1/streams", "/api/v1/vhosts"):
            status, body = _get(f"http://127.0.0.1:{srv.api_port}{path}")
            assert status == 200, (path, body[:200])
            assert json.loads(body)["code"] == 0
            assert len(body) < 2 << 20, path  # nobody's 7 MiB tcUrl comes back whole
        assert srv.proc is not None and srv.proc.poll() is None
        assert len(worker_procs(srv.master_pid)) == 2
        assert "master crashed" not in srv.log_text() and "bad control frame" not in srv.log_text()
    finally:
        for s in socks:
            s.close()


def test_api_pages_clients_with_start_and_count_as_srs(srs_server: Any) -> None:
    srv: Server = srs_server(workers=2, http=True)
    socks = [_long_connect(srv.port, f"rtmp://127.0.0.1/live?n={i}") for i in range(25)]
    try:
        def clients(query: str) -> list[dict[str, Any]]:
            status, body = _get(f"http://127.0.0.1:{srv.api_port}/api/v1/clients{query}")
            assert status == 200
            return json.loads(body)["clients"]  # type: ignore[no-any-return]

        deadline = time.monotonic() + 10
        while len(clients("?count=100")) < 25 and time.monotonic() < deadline:
            time.sleep(0.1)
        every = [c["id"] for c in clients("?count=100")]
        assert len(every) == 25 and len(set(every)) == 25
        assert [c["id"] for c in clients("")] == every[:10]  # SRS's default page: 10
        assert [c["id"] for c in clients("?start=10&count=10")] == every[10:20]
        assert [c["id"] for c in clients("?start=20&count=10")] == every[20:]
        assert [c["id"] for c in clients("?start=3&count=1")] == every[3:13]  # count is at least 10
        summary = json.loads(_get(f"http://127.0.0.1:{srv.api_port}/api/v1/summaries")[1])["data"]
        assert summary["system"]["conn_srs"] == 25
        assert sum(w["clients"] for w in summary["workers"]) == 25
    finally:
        for s in socks:
            s.close()


CRASH = """
import sys
from srv.master.arbiter import Arbiter

def manage_workers(self):
    if self.workers and all(w.ready for w in self.workers.values()):
        raise RuntimeError("injected fault in the master loop")
    type(self).real_manage(self)

Arbiter.real_manage = Arbiter.manage_workers
Arbiter.manage_workers = manage_workers
from srv.cli import main
sys.exit(main(["-c", sys.argv[1]]))
"""


def test_a_crash_of_the_master_is_in_the_log_file_with_its_traceback_and_exit_1(tmp_path: Path) -> None:
    srv = Server(tmp_path, "vhost __defaultVhost__ { }\n", workers=2)
    proc = subprocess.Popen([sys.executable, "-c", CRASH, str(srv.conf)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.wait(30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    text = srv.log_text()
    assert "[Error][master]" in text and "master crashed" in text
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: injected fault in the master loop" in text
    assert f"master pid {proc.pid} exit(1)" in text and "exit(0)" not in text
    assert "respawning" not in text  # its workers were stopped, not mourned
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == proc.pid]


def test_a_hung_worker_gets_sigabrt_logs_its_stack_and_is_replaced(srs_server: Any) -> None:
    srv: Server = srs_server(workers=2, settings={"worker_timeout": "3"})
    hung = worker_procs(srv.master_pid)[2]
    hung.send_signal(signal.SIGSTOP)  # its loop stops: no more heartbeats
    try:
        srv.wait_log(f"worker 2 (pid {hung.pid}) no heartbeat for", timeout=20)
        assert "aborting it (SIGABRT" in srv.log_text()
    finally:
        hung.send_signal(signal.SIGCONT)  # the pending SIGABRT is delivered now
    srv.wait_log(f"worker 2 (pid {hung.pid}) killed by SIGABRT (no heartbeat for", timeout=20)
    text = srv.log_text()
    dump = text[text.index("Fatal Python error: Aborted"):]
    assert "most recent call first" in dump and 'File "' in dump  # faulthandler's stack
    assert "killed by SIGKILL" not in text
    assert srv.wait_worker_ready(2, not_pid=hung.pid) == worker_procs(srv.master_pid)[2].pid
    assert not psutil.pid_exists(hung.pid) or hung.status() == psutil.STATUS_ZOMBIE


# ---- the registry and the snapshot broker, on their own --------------------------------------


def test_the_registry_keeps_one_publisher_per_stream_and_frees_a_dead_workers_streams() -> None:
    from srv.master.registry import StreamRegistry

    reg = StreamRegistry()
    assert reg.claim("v/live/a", 1) is None
    assert reg.claim("v/live/a", 1) is None  # the same worker republishing
    assert reg.claim("v/live/a", 2) == 1
    assert reg.claim("v/live/b", 1) is None and reg.claim("v/live/c", 2) is None
    assert not reg.release("v/live/a", 2) and reg.table()["v/live/a"] == 1
    assert sorted(reg.release_all(1)) == ["v/live/a", "v/live/b"]
    assert reg.table() == {"v/live/c": 2}


def test_the_broker_answers_with_every_worker_and_never_waits_for_a_dead_or_silent_one(
        monkeypatch: Any) -> None:
    from srv.master import snapshots

    asked: list[tuple[int, int, ClientQuery]] = []
    answered: list[tuple[int, int, dict[int, Any]]] = []
    broker = snapshots.SnapshotBroker(lambda *a: asked.append(a), lambda *a: answered.append(a))
    page = ClientQuery(0, 10)
    broker.start(requester=1, req=7, query=page, live={1, 2, 3})
    assert [(slot, q) for slot, _, q in asked] == [(1, page), (2, page), (3, page)]
    sid = asked[0][1]
    broker.on_stats(1, sid, {"slot": 1})
    broker.on_stats(1, sid, {"slot": 1, "again": True})  # a duplicate changes nothing
    broker.forget(3)  # died meanwhile
    assert not answered
    broker.on_stats(2, sid, {"slot": 2})
    assert answered == [(1, 7, {1: {"slot": 1}, 2: {"slot": 2}})]

    broker.start(requester=2, req=8, query=ClientQuery(), live={1, 2})
    broker.on_stats(1, asked[-1][1], {"slot": 1})
    later = time.monotonic() + snapshots.SNAPSHOT_TIMEOUT + 1
    monkeypatch.setattr(snapshots.time, "monotonic", lambda: later)
    broker.expire()  # worker 2 is hung: the reply goes out without it
    assert answered[-1] == (2, 8, {1: {"slot": 1}})
    broker.on_stats(2, asked[-1][1], {"slot": 2})  # too late: dropped
    assert len(answered) == 2 and not broker.pending


def test_every_signal_of_both_tables_goes_to_its_handle_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's signals, like the master's, are a SIGNALS table dispatched to handle_<sig>:
    every signal of each table has its handler, the worker installs exactly its table, and QUIT
    stops gracefully, TERM/INT fast, HUP/TTIN/TTOU (the master's business) do nothing."""
    from srv.master import arbiter
    from srv.process import signal_handler_name
    from srv.worker import SIGNALS, Worker

    for sig in arbiter.SIGNALS:
        assert callable(getattr(Arbiter, signal_handler_name(sig)))
    assert set(SIGNALS) == {signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                            signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU}

    class Loop:
        def __init__(self) -> None:
            self.handlers: dict[int, Any] = {}

        def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:
            assert not args
            self.handlers[sig] = callback

    worker = Worker(1, None, {}, None, 0)  # type: ignore[arg-type]
    stops: list[bool] = []
    monkeypatch.setattr(worker, "stop", lambda graceful: stops.append(graceful))
    loop = Loop()
    worker.install_signals(loop)  # type: ignore[arg-type]
    assert set(loop.handlers) == set(SIGNALS)
    for sig, callback in loop.handlers.items():
        assert callback == getattr(worker, signal_handler_name(sig))
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT):
        loop.handlers[sig]()
    assert stops == [True, False, False]
