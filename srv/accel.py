"""Optional acceleration: the ingest hot path compiled with mypyc, pure Python otherwise.

The ``.py`` files are the source and the product; a compiled build is an optional copy of
some of them (:data:`MODULES`, typed Python that mypyc turns into C extensions, ~45 % less CPU
per ingested message: docs/performance.md, "Round 4"). Two halves:

* :func:`build` (run by ``./objs/srs --bootstrap-only``, hence by ``./scripts/test``)
  compiles :data:`MODULES` into ``objs/mypyc/<key>/``, where ``<key>`` is a hash of EVERY
  ``srv/**/*.py`` (compiled code relies on the types of what it imports, so an edit anywhere
  may change it), the interpreter and its extension ABI. A failed build leaves
  ``objs/mypyc/<key>.failed`` with the compiler's last words.
* :func:`install` (from ``srv/__init__.py``, before any hot-path module is imported) puts a
  finder first on ``sys.meta_path`` that loads the extensions of ``objs/mypyc/<key>/`` for the
  key of the sources as they are NOW, and only when that build is complete. An edited ``.py``
  (a worktree, a checkout) changes the key: its build is then missing and srv runs the pure
  Python until the next bootstrap rebuilds. A stale build is never loaded.

``SRV_ACCEL=off`` forces the pure Python; ``SRV_ACCEL_DIR`` moves ``objs/mypyc`` (tests).
:func:`status` is the line the master logs at start (one line: compiled, or pure and why).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: The modules compiled: the publisher's path from the socket read to the stream's ring
#: (chunk decoder, RTMP session, the source and its packets). ClientSession is here because
#: an interpreted class cannot subclass a compiled one (RtmpConnection).
MODULES: tuple[str, ...] = (
    "srv.rtmp.messages",
    "srv.rtmp.chunk",
    "srv.rtmp.connection",
    "srv.rtmp.session",
    "srv.rtmp.client",
    "srv.app.packet",
    "srv.app.source",
)
#: mypyc's shared library of the group (its runtime and the modules' code)
GROUP = "srv_accel"
MANIFEST = "manifest.json"

SRV = Path(__file__).resolve().parent
TOP = SRV.parent


def build_root() -> Path:
    """Where builds live: ``$SRV_ACCEL_DIR`` or the checkout's ``objs/mypyc``."""
    env = os.environ.get("SRV_ACCEL_DIR")
    return Path(env) if env else TOP / "objs" / "mypyc"


def source_key(srv: Path = SRV) -> str:
    """The hash a build is valid for: every ``.py`` of the package (path and bytes), the
    interpreter and its extension suffix."""
    h = hashlib.sha256()
    h.update(f"{sys.version}|{sys.implementation.cache_tag}|{sysconfig.get_config_var('EXT_SUFFIX')}|".encode())
    for path in sorted(srv.rglob("*.py")):
        h.update(str(path.relative_to(srv)).encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:24]


class _Finder(importlib.abc.MetaPathFinder):
    """Loads the listed modules from a build's extension files, nothing else."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


#: what :func:`install` found (see :func:`status`)
_state: dict[str, str] = {"mode": "pure", "why": "not installed"}


def install() -> bool:
    """Load :data:`MODULES` compiled when a complete build for the current sources exists;
    return whether it does. Changes nothing when a hot-path module is already imported."""
    if os.environ.get("SRV_ACCEL", "on").lower() in ("off", "0", "no", "false"):
        _state.update(mode="pure", why="SRV_ACCEL=off")
        return False
    if any(name in sys.modules for name in MODULES):
        _state.update(mode="pure", why="hot-path modules were imported before srv.accel")
        return False
    root = build_root()
    try:
        key = source_key()
        manifest = root / key / MANIFEST
        files = {name: root / key / rel for name, rel in json.loads(manifest.read_text()).items()}
    except FileNotFoundError:
        failed = root / f"{key}.failed"
        if failed.exists():
            _state.update(mode="pure", why=f"the build failed (see {failed})")
        else:
            _state.update(mode="pure", why=f"no build for these sources in {root} "
                          "(./objs/srs --bootstrap-only builds it)")
        return False
    except (OSError, ValueError) as e:
        _state.update(mode="pure", why=f"unreadable build in {root}: {e}")
        return False
    if set(files) != set(MODULES) | {GROUP + "__mypyc"} or not all(f.is_file() for f in files.values()):
        _state.update(mode="pure", why=f"incomplete build {root / key}")
        return False
    sys.meta_path.insert(0, _Finder(files))
    _state.update(mode="compiled", why=str(root / key))
    return True


def compiled() -> bool:
    """Whether the hot-path modules were loaded compiled (in this process)."""
    return _state["mode"] == "compiled"


def failed() -> bool:
    """Whether the build for these sources failed (pure Python runs: the master warns)."""
    return _state["why"].startswith("the build failed")


def status() -> str:
    """One line for the log: which hot path runs, and why not the compiled one."""
    if compiled():
        return f"hot path compiled with mypyc ({len(MODULES)} modules from {_state['why']})"
    return f"hot path in pure Python: {_state['why']}"


_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
paths = sys.argv[1].split(",")
setup(name="srv-accel", script_args=sys.argv[2:],
      ext_modules=mypycify(paths, opt_level="3", group_name="{group}"))
"""


