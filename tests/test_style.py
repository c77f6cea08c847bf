"""House style is checked, not hoped for: ruff on the whole tree, mypy --strict on the
sans-I/O protocol, the config language and the media parsers and muxers, plain mypy on the
rest (STYLE.md, rule 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    out = run("ruff", "check", "srv", "tests", "scripts/xworker_cost.py", "scripts/mux_cost.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_on_rtmp_conf_and_media_and_plain_on_the_rest() -> None:
    strict = run("mypy", "--strict", "--no-incremental", "srv/rtmp", "srv/conf", "srv/media")
    assert strict.returncode == 0, strict.stdout + strict.stderr
    plain = run("mypy", "--no-incremental", "srv")
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_the_hub_seams_are_typed(tmp_path: Path) -> None:
    """A publisher, a pull or a forwarder that lacks what the hub uses is a type error, not a
    runtime `getattr` probe: the hub's seams are Protocols (srv/app/roles.py); and an encoding
    is an `Encoding` (FLV or rtmp_encoding()), not any int."""
    wrong = tmp_path / "wrong_seams.py"
    wrong.write_text(
        "from srv.app.hub import StreamHub\n"
        "from srv.app.source import LiveSource, Sink\n"
        "from srv.conf.model import ForwardConfig, VhostConfig\n\n"
        "class Nothing:\n    pass\n\n"
        "async def publish(hub: StreamHub, vhost: VhostConfig) -> None:\n"
        "    await hub.publish('v/a/s', vhost, Nothing())\n\n"
        "def wire(hub: StreamHub) -> None:\n"
        "    def pull(src: LiveSource, slot: int) -> Nothing:\n        return Nothing()\n"
        "    def forward(src: LiveSource, dest: str, fw: ForwardConfig) -> Nothing:\n        return Nothing()\n"
        "    hub.make_pull = pull\n"
        "    hub.make_forwarder = forward\n\n"
        "def forwarders(src: LiveSource) -> None:\n"
        "    src.forwarders.append(Nothing())\n\n"
        "def play(hub: StreamHub, vhost: VhostConfig, sink: Sink) -> None:\n"
        "    hub.play('v/a/s', vhost, sink, 4096)  # a chunk size is no encoding: rtmp_encoding(4096)\n")
    out = run("mypy", "--no-incremental", "--follow-imports=silent", str(wrong))
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["9", "16", "17", "20", "23"], out.stdout
    assert all(role in out.stdout for role in ("Publisher", "PullHandle", "Forwarding", "Encoding")), out.stdout
