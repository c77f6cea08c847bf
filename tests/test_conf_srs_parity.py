"""SRS config parity: every config in SRS's trunk/conf passes `srs -t` from a trunk-like folder;
SRS 1/2 spellings and SRS 7 names are read the way SRS reads them, with a warning naming the
current spelling; includes fall back to the working directory as SRS's do."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SRS

from srv import cli
from srv import log as srvlog
from srv.conf import ConfigErrors, Endpoint, ForwardConfig, load
from srv.conf.model import ClusterConfig, ServerConfig, origin_address

TRUNK = Path(__file__).resolve().parent / "data" / "srs-trunk-conf"
NGINX_CONFIGS = {"hls.edge.conf", "nginx.proxy.conf"}  # nginx's own configs, shipped beside SRS's
SRS_CONFIGS = sorted(p.name for p in (TRUNK / "conf").glob("*.conf") if p.name not in NGINX_CONFIGS)


@pytest.fixture(autouse=True)
def _logging_left_as_it_was(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`cli.main` sets up this process's logging as srs's own (`srvlog.setup`: a handler on the
    root logger, the root level at trace): undone after each test, or every later test of this
    xdist worker logs through it (pytest then keeps each srv trace line for the test report,
    which test_memory_per_player counted as memory kept per connection)."""
    root = logging.getLogger()
    level, handler = root.level, srvlog._handler
    for name in ("_handler", "_tank", "_path", "_role"):  # restored by monkeypatch after this
        monkeypatch.setattr(srvlog, name, getattr(srvlog, name))
    yield
    if srvlog._handler is not handler and srvlog._handler is not None:
        root.removeHandler(srvlog._handler)
    root.setLevel(level)


def test_the_trunk_set_is_srs_trunk_conf() -> None:
    names = set(SRS_CONFIGS)
    assert len(names) > 100
    # SRS 7 samples with the names issue 10 lists, and the configs the parity bullets are about
    assert {"full.conf", "include.conf", "compatible.conf", "forward.master.rtmps.conf",
            "hls.mp4.conf", "security.deny.publish.conf"} <= names


