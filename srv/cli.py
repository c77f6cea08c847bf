"""Command line, as SRS and nginx users know it.

    srs -c conf/srs.conf            run (the master forks the workers)
    srs -t -c conf/srs.conf         test the config: "... syntax is ok" / "... test is successful"
    srs -s reload -c conf/srs.conf  signal the running master (reload|quit|stop|reopen) via its pid file
    srs -c conf/srs.conf --sign publish rtmp://host/live/stream [--ttl 3600] [--key k2]
                                    print the URL with a signed ?token= (vhost signed_url)
    srs -v                          version
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from srv import __version__
from srv import log as srvlog
from srv.conf.errors import ConfigErrors
from srv.conf.loader import load
from srv.conf.model import ServerConfig

DEFAULT_CONF = "conf/srs.conf"
SIGNAL_NAMES = {"reload": signal.SIGHUP, "quit": signal.SIGQUIT, "stop": signal.SIGTERM,
                "reopen": signal.SIGUSR1}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="srs", description="srv: a live media server (RTMP, HTTP-FLV)")
    p.add_argument("-c", dest="conf", default=DEFAULT_CONF, help=f"config file (default {DEFAULT_CONF})")
    p.add_argument("-t", dest="test", action="store_true", help="test the config file and exit")
    p.add_argument("-s", dest="signal", choices=sorted(SIGNAL_NAMES),
                   help="send a signal to the running master: reload, quit (graceful), stop (fast), reopen (logs)")
    p.add_argument("-v", "-V", "--version", dest="version", action="store_true", help="print the version")
    p.add_argument("--sign", nargs=2, metavar=("ACTION", "URL"),
                   help="print URL (rtmp://host/app/stream or http://host/app/stream.flv) with a ?token= "
                        "that lets ACTION (publish or play) until --ttl seconds from now, signed with a key "
                        "of the vhost's signed_url block")
    p.add_argument("--ttl", type=int, default=3600, help="seconds the --sign token is valid (default 3600)")
    p.add_argument("--key", default="", help="the signed_url key that signs (default: the last one listed)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    srvlog.setup("console", "trace")
    try:
        config = load(args.conf)
    except ConfigErrors as e:
        for err in e.errors:
            print(f"srs: {err}", file=sys.stderr)
        if args.test:
            print(f"srs: configuration file {args.conf} test failed", file=sys.stderr)
        elif args.signal:
            keeps = "; the running server keeps its config" if args.signal == "reload" else ""
            print(f"srs: {args.signal} not sent: configuration file {args.conf} has errors{keeps}",
                  file=sys.stderr)
        else:
            print(f"srs: not started: configuration file {args.conf} has errors", file=sys.stderr)
        return 1
    if args.test:
        for w in config.warnings:
            print(f"srs: warning: {w}", file=sys.stderr)
        print(f"srs: the configuration file {args.conf} syntax is ok", file=sys.stderr)
        print(f"srs: configuration file {args.conf} test is successful", file=sys.stderr)
        return 0
    if args.signal:
        return send_signal(config.pid, args.signal)
    if args.sign:
        try:
            print(sign_url(config, args.sign[0], args.sign[1], args.ttl, args.key))
        except ValueError as e:
            print(f"srs: cannot sign: {e}", file=sys.stderr)
            return 1
        return 0
    return run(config, args.conf)


def sign_url(config: ServerConfig, action: str, url: str, ttl: int, key: str = "",
             now: float | None = None) -> str:
    """`url` with ``token=`` added: what `srv.app.access.token_check` accepts for `action` on
    the URL's vhost/app/stream for `ttl` seconds. The vhost is the URL's ``?vhost=`` or host, as
    the server resolves it; for HTTP the stream is the last path segment without ``.flv``."""
    from srv.app.access import make_token

    if action not in ("publish", "play"):
        raise ValueError(f'action "{action}" is not publish or play')
    parts = urlsplit(url)
    app, _, stream = parts.path.strip("/").rpartition("/")
    if parts.scheme in ("http", "https") and stream.endswith(".flv"):
        stream = stream[: -len(".flv")]
    if parts.scheme not in ("rtmp", "rtmps", "http", "https") or not app or not stream:
        raise ValueError(f"{url} is not rtmp://host/app/stream or http://host/app/stream.flv")
    name = dict(parse_qsl(parts.query)).get("vhost") or parts.hostname or ""
    vhost = config.vhost(name)
    if vhost is None or not vhost.signed_url.keys:
        raise ValueError(f'vhost "{name}" has no signed_url key in {config.path}')
    keys = dict(vhost.signed_url.keys)
    key = key or vhost.signed_url.keys[-1][0]
    if key not in keys:
        raise ValueError(f'vhost {vhost.name} has no signed_url key "{key}"')
    expires = int(now if now is not None else time.time()) + ttl
    token = make_token(key, keys[key], action, vhost.name, app, stream, expires)
    return f"{url}{'&' if parts.query else '?'}token={token}"


def send_signal(pid_path: str, name: str) -> int:
    from srv.master.pidfile import read_pid
    try:
        pid = read_pid(pid_path)
        os.kill(pid, SIGNAL_NAMES[name])
    except (OSError, ValueError) as e:
        print(f"srs: cannot {name}: {e}", file=sys.stderr)
        return 1
    print(f"srs: sent {SIGNAL_NAMES[name].name} ({name}) to master pid {pid}", file=sys.stderr)
    return 0


def run(config: ServerConfig, conf_arg: str) -> int:
    """Run the master. The pid file lock and the listen sockets are taken first, in the
    launching process, so that a refusal exits 1 even with `daemon on`."""
    from srv.conf.listen import ListenError
    from srv.master.pidfile import PidFileLocked
    try:  # loads every module a worker runs: a missing dependency stops the start, here
        from srv.master.arbiter import Arbiter
    except ImportError as e:
        print(f"srs: cannot start: {e}; reinstall srv with its dependencies "
              f"(pip install -e . or ./objs/srs --bootstrap-only)", file=sys.stderr)
        return 1

    srvlog.setup(config.srs_log_tank, config.srs_log_level, config.srs_log_file, role="master",
                 fmt=config.srs_log_format)
    raise_fd_limit()
    arbiter = Arbiter(config, f"-c {conf_arg}", dict(os.environ))
    try:
        arbiter.prepare()
    except (PidFileLocked, ListenError, OSError) as e:
        print(f"srs: {e}", file=sys.stderr)
        logging.getLogger("srv.master").error("%s", e)
        return 1
    if config.daemon:
        arbiter.on_started = daemonize()
    return arbiter.run()


def daemonize(wait: float = 30.0) -> Callable[[], None]:
    """Double fork: the master runs detached, and the launcher returns once the master has
    written its own pid to the pid file (so a script that reads the pid file right after
    `srs -c` finds the master's pid, not the launcher's). The launcher exits 1 if the master
    dies first. Returns what the master calls once its pid is written."""
    r, w = os.pipe2(os.O_CLOEXEC)
    if os.fork() > 0:
        os.close(w)
        ready, _, _ = select.select([r], [], [], wait)
        ok = bool(ready) and os.read(r, 1) == b"1"  # b"" (EOF): the master died before saying so
        if not ok:
            print("srs: the daemonized master did not start; see its log", file=sys.stderr)
        os._exit(0 if ok else 1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(fd, std)
    if fd > 2:
        os.close(fd)

    def started() -> None:
        try:
            os.write(w, b"1")
        finally:
            os.close(w)
    return started


def raise_fd_limit() -> None:
    """Every player is a socket: take all the descriptors the hard limit allows (workers inherit
    it), as operators would otherwise have to with `ulimit -n` or systemd's LimitNOFILE."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
