"""SRS_* environment overrides and reload_diff."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from srv.conf import ConfigErrors, Endpoint, ServerConfig, load, reload_diff
from srv.conf.env import ENV_OVERRIDES

BASE = """
listen 1935;
pid ./objs/a.pid;
daemon on;
http_api { enabled off; listen 1985; }
vhost __defaultVhost__ { play { gop_cache on; } }
vhost b.com { }
"""


def _load(tmp_path: Path, text: str = BASE, env: dict[str, str] | None = None, name: str = "x.conf") -> ServerConfig:
    path = tmp_path / name
    path.write_text(text)
    return load(str(path), env or {})


def test_env_overrides_beat_the_file(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        env={
            "SRS_LISTEN": "1936 127.0.0.1:1937",
            "SRS_PID": "./objs/env.pid",
            "SRS_WORKERS": "3",
            "SRS_DAEMON": "off",
            "SRS_HTTP_API_ENABLED": "on",
            "SRS_HTTP_API_LISTEN": "1986",
            "SRS_HTTP_SERVER_LISTEN": "8081",
            "SRS_EXPORTER_ENABLED": "on",
            "SRS_HTTP_API_RAW_API_ALLOW_RELOAD": "on",
        },
    )
    assert config.listen == (Endpoint("0.0.0.0", 1936), Endpoint("127.0.0.1", 1937))
    assert (config.pid, config.workers, config.daemon) == ("./objs/env.pid", 3, False)
    assert config.http_api.enabled and config.http_api.listen.port == 1986
    assert config.http_api.raw_api.allow_reload
    assert config.http_server.listen.port == 8081  # the block did not exist; env creates it
    assert config.exporter.enabled


def test_log_variables_take_srs_short_and_long_names(tmp_path: Path) -> None:
    assert _load(tmp_path, env={"SRS_LOG_TANK": "console"}).srs_log_tank == "console"
    both = {"SRS_SRS_LOG_TANK": "file", "SRS_LOG_TANK": "console", "SRS_LOG_LEVEL": "warn"}
    config = _load(tmp_path, env=both)
    assert (config.srs_log_tank, config.srs_log_level) == ("file", "warn")


def test_vhost_variables_apply_to_every_vhost(tmp_path: Path) -> None:
    config = _load(tmp_path, env={"SRS_VHOST_PLAY_GOP_CACHE": "off", "SRS_VHOST_TCP_NODELAY": "on"})
    for vhost in config.vhosts.values():
        assert vhost.play.gop_cache is False
        assert vhost.tcp_nodelay is True


def test_empty_and_unknown_variables_are_ignored(tmp_path: Path) -> None:
    config = _load(tmp_path, env={"SRS_LISTEN": "", "SRS_NOT_A_THING": "x", "HOME": "/root"})
    assert config.listen == (Endpoint("0.0.0.0", 1935),)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SRS_LISTEN": "x"}, 'env SRS_LISTEN: invalid port "x"'),
        ({"SRS_WORKERS": "0"}, 'env SRS_WORKERS: invalid value "0" (expected 1 to 1024)'),
        ({"SRS_DAEMON": "of"}, 'env SRS_DAEMON: invalid value "of" (expected on or off; did you mean "off"?)'),
        ({"SRS_VHOST_PLAY_MW_LATENCY": "-5"},
         'env SRS_VHOST_PLAY_MW_LATENCY: invalid value "-5" (expected a number >= 0)'),
    ],
)
def test_bad_env_values_are_errors_naming_the_variable(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        _load(tmp_path, env=env)
    assert [str(e) for e in info.value.errors] == [expected]


def test_env_table_names_follow_srs_dotted_paths() -> None:
    names = {o.variable for o in ENV_OVERRIDES}
    assert {"SRS_LISTEN", "SRS_HTTP_API_LISTEN", "SRS_VHOST_PLAY_GOP_CACHE", "SRS_EXPORTER_TAG"} <= names
    assert {"SRS_LOG_TANK", "SRS_LOG_LEVEL", "SRS_LOG_FILE", "SRS_SRS_LOG_TANK"} <= names


def test_reload_diff_of_identical_configs_is_empty(tmp_path: Path) -> None:
    diff = reload_diff(_load(tmp_path), _load(tmp_path))
    assert diff.empty and diff.warnings == ()


def test_reload_diff_lists_vhosts_added_removed_and_changed(tmp_path: Path) -> None:
    old = _load(tmp_path)
    new = _load(tmp_path, BASE.replace("vhost b.com { }", "vhost c.com { }").replace("gop_cache on", "gop_cache off"))
    diff = reload_diff(old, new)
    assert diff.vhosts_added == ("c.com",)
    assert diff.vhosts_removed == ("b.com",)
    assert diff.vhosts_changed == ("__defaultVhost__",)
    assert diff.forwards_changed == ()
    assert not diff.listen_changed and not diff.workers_changed
    assert diff.changed == () and not diff.empty


def test_reload_diff_sees_forward_destination_changes(tmp_path: Path) -> None:
    old = _load(tmp_path, "vhost v { forward { enabled on; destination a:1936; } }")
    new = _load(tmp_path, "vhost v { forward { enabled on; destination a:1937; } }")
    diff = reload_diff(old, new)
    assert diff.vhosts_changed == ("v",) and diff.forwards_changed == ("v",)


def test_reload_diff_flags_listen_workers_and_restart_only_directives(tmp_path: Path) -> None:
    old = _load(tmp_path)
    changed = BASE.replace("listen 1935", "listen 1936").replace("pid ./objs/a.pid", "pid ./objs/b.pid")
    changed = changed.replace("daemon on", "daemon off").replace("listen 1985", "listen 1986")
    new = dataclasses.replace(_load(tmp_path, changed), workers=old.workers + 1)
    diff = reload_diff(old, new)
    assert diff.listen_changed and diff.workers_changed
    assert set(diff.changed) == {"listen", "pid", "workers", "daemon", "http_api.listen"}
    assert set(diff.needs_restart) == {"pid", "daemon"}
    assert '"pid" changed from "./objs/a.pid" to "./objs/b.pid": needs a restart' in diff.warnings[0] + diff.warnings[1]
    assert any(w.startswith('"daemon" changed from on to off: needs a restart') for w in diff.warnings)
