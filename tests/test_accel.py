"""The optional compiled hot path (srv/accel.py): loaded when built for the sources as they are,
never when a source changed since, pure Python otherwise, and the server says which in one line.

The builds here compile a copy of the package (mypyc, then the C compiler): ~20 CPU-s each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import Clients, Server, codecs, ffprobe

import srv.accel
import srv.app.source
import srv.rtmp.chunk
from srv.accel import MODULES, build, source_key

TOP = Path(__file__).resolve().parents[1]
EXT = sysconfig.get_config_var("EXT_SUFFIX")

# what a process of the copy loads: each hot-path module's file, then the status line
PROBE = (
    "import importlib, srv.accel as a\n"
    f"for name in {MODULES!r}:\n"
    "    print(importlib.import_module(name).__file__)\n"
    "from srv.rtmp.chunk import ChunkDecoder, encode_message\n"
    "d = ChunkDecoder(); got = []\n"
    "d.feed(encode_message(9, 1, 40, b'x' * 300, 128, 6), lambda t, ts, p: got.append((t, ts, len(p))))\n"
    "print(got)\n"
    "print(a.status())\n"
)


def probe(top: Path, builds: Path, **env: str) -> tuple[list[str], str, str]:
    """(module files, decoded media, status line) of a fresh interpreter importing srv from ``top``."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=top, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SRV_ACCEL_DIR": str(builds), "SRV_ACCEL": "on", **env})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    return lines[:len(MODULES)], lines[-2], lines[-1]


@pytest.fixture(scope="module")
def built_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the package and its compiled build (one build for the tests that share it)."""
    base = tmp_path_factory.mktemp("accel")
    top, builds = base / "top", base / "builds"
    shutil.copytree(TOP / "srv", top / "srv", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(TOP / "pyproject.toml", top)
    ok, what = build(builds, top / "srv")
    assert ok, what + "\n" + "".join(p.read_text() for p in builds.glob("*.failed"))
    return top, builds


def test_a_build_for_these_sources_is_the_one_loaded(built_copy: tuple[Path, Path]) -> None:
    top, builds = built_copy
    files, media, status = probe(top, builds)
    key = source_key(top / "srv")
    assert files == [str(builds / key / "lib" / Path(*m.split(".")).with_name(m.rsplit(".", 1)[1] + EXT))
                     for m in MODULES]
    assert media == "[(9, 40, 300)]"  # the compiled decoder decodes
    assert status == f"hot path compiled with mypyc ({len(MODULES)} modules from {builds / key})"
    # the build is current: bootstrapping again compiles nothing
    assert build(builds, top / "srv") == (True, f"current ({builds / key})")
    # SRV_ACCEL=off: pure Python even with a current build
    files, media, status = probe(top, builds, SRV_ACCEL="off")
    assert files == [str(top / Path(*m.split(".")).with_suffix(".py")) for m in MODULES]
    assert (media, status) == ("[(9, 40, 300)]", "hot path in pure Python: SRV_ACCEL=off")


@pytest.mark.parametrize("edited", ["srv/rtmp/chunk.py", "srv/media/flv.py"])
def test_a_build_is_never_used_once_a_source_changed(built_copy: tuple[Path, Path], edited: str,
                                                     tmp_path: Path) -> None:
    """An edit to a compiled module, or to any module (its types may be what the compiled code
    relies on), leaves the build unused: the .py files run, and the status says why."""
    src, builds = built_copy
    top = tmp_path / "top"
    shutil.copytree(src, top, ignore=shutil.ignore_patterns("__pycache__"))
    with (top / edited).open("a") as f:
        f.write("\n# edited after the build\n")
    files, media, status = probe(top, builds)
    assert files == [str(top / Path(*m.split(".")).with_suffix(".py")) for m in MODULES]
    assert media == "[(9, 40, 300)]"
    assert status == (f"hot path in pure Python: no build for these sources in {builds} "
                      "(./objs/srs --bootstrap-only builds it)")


def test_a_failed_build_runs_pure_python_and_says_why(tmp_path: Path) -> None:
    top, builds = tmp_path / "top", tmp_path / "builds"
    shutil.copytree(TOP / "srv", top / "srv", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(TOP / "pyproject.toml", top)
    with (top / "srv/rtmp/chunk.py").open("a") as f:
        f.write("\n\ndef broken() -> int:\n    return 'not an int'\n")  # mypyc refuses a type error
    ok, what = build(builds, top / "srv")
    failed = builds / f"{source_key(top / 'srv')}.failed"
    assert (ok, what) == (False, f"build failed, pure Python will run (see {failed})")
    assert "srv/rtmp/chunk.py:" in failed.read_text() and "Incompatible return value type" in failed.read_text()
    files, media, status = probe(top, builds)
    assert files == [str(top / Path(*m.split(".")).with_suffix(".py")) for m in MODULES]
    assert (media, status) == ("[(9, 40, 300)]", f"hot path in pure Python: the build failed (see {failed})")


def test_the_suite_runs_on_what_the_bootstrap_built() -> None:
    """./scripts/test (CI) bootstraps, which compiles the hot path, and sets SRV_ACCEL_REQUIRED:
    then every test of this run uses the compiled modules. Elsewhere (a pytest run after an
    edit) the modules loaded are the ones the status names."""
    loaded = [m.__file__ or "" for m in (srv.rtmp.chunk, srv.app.source)]
    if os.environ.get("SRV_ACCEL_REQUIRED") == "1":
        assert srv.accel.compiled(), srv.accel.status()
    if srv.accel.compiled():
        assert all(f.endswith(EXT) for f in loaded), loaded
        assert srv.accel.status().startswith("hot path compiled with mypyc")
    else:
        assert all(f.endswith(".py") for f in loaded), loaded
        assert srv.accel.status().startswith("hot path in pure Python: ")


def publish_and_play(s: Server, clients: Clients) -> None:
    """ffmpeg publishes, ffprobe plays: both codecs come through."""
    url = f"{s.url}/live/accel"
    clients.publish(url)
    s.wait_log("publish start", timeout=20)
    streams = codecs(ffprobe(url))
    assert streams["video"]["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"


def test_publish_and_play_on_the_pure_python_fallback(srs_server, clients: Clients) -> None:
    s = srs_server(workers=1, env={"SRV_ACCEL": "off"})
    publish_and_play(s, clients)
    assert "hot path in pure Python: SRV_ACCEL=off" in s.log_text()


def test_publish_and_play_on_what_the_server_loaded(srs_server, clients: Clients) -> None:
    """The server logs the same hot path this process loaded (the same tree, the same build),
    one line; with ./scripts/test that is the compiled one."""
    s = srs_server(workers=1)
    publish_and_play(s, clients)
    lines = [line for line in s.log_text().splitlines() if "hot path " in line]
    assert len(lines) == 1 and lines[0].endswith(srv.accel.status()), lines
