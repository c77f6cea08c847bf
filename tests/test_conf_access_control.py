"""Until access control is implemented, a config that enables it does not run wide open:
`http_hooks` switched on refuses a start and a reload (the old config keeps running), while
`srs -t` passes with a warning so SRS's configs test clean. (`http_api { auth }` is enforced:
tests/test_http_api_auth.py; `security` too: tests/test_access.py, switched on it is an ordinary
directive.)"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from conftest import SRS, codecs, ffprobe

from srv.conf import ConfigErrors, load

DENY_PUBLISH = "vhost __defaultVhost__ {\n    security {\n        enabled on;\n        deny publish all;\n    }\n}\n"
HOOKS = ("vhost __defaultVhost__ {\n    http_hooks {\n        enabled on;\n"
         "        on_publish http://127.0.0.1:8085/api/v1/streams;\n    }\n}\n")
REFUSED = 'is enabled, but srv does not enforce access control yet: refusing to run wide open'


@pytest.mark.parametrize("text, where, name", [
    (HOOKS, "3:9", '"http_hooks"'),  # where it is switched on: its "enabled on;"
], ids=["http_hooks"])
def test_enabled_access_control_is_refused_naming_the_directive_and_where(
        tmp_path: Path, text: str, where: str, name: str) -> None:
    path = tmp_path / "x.conf"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    assert [str(e) for e in info.value.errors] == [
        f'{path}:{where}: {name} {REFUSED} (remove it or set "enabled off;")']
    tested = load(str(path), {}, enforce=False)  # srs -t
    assert tested.warnings == (f'{path}:{where}: {name} is enabled, but srv does not enforce access '
                               f'control yet: the server refuses to start with this file',)


@pytest.mark.parametrize("body", [
    "http_hooks { on_publish http://127.0.0.1:8085/; }",  # SRS's default is off
    "http_hooks { enabled off; on_publish http://127.0.0.1:8085/; }",
    "http_hooks { enabled off; enabled on; }",  # SRS reads the first one
])
def test_access_control_that_is_off_is_only_not_supported(tmp_path: Path, body: str) -> None:
    path = tmp_path / "x.conf"
    path.write_text(f"vhost v {{ {body} }}\n")
    config = load(str(path), {})
    assert len(config.warnings) == 1 and "is not supported yet (ignored)" in config.warnings[0]


@pytest.mark.parametrize("variable, name", [
    ("SRS_VHOST_HTTP_HOOKS_ENABLED", '"http_hooks"'),
])
def test_access_control_switched_on_from_the_environment_is_refused_too(
        tmp_path: Path, variable: str, name: str) -> None:
    path = tmp_path / "x.conf"
    path.write_text("http_api { enabled on; }\nvhost a { }\nvhost b { security { enabled off; } }\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {variable: "on"})  # as SRS reads it, for every vhost
    refusal = f'env {variable}: {name} {REFUSED} (remove it or set "enabled off;")'
    assert {str(e) for e in info.value.errors} == {refusal}
    assert load(str(path), {variable: "off"}).http_api.enabled


def test_the_environment_can_switch_off_what_the_file_switches_on(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text(HOOKS)
    config = load(str(path), {"SRS_VHOST_HTTP_HOOKS_ENABLED": "off"})
    assert config.warnings == (f'{path}:2:5: "http_hooks" is not supported yet (ignored)',)


def test_security_is_enforced_so_switching_it_on_is_an_ordinary_directive(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text(DENY_PUBLISH)
    config = load(str(path), {})
    assert config.warnings == ()
    assert config.vhosts["__defaultVhost__"].security.deny == (("publish", "all"),)
    on = load(str(path), {"SRS_VHOST_SECURITY_ENABLED": "off"})
    assert not on.vhosts["__defaultVhost__"].security.enabled


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SRS), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_t_passes_with_a_warning_and_a_start_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "deny.conf"
    conf.write_text(f"listen 127.0.0.1:1;\npid {tmp_path / 'srs.pid'};\ndaemon off;\n" + HOOKS)
    tested = run("-t", "-c", str(conf), cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert f'srs: warning: {conf}:6:9: "http_hooks" is enabled' in tested.stderr
    assert "test is successful" in tested.stderr
    started = run("-c", str(conf), cwd=tmp_path)
    assert started.returncode == 1
    assert f'srs: {conf}:6:9: "http_hooks" {REFUSED}' in started.stderr
    assert f"srs: not started: configuration file {conf} has errors" in started.stderr
    assert not (tmp_path / "srs.pid").exists()


def test_reload_onto_enabled_access_control_keeps_the_old_config(srs_server, clients) -> None:  # type: ignore[no-untyped-def]
    srv = srs_server("vhost __defaultVhost__ { }\n", workers=1)
    good = srv.conf.read_text()
    srv.conf.write_text(srv.header + HOOKS)
    out = subprocess.run([str(SRS), "-s", "reload", "-c", str(srv.conf)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and '"http_hooks" is enabled' in out.stderr
    assert "the running server keeps its config" in out.stderr
    srv.send_signal(signal.SIGHUP)  # a plain HUP (systemctl reload) is refused by the master
    srv.wait_log("reload failed: ")
    line = next(ln for ln in srv.log_text().splitlines() if "reload failed: " in ln)
    assert f'{srv.conf}:' in line and '"http_hooks"' in line and "does not enforce access control" in line
    clients.publish(f"{srv.url}/live/s")  # still the old, open config: publishing works
    assert "video" in codecs(ffprobe(f"{srv.url}/live/s"))
    srv.conf.write_text(good)
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok")


def test_api_and_exporter_listen_on_loopback_only_when_told(srs_server) -> None:  # type: ignore[no-untyped-def]
    import json
    import urllib.request

    import psutil

    srv = srs_server(workers=1, http=True)  # http_api/exporter { listen 127.0.0.1:port; } as conf/srs.conf
    bound = {c.laddr.port: c.laddr.ip for c in psutil.Process(srv.master_pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN}
    assert bound[srv.api_port] == "127.0.0.1" and bound[srv.exporter_port] == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/api/v1/versions", timeout=10) as r:
        assert json.load(r)["code"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.exporter_port}/metrics", timeout=10) as r:
        assert b"srs_" in r.read()
