"""The command line as operators use it: `-t`, `-v`, `-s` and the three ways to start srv
(`./objs/srs`, `python -m srv`, the `srs` console script); the signals table in the docs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SRS, free_port

from srv import __version__
from srv.master.arbiter import SIGNALS

VENV_BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, cwd=cwd or REPO)


GOOD = "listen 1935;\nworkers 1;\ndaemon off;\nvhost __defaultVhost__ { }\n"


def test_t_on_a_good_config_says_syntax_ok_and_test_successful(tmp_path: Path) -> None:
    conf = tmp_path / "good.conf"
    conf.write_text(GOOD)
    out = run(str(SRS), "-t", "-c", str(conf))
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert f"the configuration file {conf} syntax is ok" in text
    assert f"configuration file {conf} test is successful" in text


def test_t_on_shipped_configs_succeeds() -> None:
    for conf in ("conf/srs.conf", "conf/full.conf"):
        out = run(str(SRS), "-t", "-c", conf)
        assert out.returncode == 0, out.stderr
        assert "test is successful" in out.stderr


@pytest.mark.parametrize("body, line, col, words", [
    ("listen 1935;\nworkers 1;\nvhost x {\n    lisen 1;\n}\n", 4, 5, 'unknown directive "lisen"'),
    ("listen 1935;\nworkers -1;\n", 2, 9, 'invalid value "-1"'),
    ("listen 1935;\nvhost x {\n", 2, None, ""),
], ids=["unknown-directive", "bad-value", "unclosed-block"])
def test_t_on_a_broken_config_prints_path_line_col_and_exits_1(tmp_path: Path, body: str, line: int,
                                                               col: int | None, words: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(body)
    out = run(str(SRS), "-t", "-c", str(conf))
    assert out.returncode == 1
    m = re.search(rf"{re.escape(str(conf))}:(\d+):(\d+): (.+)", out.stderr)
    assert m, out.stderr
    assert int(m.group(1)) >= line and (col is None or int(m.group(2)) == col), out.stderr
    assert words in m.group(3)
    assert f"configuration file {conf} test failed" in out.stderr
    assert "syntax is ok" not in out.stderr


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    out = run(str(SRS), "-t", "-c", str(tmp_path / "nope.conf"))
    assert out.returncode == 1
    assert "nope.conf" in out.stderr


@pytest.mark.parametrize("argv", [
    [str(SRS), "-v"],
    [str(SRS), "-V"],
    [str(VENV_BIN / "python"), "-m", "srv", "-v"],
    [str(VENV_BIN / "srs"), "-v"],
], ids=["launcher", "launcher-V", "python-m-srv", "console-script"])
def test_version_from_every_entry_point(argv: list[str]) -> None:
    out = run(*argv)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == __version__


def test_console_script_tests_a_config_like_the_launcher(tmp_path: Path) -> None:
    conf = tmp_path / "good.conf"
    conf.write_text(GOOD)
    for argv in ([str(VENV_BIN / "srs")], [str(VENV_BIN / "python"), "-m", "srv"]):
        out = run(*argv, "-t", "-c", str(conf), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "test is successful" in out.stderr


@pytest.mark.parametrize("name", ["reload", "quit", "stop", "reopen"])
def test_signal_command_without_a_running_server_fails(tmp_path: Path, name: str) -> None:
    conf = tmp_path / "idle.conf"
    conf.write_text(GOOD + f"pid {tmp_path / 'srs.pid'};\n")
    out = run(str(SRS), "-s", name, "-c", str(conf))
    assert out.returncode == 1
    assert f"srs: cannot {name}:" in out.stderr and "srs.pid" in out.stderr


def test_signal_command_with_a_stale_pid_file_fails_without_signalling(tmp_path: Path) -> None:
    pid = tmp_path / "srs.pid"
    pid.write_text("1\n")  # pid 1 exists, but no srs holds the lock on this file
    conf = tmp_path / "stale.conf"
    conf.write_text(GOOD + f"pid {pid};\n")
    out = run(str(SRS), "-s", "stop", "-c", str(conf))
    assert out.returncode == 1
    assert "not running" in out.stderr


def test_unknown_option_is_a_usage_error() -> None:
    out = run(str(SRS), "-x")
    assert out.returncode == 2
    assert "usage: srs" in out.stderr


def test_docs_signal_table_matches_the_code() -> None:
    doc = (REPO / "docs" / "process.md").read_text()
    rows = re.findall(r"^\| `?(SIG[A-Z0-9]+)`? \| (.+?) \|", doc, re.M)
    assert {sig: what.strip() for sig, what in rows} == {s.name: what for s, what in SIGNALS.items()}


def test_a_missing_dependency_stops_the_start_with_its_name(tmp_path: Path) -> None:
    """uvloop is required: without it the server refuses to start, it does not fall back."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "uvloop.py").write_text("raise ImportError(\"No module named 'uvloop'\", name='uvloop')\n")
    conf = tmp_path / "srs.conf"
    conf.write_text(f"listen 127.0.0.1:{free_port()};\npid {tmp_path / 'srs.pid'};\ndaemon off;\n"
                    f"srs_log_tank file;\nsrs_log_file {tmp_path / 'srs.log'};\nworkers 1;\n"
                    "vhost __defaultVhost__ { }\n")
    out = subprocess.run([str(SRS), "-c", str(conf)], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONPATH": str(fake)})
    assert out.returncode == 1, out.stderr
    assert "srs: cannot start: No module named 'uvloop'" in out.stderr
    assert not (tmp_path / "srs.pid").exists()
