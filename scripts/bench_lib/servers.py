"""The servers scripts/bench compares: srv, nginx-rtmp (Debian), node-media-server (npm).

Each server gets its own temp directory and config, is started pinned to one core with
`taskset`, measured over its whole process tree (master + workers) with psutil, and stopped
by pid (SIGTERM to the process we started). Peers are installed on first use from their
registries: `apt-get install nginx libnginx-mod-rtmp`, `npm install node-media-server@2.7.4`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

TOP = Path(__file__).resolve().parents[2]
BENCH_DIR = TOP / "objs" / "bench"
NMS_VERSION = "2.7.4"
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"  # Debian's libnginx-mod-stream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 90.0) -> None:
    """Until something accepts on `port`: a ceiling, not a speed claim (a server pinned to one
    loaded core took over 20 s to start when the test suite ran the feature scenarios)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Server:
    """One server under test: subclasses write the config and the command line."""

    name: str
    core: str = "0"
    port: int = field(default_factory=free_port)
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: BENCH_DIR / "run")

    app = "live"

    def rtmp_url(self, stream: str = "s") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{self.app}/{stream}"

    def publish_url(self, stream: str = "s") -> str:
        """Where the bench publishes (an edge pair: its origin)."""
        return self.rtmp_url(stream)

    def flv_url(self, stream: str = "s") -> str | None:
        return None

    def install(self) -> None:
        pass

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.install()
        self.workdir = BENCH_DIR / "run" / f"{self.name}-{self.port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = ["taskset", "-c", self.core, *self.command()]
        log = open(self.workdir / "stdout.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=TOP)
        try:
            wait_port(self.port)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; see {self.workdir}/stdout.log") from e

    def processes(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The processes doing the data plane (for py-spy and the per-worker numbers)."""
        procs = self.processes()
        return procs[1:] or procs[:1]

    def sample(self) -> dict[str, float]:
        """CPU seconds, RSS and write-family syscalls (write/writev: each a send on a socket,
        for libuv and nginx) of the whole tree (exited children are not counted)."""
        cpu = rss = writes = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
                writes += p.io_counters().write_count
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return {"cpu": cpu, "rss": rss, "writes": writes}

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for p in reversed(self.processes()):
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        pass
                self.proc.wait(5)
        self.proc = None


def self_signed(workdir: Path) -> None:
    """workdir/server.key + server.crt: RSA-2048, self-signed (the load client checks nothing)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.crt"],
                   cwd=workdir, check=True, capture_output=True)


@dataclass
class SrvServer(Server):
    name: str = "srv"
    workers_n: int = 1
    mw_latency: int = 350
    min_latency: bool = False
    forward_to: list[str] = field(default_factory=list)
    http_flv: bool = False
    tls: bool = False  # also serve RTMPS (a self-signed certificate made with openssl)
    tls_port: int = 0
    dvr: str = ""  # record every stream: "flv" or "mp4" (DVR, session plan) under workdir/dvr
    extra_conf: str = ""  # more top-level directives (a heartbeat { } to a proxy)
    hls: bool = False  # write HLS (2 s fragments, 10 s window) into workdir/html, served over HTTP
    hls_extra: str = ""  # more hls { } directives (later ones win: the llhls scenario's LL-HLS)
    hooks: str = ""  # http_hooks on_publish/on_play to this base URL (+ /on_publish, /on_play)
    origin: str = ""  # an edge: cluster { mode remote; origin <this>; }
    mr_latency: int = 0  # > 0: publish { mr on; mr_latency <ms>; } (SRS's merged read)
    tcp_nodelay: bool | None = None  # the vhost's tcp_nodelay (None: srv's default, off)
    tree: str = ""  # run the srv package of this source tree instead of this one's

    def rtmps_url(self, stream: str = "s") -> str:
        return f"rtmps://127.0.0.1:{self.tls_port}/{self.app}/{stream}"

    def flv_url(self, stream: str = "s") -> str | None:
        if not self.http_flv:
            return None
        return f"http://127.0.0.1:{self.http_port}/{self.app}/{stream}.flv"

    def command(self) -> list[str]:
        conf = self.workdir / "srv.conf"
        vhost = [f"play {{ mw_latency {self.mw_latency}; }}"]
        if self.min_latency:
            vhost.append("min_latency on;")
        if self.tcp_nodelay is not None:
            vhost.append(f"tcp_nodelay {'on' if self.tcp_nodelay else 'off'};")
        if self.mr_latency:
            vhost.append(f"publish {{ mr on; mr_latency {self.mr_latency}; }}")
        if self.forward_to:
            vhost.append(f"forward {{ enabled on; destination {' '.join(self.forward_to)}; }}")
        if self.dvr:
            vhost.append(f"dvr {{ enabled on; dvr_path {self.workdir}/dvr/[app]/[stream].{self.dvr}; }}")
        if self.hooks:
            vhost.append(f"http_hooks {{ enabled on; on_publish {self.hooks}/on_publish; "
                         f"on_play {self.hooks}/on_play; }}")
        if self.origin:
            vhost.append(f"cluster {{ mode remote; origin {self.origin}; }}")
        http = ""
        if self.http_flv:
            self.http_port = self.http_port or free_port()
            http = f"http_server {{ enabled on; listen 127.0.0.1:{self.http_port}; }}\n"
            vhost.append("http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }")
        if self.hls:
            self.http_port = self.http_port or free_port()
            html = self.workdir / "html"
            http += f"http_server {{ enabled on; listen 127.0.0.1:{self.http_port}; dir {html}; }}\n"
            # hls_ctx off: plain files, as nginx-rtmp serves them (no per-viewer playlist)
            vhost.append(f"hls {{ enabled on; hls_fragment 2; hls_window 10; hls_path {html}; "
                         f"hls_dispose 0; hls_ctx off; {self.hls_extra} }}")
        if self.tls:
            self.tls_port = self.tls_port or free_port()
            self_signed(self.workdir)
            http += (f"rtmps {{ enabled on; listen 127.0.0.1:{self.tls_port}; "
                     f"key {self.workdir}/server.key; cert {self.workdir}/server.crt; }}\n")
        conf.write_text(
            f"listen 127.0.0.1:{self.port};\n"
            f"pid {self.workdir}/srv.pid;\n"
            "daemon off;\nmax_connections 20000;\n"
            f"srs_log_tank file;\nsrs_log_file {self.workdir}/srv.log;\nsrs_log_level warn;\n"
            f"workers {self.workers_n};\n{http}{self.extra_conf}"
            "vhost __defaultVhost__ {\n    " + "\n    ".join(vhost) + "\n}\n"
        )
        if self.tree:  # `python -m srv` from the tree's top: its srv package comes first on sys.path
            python = TOP / "objs" / "venv" / "bin" / "python"
            return ["sh", "-c", f'cd "{self.tree}" && exec "{python}" -m srv -c "{conf}"']
        return [str(TOP / "objs" / "srs"), "-c", str(conf)]


@dataclass
class OriginBehind(Server):
    """A front server with an origin behind it on the same core: `sample()` is the front's tree
    only (what the front costs); each sample also takes the origin's, so `origin_cpu()` gives the
    origin's CPU seconds over the last measured window."""

    origin: Server | None = None
    origin_samples: list[dict[str, float]] = field(default_factory=list)

    def sample(self) -> dict[str, float]:
        if self.origin is not None:
            self.origin_samples.append(self.origin.sample())
        return super().sample()

    def origin_cpu(self) -> float:
        """The origin's CPU seconds between the last two samples (one measured window)."""
        a, b = self.origin_samples[-2:]
        return b["cpu"] - a["cpu"]

    def stop(self) -> None:
        super().stop()
        if self.origin is not None:
            self.origin.stop()


@dataclass
class SrvProxy(OriginBehind):
    """An srv origin-cluster proxy (memory balancer, one worker) with one srv origin behind it;
    the publisher and the players connect to the proxy."""

    name: str = "srv-proxy"

    def command(self) -> list[str]:
        api = free_port()
        self.origin = SrvServer(name="srv-origin", core=self.core, extra_conf=(
            f"heartbeat {{ enabled on; interval 0.5; url http://127.0.0.1:{api}/api/v1/srs/register; ports on; }}\n"))
        conf = self.workdir / "proxy.conf"
        conf.write_text(
            f"listen 127.0.0.1:{self.port};\npid {self.workdir}/proxy.pid;\ndaemon off;\nmax_connections 20000;\n"
            f"srs_log_tank file;\nsrs_log_file {self.workdir}/proxy.log;\nsrs_log_level warn;\nworkers 1;\n"
            f"proxy {{ enabled on; system_api 127.0.0.1:{api}; load_balancer memory; }}\n")
        return [str(TOP / "objs" / "srs"), "-c", str(conf)]

    def start(self) -> None:
        super().start()
        assert self.origin is not None
        self.origin.start()
        time.sleep(2)  # a few heartbeats: the origin is registered before the publisher comes


@dataclass
class EdgePair(OriginBehind):
    """An edge and its origin, the same software, both on `core` (one worker each): players
    connect to the edge (srv `cluster { mode remote; }`, nginx-rtmp `pull`), which pulls each
    stream once from the origin, where the bench publishes."""

    name: str = "srv-edge"
    kind: str = "srv"  # or "nginx"
    edge: Server | None = None

    def start(self) -> None:
        self.origin = make(self.kind, name=f"{self.kind}-origin", core=self.core)
        self.origin.start()
        upstream = f"127.0.0.1:{self.origin.port}"
        self.edge = make(self.kind, name=f"{self.kind}-edge", core=self.core, port=self.port,
                         **({"origin": upstream} if self.kind == "srv" else {"pull": upstream}))
        try:
            self.edge.start()
        except RuntimeError:
            self.origin.stop()
            raise
        self.workdir, self.proc = self.edge.workdir, self.edge.proc

    def publish_url(self, stream: str = "s") -> str:
        assert self.origin is not None
        return self.origin.rtmp_url(stream)

    def stop(self) -> None:
        if self.edge is not None:
            self.edge.stop()
        self.proc = None
        super().stop()


@dataclass
class NginxServer(Server):
    """Debian's nginx + libnginx-mod-rtmp: one worker process, sends each message at once."""

    name: str = "nginx"
    hls: bool = False  # `hls on;` (2 s fragments, 10 s playlist) and nginx's http serving it
    record: bool = False  # `record all;` (FLV, record_unique) into workdir/dvr
    tls: bool = False  # RTMPS: nginx's `stream { }` TLS termination in front of its own rtmp listener
    tls_port: int = 0
    hooks: str = ""  # on_publish/on_play to this base URL (+ /on_publish, /on_play)
    pull: str = ""  # an edge: `pull rtmp://<this>/live;` (nginx-rtmp's relay)

    def rtmps_url(self, stream: str = "s") -> str:
        return f"rtmps://127.0.0.1:{self.tls_port}/{self.app}/{stream}"

    def install(self) -> None:
        need = [NGINX_RTMP_MODULE, *([NGINX_STREAM_MODULE] if self.tls else [])]
        if shutil.which("nginx") and all(os.path.exists(m) for m in need):
            return
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx", "libnginx-mod-rtmp",
                        *(["libnginx-mod-stream"] if self.tls else [])], check=True, env=env)

    def command(self) -> list[str]:
        conf = self.workdir / "nginx.conf"
        app, http = "live on;", ""
        if self.hls:
            self.http_port = self.http_port or free_port()
            html = self.workdir / "html"
            html.mkdir(parents=True, exist_ok=True)  # nginx-rtmp makes hls_path, not its parents
            app += (f" hls on; hls_path {html / self.app}; hls_fragment 2s; hls_playlist_length 10s;")
            http = ("http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n"
                    "  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }\n"
                    f"  server {{ listen 127.0.0.1:{self.http_port}; root {html}; }} }}\n")
        if self.record:
            (self.workdir / "dvr").mkdir(parents=True, exist_ok=True)
            (self.workdir / "dvr").chmod(0o777)  # nginx's worker runs as nobody
            app += f" record all; record_path {self.workdir / 'dvr'}; record_unique on;"
        if self.hooks:
            app += f" on_publish {self.hooks}/on_publish; on_play {self.hooks}/on_play;"
        if self.pull:
            app += f" pull rtmp://{self.pull}/{self.app};"
        modules = f"load_module {NGINX_RTMP_MODULE};\n"
        if self.tls:
            self.tls_port = self.tls_port or free_port()
            self_signed(self.workdir)
            modules += f"load_module {NGINX_STREAM_MODULE};\n"
            http += (f"stream {{ server {{ listen 127.0.0.1:{self.tls_port} ssl; "
                     f"ssl_certificate {self.workdir}/server.crt; ssl_certificate_key {self.workdir}/server.key; "
                     # 1.22's default stops at TLS 1.2: offer 1.3, as srv does (AES-256-GCM either way)
                     "ssl_protocols TLSv1.2 TLSv1.3; "
                     f"proxy_pass 127.0.0.1:{self.port}; }} }}\n")
        conf.write_text(
            modules +
            "worker_processes 1;\ndaemon off;\nmaster_process on;\n"
            "worker_rlimit_nofile 65536;\n"
            f"pid {self.workdir}/nginx.pid;\nerror_log {self.workdir}/error.log warn;\n"
            "events { worker_connections 20000; }\n"
            f"rtmp {{ server {{ listen 127.0.0.1:{self.port}; "
            f"application {self.app} {{ {app} }} }} }}\n{http}"
        )
        return ["nginx", "-p", str(self.workdir), "-c", str(conf)]


