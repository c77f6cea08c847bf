"""House style is checked, not hoped for: ruff on the whole tree, mypy --strict on the
sans-I/O protocol and the config language, plain mypy on the rest (STYLE.md, rule 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    out = run("ruff", "check", "srv", "tests", "scripts/xworker_cost.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_on_rtmp_and_conf_and_plain_on_the_rest() -> None:
    strict = run("mypy", "--strict", "--no-incremental", "srv/rtmp", "srv/conf")
    assert strict.returncode == 0, strict.stdout + strict.stderr
    plain = run("mypy", "--no-incremental", "srv")
    assert plain.returncode == 0, plain.stdout + plain.stderr