def _not_python(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or (not n.endswith(".py") and not Path(folder, n).is_dir())}


def build(root: Path | None = None, srv: Path = SRV) -> tuple[bool, str]:
    """Compile :data:`MODULES` of the package at ``srv`` for its current sources, unless that
    build exists; return (ok, what happened). Other keys' builds are removed after a
    successful one. Safe against concurrent builders (each builds aside, then renames)."""
    root = root or build_root()
    dest = root / source_key(srv)
    if (dest / MANIFEST).is_file():
        return True, f"current ({dest})"
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".build.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    paths = [str(Path(*name.split(".")).with_suffix(".py")) for name in MODULES]
    cmd = [sys.executable, "-c", _SETUP.format(group=GROUP), ",".join(paths),
           "build_ext", "--build-lib", str(work / "lib"), "--build-temp", str(work / "tmp")]
    # mypyc writes its C files under ./build of the cwd: it runs in a copy of the sources (the
    # checkout gets no build/), and the key is the copy's, so an edit made during the build
    # cannot be labelled with the old sources' key
    src = work / "src" / "srv"
    shutil.copytree(srv, src, ignore=_not_python)
    if (srv.parent / "pyproject.toml").is_file():
        shutil.copy(srv.parent / "pyproject.toml", work / "src")
    key = source_key(src)
    dest, failed = root / key, root / f"{key}.failed"
    try:
        out = subprocess.run(cmd, cwd=work / "src", capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        out = subprocess.CompletedProcess(cmd, 1, "", str(e))
    lib = work / "lib"
    files: dict[str, str] = {}
    if out.returncode == 0:
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        for name in (*MODULES, GROUP + "__mypyc"):
            rel = Path(*name.split(".")).with_name(name.rsplit(".", 1)[-1] + suffix)
            if (lib / rel).is_file():
                files[name] = str(Path("lib") / rel)
    if out.returncode != 0 or len(files) != len(MODULES) + 1:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-40:])
        failed.write_text(f"{' '.join(cmd[:2])} ... exit {out.returncode}\n{tail}\n")
        shutil.rmtree(work, ignore_errors=True)
        return False, f"build failed, pure Python will run (see {failed})"
    shutil.rmtree(work / "tmp", ignore_errors=True)
    shutil.rmtree(work / "src", ignore_errors=True)
    (work / MANIFEST).write_text(json.dumps(files, indent=1))
    try:
        work.rename(dest)
    except OSError:  # another builder finished first: its build is the same
        shutil.rmtree(work, ignore_errors=True)
    failed.unlink(missing_ok=True)
    for old in root.iterdir():
        if old.name == key or old.name.startswith("."):
            continue
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return True, f"built {dest}"


def main(argv: list[str] | None = None) -> int:
    """``python -c 'from srv.accel import main; main()'`` (objs/srs): build for the current
    sources (exit 0 even when the build fails: the server then runs pure Python);
    ``--status``: print what a server would load."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--status"]:
        install()
        print(status())
        return 0
    ok, what = build()
    print(f"srs: compiled hot path (mypyc): {what}", file=sys.stderr)
    return 0

