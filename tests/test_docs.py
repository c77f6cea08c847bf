"""The docs stay true: the README's config example parses, its links resolve, and its quick
start names the real commands."""

from __future__ import annotations

import re
from pathlib import Path

from srv.conf.loader import load

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme_config_example_loads(tmp_path: Path) -> None:
    block = re.search(r"```nginx\n(.*?)```", README, re.S)
    assert block is not None
    conf = tmp_path / "readme.conf"
    conf.write_text(block.group(1))
    config = load(str(conf), {})
    vhost = config.vhost("__defaultVhost__")
    assert vhost is not None and len(vhost.forwards) == 2


def test_readme_links_resolve() -> None:
    for target in re.findall(r"\]\(((?:docs|conf|systemd)/[^)#]+)\)", README):
        assert (REPO / target).exists(), target


def test_quick_start_is_two_commands_that_exist() -> None:
    quick = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["./objs/srs -c conf/srs.conf", "./scripts/test"]
    assert (REPO / "objs" / "srs").exists() and (REPO / "scripts" / "test").exists()
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text()