@dataclass
class NmsServer(Server):
    """node-media-server 2.x from npm (node's single thread; gop cache on)."""

    name: str = "nms"

    def install(self) -> None:
        mod = BENCH_DIR / "nms" / "node_modules" / "node-media-server" / "package.json"
        if not mod.exists():
            (BENCH_DIR / "nms").mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                            f"node-media-server@{NMS_VERSION}"], cwd=BENCH_DIR / "nms", check=True)

    def command(self) -> list[str]:
        script = self.workdir / "nms.js"
        script.write_text(
            f"const NMS = require({str(BENCH_DIR / 'nms' / 'node_modules' / 'node-media-server')!r});\n"
            f"new NMS({{logType: 1, rtmp: {{port: {self.port}, chunk_size: 60000, "
            "gop_cache: true, ping: 30, ping_timeout: 60}}).run();\n"
        )
        return ["node", str(script)]


def make(kind: str, **kw: object) -> Server:
    """A server by its bench name; `srv-mr<ms>` is srv with `publish { mr on; mr_latency <ms>; }`
    (`srv-mr`: 350, SRS's default); `srv@<dir>` is the srv source tree in <dir>, run with this
    tree's venv (the same workload on the code before a change, in the same run); the two combine
    (`srv-mr@<dir>`)."""
    base, _, tree = kind.partition("@")
    if tree:  # another tree's srv (e.g. `git archive` of a base commit): A/B in one run
        kw["tree"] = tree
    if base.startswith("srv-mr"):
        return SrvServer(name=kind, mr_latency=int(base[6:] or 350), **kw)  # type: ignore[arg-type]
    if base == "srv" and tree:
        return SrvServer(name=kind, **kw)  # type: ignore[arg-type]
    cls = {"srv": SrvServer, "nginx": NginxServer, "nms": NmsServer}[kind]
    return cls(**kw)  # type: ignore[arg-type]