@pytest.mark.parametrize("name", SRS_CONFIGS)
def test_every_srs_trunk_config_passes_t_from_a_trunk_layout(
        name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(TRUNK)
    assert cli.main(["-t", "-c", f"conf/{name}"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert f"configuration file conf/{name} test is successful" in err
    assert "unknown directive" not in err and "not allowed" not in err


@pytest.mark.parametrize("name", sorted(NGINX_CONFIGS))
def test_the_two_nginx_configs_are_not_srs_configs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TRUNK)
    with pytest.raises(ConfigErrors, match='unknown directive "worker_processes"'):
        load(f"conf/{name}", {})


def test_launcher_tests_srs_include_conf_run_from_trunk() -> None:
    out = subprocess.run([str(SRS), "-t", "-c", "conf/include.conf"], cwd=TRUNK, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "configuration file conf/include.conf test is successful" in out.stderr


def test_srs_include_conf_loads_the_included_vhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TRUNK)
    config = load("conf/include.conf", {})  # include ./conf/include.vhost.conf; from trunk
    vhost = config.vhosts["include.srs.com"]
    assert vhost.http_remux.enabled
    assert vhost.hls.enabled


def test_srs1_compatible_conf_reads_old_spellings_as_srs_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TRUNK)
    config = load("conf/compatible.conf", {})
    assert config.http_server.enabled and config.http_server.listen == Endpoint("0.0.0.0", 8080)
    vhost = config.vhosts["__defaultVhost__"]
    assert vhost.forwards == (ForwardConfig(enabled=True, destinations=("127.0.0.1:1936", "127.0.0.1:1937")),)
    assert (vhost.play.gop_cache, vhost.play.queue_length, vhost.play.mw_latency) == (False, 10.0, 100)
    assert (vhost.publish.firstpkt_timeout, vhost.publish.normal_timeout) == (20000, 7000)
    warnings = "\n".join(config.warnings)
    for old, modern in [
        ("mode remote;", "cluster { mode remote; }"),
        ("origin 127.0.0.1:1935 localhost:1935;", "cluster { origin 127.0.0.1:1935 localhost:1935; }"),
        ("vhost same.edge.srs.com;", "cluster { vhost same.edge.srs.com; }"),
        ("token_traverse off;", "cluster { token_traverse off; }"),
        ("time_jitter full;", "play { time_jitter full; }"),
        ("refer_play github.com github.io;", "refer { play github.com github.io; }"),
    ]:
        assert f'"{old}" directly in a vhost is SRS 1/2 syntax; read as {modern}' in warnings
    assert ('"forward 127.0.0.1:1936 127.0.0.1:1937;" is SRS 1/2 syntax; read as forward '
            '{ enabled on; destination 127.0.0.1:1936 127.0.0.1:1937; }') in warnings
    assert '"http_stream" is SRS 1 syntax; read as http_server { ... }' in warnings
    assert '"mr { }" in a vhost is SRS 2 syntax; read as publish { mr off; mr_latency 350; }' in warnings
    assert vhost.cluster == ClusterConfig(mode="remote", origins=("127.0.0.1:1935", "localhost:1935"),
                                          vhost="same.edge.srs.com")
    assert '"debug_srs_upnode" is not supported yet (ignored)' in warnings  # the rest is read, as SRS does


def _load(tmp_path: Path, text: str) -> tuple[object, list[str]]:
    path = tmp_path / "x.conf"
    path.write_text(text)
    config = load(str(path), {})
    return config, [w.replace(str(path), "x.conf") for w in config.warnings]


def test_srs7_rtmp_block_holds_listen_and_chunk_size(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("rtmp {\n    listen 127.0.0.1:1940 1941;\n    chunk_size 4096;\n}\nvhost v { }\n")
    config = load(str(path), {})
    assert config.listen == (Endpoint("127.0.0.1", 1940), Endpoint("0.0.0.0", 1941))
    assert config.chunk_size == 4096
    assert config.warnings == ()


def test_a_top_level_listen_wins_over_the_rtmp_block_as_in_srs7(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("rtmp { listen 1940; }\nlisten 1942;\nvhost v { }\n")
    config = load(str(path), {})
    assert config.listen == (Endpoint("0.0.0.0", 1942),)
    assert config.warnings == (
        f'{path}:1:8: "listen" in rtmp {{ }} is overridden by the top-level one at {path}:2:1 (as in SRS 7)',
    )
    env = load(str(path), {"SRS_LISTEN": "1943"})
    assert env.listen == (Endpoint("0.0.0.0", 1943),)


def test_rtmp_block_values_are_validated_where_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("rtmp {\n    listen 99999;\n    lisen 1;\n}\nvhost v { }\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    assert [str(e) for e in info.value.errors] == [
        f'{path}:3:5: unknown directive "lisen" in rtmp {{ }} (SRS 7 puts only listen and chunk_size there)',
        f'{path}:2:12: invalid port "99999" (expected 1 to 65535)',
    ]


@pytest.mark.parametrize("text, name", [
    ("vhost v {\n    hls {\n        hls_recover on;\n        hls_master_m3u8_path_relative on;\n    }\n}\n",
     "hls_recover"),
    ("heartbeat {\n    enabled off;\n    summaries on;\n}\n", "summaries"),
    ("rtsp_server {\n    enabled on;\n    listen 554;\n}\n", "rtsp_server"),
], ids=["hls-srs7", "heartbeat-summaries", "rtsp_server"])
def test_srs7_names_are_known_and_warn_as_not_supported(tmp_path: Path, text: str, name: str) -> None:
    _config, warnings = _load(tmp_path, text + "vhost __defaultVhost__ { }\n")
    assert warnings and all("not supported yet (ignored)" in w for w in warnings), warnings
    assert any(f'"{name}" is not supported yet' in w for w in warnings)


def test_srs7_rtmps_configs_load_as_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TRUNK)
    master = load("conf/forward.master.rtmps.conf", {})
    slave = load("conf/forward.slave.rtmps.conf", {})
    assert master.warnings == () and slave.warnings == ()
    assert (master.rtmps.enabled, master.rtmps.listen, master.rtmps.key, master.rtmps.cert) == (
        True, (Endpoint("0.0.0.0", 1943),), "./conf/server.key", "./conf/server.crt")
    assert slave.rtmps.listen == (Endpoint("0.0.0.0", 19430),)
    fw = master.vhosts["__defaultVhost__"].forwards[0]
    assert (fw.rtmps, fw.destinations) == (True, ("127.0.0.1:19430",))


def test_srs_https_blocks_load_with_srs_defaults(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("http_api { enabled on; listen 127.0.0.1:1985; https { enabled on; listen 127.0.0.1:1990; } }\n"
                    "http_server { enabled on; https { enabled on; key k.pem; cert c.pem; } }\n"
                    "vhost __defaultVhost__ { }\n")
    config = load(str(path), {})
    assert config.warnings == ()
    assert config.http_api.https.listen == Endpoint("127.0.0.1", 1990)
    assert (config.http_api.https.key, config.http_api.https.cert) == ("./conf/server.key", "./conf/server.crt")
    assert config.http_server.https.listen == Endpoint("0.0.0.0", 8088)
    assert (config.http_server.https.key, config.http_server.https.cert) == ("k.pem", "c.pem")


def test_a_misspelled_srs7_block_is_still_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("rtmpss {\n    enabled on;\n}\nvhost v { }\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    assert [str(e) for e in info.value.errors] == [f'{path}:1:1: unknown directive "rtmpss" (did you mean "rtmps"?)']


def test_cluster_block_reads_srs_edge_settings_and_warns_once_for_the_rest(tmp_path: Path) -> None:
    config, warnings = _load(tmp_path, (
        "vhost edge.srs.com {\n"
        "    cluster {\n"
        "        mode remote;\n"
        "        origin 127.0.0.1:19350 127.0.0.2 [::1]:1936;\n"
        "        token_traverse on;\n"
        "        vhost same.edge.srs.com;\n"
        "        debug_srs_upnode on;\n"
        "    }\n"
        "}\n"
        "vhost origin.srs.com { cluster { origin_cluster off; } }\n"))
    assert isinstance(config, ServerConfig)
    edge = config.vhosts["edge.srs.com"].cluster
    assert edge == ClusterConfig(mode="remote", origins=("127.0.0.1:19350", "127.0.0.2", "[::1]:1936"),
                                 token_traverse=True, vhost="same.edge.srs.com")
    assert edge.edge
    assert [origin_address(o) for o in edge.origins] == [("127.0.0.1", 19350), ("127.0.0.2", 1935), ("::1", 1936)]
    origin = config.vhosts["origin.srs.com"].cluster
    assert origin.mode == "local" and not origin.edge  # SRS's default: an origin
    assert warnings == ['x.conf:7:9: "debug_srs_upnode" is not supported yet (ignored)',
                        'x.conf:10:34: "origin_cluster" is not supported yet (ignored)']


def test_cluster_block_mistakes_are_errors_with_their_place(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("vhost v {\n    cluster {\n        mode edge;\n        origin rtmp://o/live;\n    }\n}\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    errors = [str(e).replace(str(path), "x.conf") for e in info.value.errors]
    assert errors[0].startswith('x.conf:3:14: invalid value "edge"'), errors
    assert errors[1] == 'x.conf:4:16: invalid origin "rtmp://o/live" (expected host[:port], not a URL)', errors
