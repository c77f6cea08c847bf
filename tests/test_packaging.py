"""Packaging says one thing: setup.cfg holds the metadata, the Python version targets agree
(python_requires, ruff, mypy) and match what runs the tests, the line-length rule is enforced,
and constraints.txt pins what CI tests and deployments install."""

from __future__ import annotations

import configparser
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirements() -> list[Requirement]:
    """What setup.cfg asks for: install_requires and every extra."""
    cfg = setup_cfg()
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in cfg["options.extras_require"].values():
        lines += extra.splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line.strip())
            assert m, f"constraints.txt: not an exact pin: {line!r}"
            out[_canonical(m.group(1))] = m.group(2)
    return out


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_package_metadata_lives_in_setup_cfg_only() -> None:
    assert "project" not in pyproject()
    assert setup_cfg()["metadata"]["name"] == "srv"


def test_python_version_targets_agree_and_match_the_interpreter() -> None:
    cfg, toml = setup_cfg(), pyproject()
    requires = SpecifierSet(cfg["options"]["python_requires"])
    major, minor = (int(x) for x in toml["tool"]["mypy"]["python_version"].split("."))
    assert toml["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert str(requires) == f">={major}.{minor}"
    assert f"Programming Language :: Python :: {major}.{minor}" in cfg["metadata"]["classifiers"]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in requires


def test_the_line_length_rule_is_enforced() -> None:
    ruff = pyproject()["tool"]["ruff"]
    assert isinstance(ruff["line-length"], int)
    assert "E501" not in ruff["lint"].get("ignore", []) and "E" in ruff["lint"]["select"]


def test_constraints_pin_every_dependency_within_what_setup_cfg_allows() -> None:
    pinned = pins()
    for req in requirements():
        name = _canonical(req.name)
        assert name in pinned, f"{req.name} is not in constraints.txt; run scripts/freeze-constraints"
        assert req.specifier.contains(pinned[name], prereleases=True), (req, pinned[name])
    assert "srv" not in pinned


def test_launcher_and_test_command_install_with_the_constraints() -> None:
    launcher = (REPO / "objs" / "srs").read_text()
    assert '-c "$top/constraints.txt" -e "$top[accel]"' in launcher  # [accel]: mypyc (srv/accel.py)
    assert '"$top/constraints.txt" -nt "$stamp"' in launcher  # a new pin reinstalls
    test = (REPO / "scripts" / "test").read_text()
    assert '-c constraints.txt -e ".[test]"' in test and 'constraints.txt -nt "$tstamp"' in test


def test_wheel_ships_the_player_page_and_the_vendored_players(tmp_path: Path) -> None:
    """`pip install .` must carry srv/http/www (served at /players/), not only the Python code."""
    import json
    import subprocess
    import zipfile

    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("srv-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    www = "srv/http/www/"
    assert {www + "players/index.html", www + "players/player.js", www + "vendor/vendor.json"} <= names
    manifest = json.loads((REPO / www / "vendor" / "vendor.json").read_text())
    for pkg in manifest["packages"]:
        for entry in pkg["files"]:
            assert www + "vendor/" + entry["to"] in names, entry
