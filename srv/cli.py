"""Command line, as SRS and nginx users know it.

    srs -c conf/srs.conf            run (the master forks the workers)
    srs -t -c conf/srs.conf         test the config: "... syntax is ok" / "... test is successful"
    srs -s reload -c conf/srs.conf  signal the running master (reload|quit|stop|reopen) via its pid file
    srs -v                          version
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    srvlog.setup("console", "trace")
    # What the server cannot enforce yet (access control) stops a start or a reload; `-t`
    # and the other signals only need the file to be valid.
    enforce = not args.test and args.signal in (None, "reload")
    try:
        config = load(args.conf, enforce=enforce)
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
    return run(config, args.conf)


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

    srvlog.setup(config.srs_log_tank, config.srs_log_level, config.srs_log_file, role="master")
    raise_fd_limit()
    arbiter = Arbiter(config, f"-c {conf_arg}", dict(os.environ))
    try:
        arbiter.prepare()
    except (PidFileLocked, ListenError, OSError) as e:
        print(f"srs: {e}", file=sys.stderr)
        logging.getLogger("srv.master").error("%s", e)
        return 1
    if config.daemon:
        daemonize()
    return arbiter.run()


def daemonize() -> None:
    """Classic double fork: the launcher returns at once, the master runs detached."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(fd, std)
    if fd > 2:
        os.close(fd)


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
