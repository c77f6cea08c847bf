"""Meaning layer of srv.conf: directives -> ServerConfig, errors and warnings with locations."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest

from srv.conf import (
    ConfigErrors,
    Endpoint,
    ForwardConfig,
    PlayConfig,
    ServerConfig,
    VhostConfig,
    load,
)
from srv.conf.directives import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
SRS_TRUNK = ROOT / "tests" / "data" / "srs-trunk-conf"


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ServerConfig:
    path = tmp_path / "x.conf"
    path.write_text(text)
    return load(str(path), env or {})


def _errors(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "x.conf"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load(str(path), env or {})
    prefix = str(path)
    return [str(e).replace(prefix, "x.conf") for e in info.value.errors]


def test_empty_file_gives_srs_defaults_and_warns_that_no_vhost_exists(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.listen == (Endpoint("0.0.0.0", 1935),)
    assert config.pid == "./objs/srs.pid"
    assert config.daemon is True
    assert config.srs_log_tank == "file"
    assert config.workers == (os.cpu_count() or 1)
    assert config.http_api.listen == Endpoint("0.0.0.0", 1985)
    assert config.vhosts == {}
    assert len(config.warnings) == 1 and "no vhost is defined" in config.warnings[0]


def test_a_typical_file_builds_the_typed_model(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
        listen 1935 127.0.0.1:1936 [::1]:1937;
        workers 2;
        daemon off;
        srs_log_tank console;
        srs_log_level warn;
        http_api { enabled on; listen 127.0.0.1:1986; raw_api { enabled on; allow_reload on; } }
        exporter { enabled on; label cn; tag edge; }
        vhost __defaultVhost__ {
            min_latency on;
            chunk_size 4096;
            play { gop_cache off; queue_length 2.5; mw_latency 100; gop_cache_max_size 8m; }
            publish { normal_timeout 7000; }
            forward { enabled on; destination 127.0.0.1:19350; }
            forward live/game_* {
                enabled on;
                destination 10.0.0.1 rtmp://cdn.example.com/live/[stream]?key=abc;
                backoff_initial 500; backoff_max 8000; queue_length 3;
            }
            http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }
        }
        """,
    )
    assert config.listen == (Endpoint("0.0.0.0", 1935), Endpoint("127.0.0.1", 1936), Endpoint("::1", 1937))
    assert [str(e) for e in config.listen] == ["0.0.0.0:1935", "127.0.0.1:1936", "[::1]:1937"]
    assert (config.workers, config.daemon, config.srs_log_tank, config.srs_log_level) == (2, False, "console", "warn")
    assert config.http_api.enabled and config.http_api.raw_api.allow_reload
    assert not config.http_api.raw_api.allow_query
    assert (config.exporter.label, config.exporter.tag) == ("cn", "edge")
    vhost = config.vhosts["__defaultVhost__"]
    assert vhost.min_latency and vhost.chunk_size == 4096
    assert vhost.play == PlayConfig(gop_cache=False, queue_length=2.5, mw_latency=100,
                                    gop_cache_max_size=8 * 2**20)
    assert vhost.publish.normal_timeout == 7000 and vhost.publish.firstpkt_timeout == 20000
    assert vhost.forwards[0] == ForwardConfig(enabled=True, destinations=("127.0.0.1:19350",))
    game = vhost.forwards[1]
    assert game.pattern == "live/game_*" and game.backoff_max == 8000 and game.queue_length == 3.0
    assert vhost.forwards_for("live", "game_1") == vhost.forwards
    assert vhost.forwards_for("live", "news") == vhost.forwards[:1]
    assert vhost.http_remux.enabled
    assert config.warnings == ()


def test_vhost_lookup_falls_back_to_default_vhost_like_srs(tmp_path: Path) -> None:
    config = _load(tmp_path, "vhost a.com { }\nvhost __defaultVhost__ { enabled off; }")
    assert config.vhost("a.com") == VhostConfig("a.com")
    fallback = config.vhost("b.com")
    assert fallback is not None and fallback.name == "__defaultVhost__"
    assert _load(tmp_path, "vhost a.com { }").vhost("b.com") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen 1935;\n\n  lisen 1936;", 'x.conf:3:3: unknown directive "lisen" (did you mean "listen"?)'),
        ("vhost v {\n    play { gop_cahce on; }\n}",
         'x.conf:2:12: unknown directive "gop_cahce" (did you mean "gop_cache"?)'),
        ("frobnicate 1;", 'x.conf:1:1: unknown directive "frobnicate"'),
        ("gop_cache on;", 'x.conf:1:1: "gop_cache" is not allowed in main, only in vhost.play'),
        ("vhost v { pid x; }", 'x.conf:1:11: "pid" is not allowed in vhost, only in main'),
        ("listen abc;", 'x.conf:1:8: invalid port "abc"'),
        ("listen 70000;", 'x.conf:1:8: invalid port "70000" (expected 1 to 65535)'),
        ("listen 1.2.3:1935;", 'x.conf:1:8: invalid listen address "1.2.3:1935" ("1.2.3" is not an IP address)'),
        ("workers -1;", 'x.conf:1:9: invalid value "-1" (expected 1 to 1024)'),
        ("workers 0;", 'x.conf:1:9: invalid value "0" (expected 1 to 1024)'),
        ("workers two;", 'x.conf:1:9: invalid integer "two" (expected a whole number)'),
        ("workers 1 2;", 'x.conf:1:1: "workers" takes exactly 1 argument, got 2'),
        ("pid;", 'x.conf:1:1: "pid" takes exactly 1 argument, got 0'),
        ("listen;", 'x.conf:1:1: "listen" takes 1 or more arguments, got 0'),
        ("listen { }", 'x.conf:1:1: "listen" takes a value, not a block: write "listen value;"'),
        ("http_api on;", 'x.conf:1:1: "http_api" is a block: write "http_api on { ... }"'),
        ("http_api x { }", 'x.conf:1:1: "http_api" takes exactly 0 arguments, got 1'),
        ("vhost { }", 'x.conf:1:1: "vhost" takes exactly 1 argument, got 0'),
        ("daemon of;", 'x.conf:1:8: invalid value "of" (expected on or off; did you mean "off"?)'),
        ("daemon yes;", 'x.conf:1:8: invalid value "yes" (expected on or off; did you mean "on"?)'),
        ("daemon maybe;", 'x.conf:1:8: invalid value "maybe" (expected on or off)'),
        ("srs_log_level debug;",
         'x.conf:1:15: invalid value "debug" (expected one of: verbose, info, trace, warn, error)'),
        ("chunk_size 64;", 'x.conf:1:12: invalid value "64" (expected 128 to 65536)'),
        ("vhost v { play { queue_length -1; } }", 'x.conf:1:31: invalid value "-1" (expected a number >= 0)'),
        ("vhost v { play { gop_cache_max_size 8x; } }",
         'x.conf:1:37: invalid size "8x" (expected bytes, or a number with k, m or g, e.g. 64m)'),
        ("vhost v { forward { destination http://x/y; } }",
         'x.conf:1:33: invalid destination "http://x/y" (expected host[:port] or rtmp://host[:port]/app/stream)'),
        ("vhost v { forward { destination a.com:x; } }", 'x.conf:1:33: invalid destination "a.com:x" (bad port "x")'),
        ("vhost v { forward { backend ftp://x; } }", 'x.conf:1:29: invalid URL "ftp://x" (expected http://host[:port]/path)'),
        ("vhost v { forward { backoff_initial 9000; } }", "x.conf:1:21: backoff_initial is larger than backoff_max"),
        ("listen 1935 1935;", 'x.conf:1:1: listen address "0.0.0.0:1935" is given twice'),
    ],
)
def test_meaning_errors_say_where_and_what(tmp_path: Path, text: str, expected: str) -> None:
    assert _errors(tmp_path, text + "\nvhost __defaultVhost__ { }\n") == [expected]


def test_all_errors_in_a_file_are_reported_at_once(tmp_path: Path) -> None:
    errors = _errors(tmp_path, "listen abc;\nworkers 0;\nvhost v {\n    lisen 1;\n}\n")
    assert [e.split(": ")[0] for e in errors] == ["x.conf:1:8", "x.conf:2:9", "x.conf:4:5"]
    with pytest.raises(ConfigErrors) as info:
        load(str(tmp_path / "x.conf"), {})
    assert str(info.value).count("\n") == 2


def test_directives_srs_knows_but_srv_does_not_are_one_warning_each(tmp_path: Path) -> None:
    config = _load(tmp_path, "server_id x;\nvhost v {\n    hds {\n        enabled on;\n        bogus 1;\n    }\n}\n")
    path = tmp_path / "x.conf"
    assert config.warnings == (
        f'{path}:1:1: "server_id" is not supported yet (ignored)',
        f'{path}:3:5: "hds" is not supported yet (ignored)',
    )


def test_hls_block_takes_srs_names_and_warns_on_the_ones_srv_lacks(tmp_path: Path) -> None:
    config = _load(tmp_path, "vhost v {\n    hls {\n        enabled on;\n        hls_fragment 2;\n"
                             "        hls_window 12.5;\n        hls_on_error disconnect;\n"
                             "        hls_use_fmp4 on;\n        hls_keys on;\n    }\n}\n")
    hls = config.vhosts["v"].hls
    assert (hls.enabled, hls.fragment, hls.window, hls.on_error, hls.use_fmp4) == (True, 2.0, 12.5, "disconnect", True)
    assert (hls.m3u8_file, hls.ts_file, hls.dispose, hls.ctx) == ("[app]/[stream].m3u8", "[app]/[stream]-[seq].ts",
                                                                 120.0, True)
    assert config.warnings == (f'{tmp_path / "x.conf"}:8:9: "hls_keys" is not supported yet (ignored)',)
    with pytest.raises(ConfigErrors, match=r"x.conf:2:24: invalid value \"stop\""):
        _load(tmp_path, "vhost v {\n    hls { hls_on_error stop; }\n}\n")


def test_repeated_single_directive_keeps_the_first_like_srs(tmp_path: Path) -> None:
    config = _load(tmp_path, "pid a.pid;\npid b.pid;\nvhost v { play { mw_msgs 1; } play { mw_msgs 2; } }\n")
    assert config.pid == "a.pid"
    assert config.vhosts["v"].play.mw_msgs == 1
    path = tmp_path / "x.conf"
    assert config.warnings[0] == f'{path}:2:1: "pid" is repeated; the first one at {path}:1:1 wins (as in SRS)'
    assert len(config.warnings) == 2


def test_repeated_vhost_name_keeps_the_first(tmp_path: Path) -> None:
    config = _load(tmp_path, "vhost a { enabled off; }\nvhost a { }\n")
    assert config.vhosts["a"].enabled is False
    assert "vhost \"a\" is repeated" in config.warnings[0]


def test_srs3_vhost_spellings_are_upgraded_with_a_warning(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "vhost v {\n  gop_cache off;\n  publish_normal_timeout 9000;\n  forward 127.0.0.1:1936;\n"
        "  play { mw_msgs 3; }\n}\n",
    )
    vhost = config.vhosts["v"]
    assert vhost.play.gop_cache is False and vhost.play.mw_msgs == 3
    assert vhost.publish.normal_timeout == 9000
    assert vhost.forwards == (ForwardConfig(enabled=True, destinations=("127.0.0.1:1936",)),)
    path = tmp_path / "x.conf"
    assert config.warnings == (
        f'{path}:2:3: "gop_cache off;" directly in a vhost is SRS 1/2 syntax; read as play {{ gop_cache off; }}',
        f'{path}:3:3: "publish_normal_timeout 9000;" directly in a vhost is SRS 1/2 syntax; '
        f'read as publish {{ normal_timeout 9000; }}',
        f'{path}:4:3: "forward 127.0.0.1:1936;" is SRS 1/2 syntax; '
        f'read as forward {{ enabled on; destination 127.0.0.1:1936; }}',
    )


def test_errors_in_included_files_name_those_files(tmp_path: Path) -> None:
    (tmp_path / "v.conf").write_text("vhost v {\n    play { gop_cache maybe; }\n}\n")
    (tmp_path / "x.conf").write_text("include v.conf;\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(tmp_path / "x.conf"), {})
    assert str(info.value) == f'{tmp_path / "v.conf"}:2:22: invalid value "maybe" (expected on or off)'


def test_syntax_error_is_raised_as_config_errors_too(tmp_path: Path) -> None:
    assert _errors(tmp_path, "listen 1935\n") == [
        'x.conf:1:1: unexpected end of file (missing ";" after "listen 1935"?)'
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "conf").glob("*.conf")))
def test_every_shipped_conf_loads_without_errors_or_warnings(name: str) -> None:
    config = load(str(ROOT / "conf" / name), {})
    assert config.warnings == ()
    assert "__defaultVhost__" in config.vhosts or config.proxy.enabled  # a proxy's origins have the vhosts


def test_shipped_default_conf_matches_the_documented_setup() -> None:
    config = load(str(ROOT / "conf" / "srs.conf"), {})
    assert config.listen == (Endpoint("0.0.0.0", 1935),)
    assert (config.daemon, config.srs_log_tank, config.max_connections) == (False, "console", 1000)
    # the API (which kicks clients and reloads) and the exporter answer on this host only
    assert config.http_api.enabled and config.http_api.listen == Endpoint("127.0.0.1", 1985)
    assert not config.http_api.raw_api.enabled  # SRS's default: no reload over HTTP
    assert config.exporter.enabled and config.exporter.listen == Endpoint("127.0.0.1", 9972)
    assert config.http_server.enabled and config.http_server.listen.port == 8080
    assert config.vhosts["__defaultVhost__"].http_remux.enabled


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "conf").glob("*.conf") if p.name != "full.conf"))
def test_shipped_configs_keep_the_api_and_exporter_local(name: str) -> None:
    config = load(str(ROOT / "conf" / name), {})
    for service in (config.http_api, config.exporter):
        assert not service.enabled or service.listen.host == "127.0.0.1", (name, service)


def test_a_proxy_needs_no_vhost_but_memory_needs_one_worker(tmp_path: Path) -> None:
    path = tmp_path / "p.conf"
    path.write_text("workers 2;\nproxy { enabled on; load_balancer memory; }\n")
    with pytest.raises(ConfigErrors) as info:
        load(str(path), {})
    assert "proxy load_balancer memory keeps origins and streams in one process, but workers is 2" in str(info.value)
    path.write_text("workers 1;\nproxy { enabled on; load_balancer memory; }\n")
    assert load(str(path), {}).warnings == ()


def test_forward_sample_confs_use_distinct_ports_and_pid_files() -> None:
    names = ["forward-master.conf", "forward-slave-1936.conf", "forward-slave-1937.conf"]
    configs = [load(str(ROOT / "conf" / n), {}) for n in names]
    master = configs[0].vhosts["__defaultVhost__"].forwards[0]
    assert master.enabled and master.destinations == ("127.0.0.1:1936", "127.0.0.1:1937")
    assert [c.listen[0].port for c in configs] == [1935, 1936, 1937]
    assert len({c.pid for c in configs}) == 3
    ports = [e.port for c in configs for e in (*c.listen, c.http_api.listen, c.http_server.listen)]
    assert len(ports) == len(set(ports))


def test_srs_full_conf_loads_with_warnings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SRS_TRUNK)  # its include ./conf/include.vhost.conf; is relative to trunk
    config = load("conf/full.conf", {})
    assert any('"hds" is not supported yet' in w for w in config.warnings)
    assert any('"hls_keys" is not supported yet' in w for w in config.warnings)
    assert "include.srs.com" in config.vhosts
    assert config.http_api.listen.port == 8080  # the first http_api block wins, as in SRS
    forward = config.vhosts["same.vhost.forward.srs.com"].forwards[0]
    assert forward.backend == "http://127.0.0.1:8085/api/v1/forward"


def test_full_conf_shows_every_directive_the_registry_implements() -> None:
    config = load(str(ROOT / "conf" / "full.conf"), {})
    assert config.warnings == ()
    text = (ROOT / "conf" / "full.conf").read_text()
    lines = [line.split("#")[0].split() for line in text.splitlines()]
    used = {words[0] for words in lines if words}
    missing = sorted({spec.name for _, spec in REGISTRY.places()} - used)
    assert missing == []


def test_declared_defaults_agree_with_the_dataclasses() -> None:
    for context, spec in REGISTRY.places():
        if spec.block or spec.convert is None or str(spec.default).startswith("<") or spec.default == '""':
            continue
        section = REGISTRY.sections[context]
        fields = {f.name: f for f in dataclasses.fields(section)}
        declared = fields[spec.target].default
        value = spec.convert(str(spec.default))
        if spec.nargs[1] is None:  # a list directive (listen, rtmps listen): a tuple of values
            value = (value,)
        assert value == declared, (context, spec.name)


def test_server_config_pickles_and_hashes(tmp_path: Path) -> None:
    config = load(str(ROOT / "conf" / "full.conf"), {})
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config
    assert hash(copy) == hash(config)
    assert copy.vhost("x") == config.vhosts["__defaultVhost__"]
    with pytest.raises(TypeError):
        copy.vhosts["y"] = VhostConfig("y")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.pid = "z"  # type: ignore[misc]


def test_dvr_block_takes_srs_names_defaults_and_srv_keep(tmp_path: Path) -> None:
    config = _load(tmp_path, "vhost v {\n    dvr {\n        enabled on;\n        dvr_apply live/a live/b;\n"
                             "        dvr_plan segment;\n        dvr_path /data/[app]/[stream].mp4;\n"
                             "        dvr_duration 5;\n        time_jitter zero;\n"
                             "        dvr_keep 12h 500m;\n    }\n}\n")
    dvr = config.vhosts["v"].dvr
    assert (dvr.enabled, dvr.apply, dvr.plan, dvr.path, dvr.duration) == (
        True, ("live/a", "live/b"), "segment", "/data/[app]/[stream].mp4", 5.0)
    assert (dvr.wait_keyframe, dvr.time_jitter, dvr.keep) == (True, "zero", (43200.0, 500 * 2**20))
    assert dvr.applies("live", "a") and not dvr.applies("live", "c")
    assert config.warnings == ()
    default = _load(tmp_path, "vhost v {\n    dvr { enabled on; }\n}\n").vhosts["v"].dvr
    assert (default.apply, default.plan, default.path, default.duration, default.keep) == (
        ("all",), "session", "./objs/nginx/html/[app]/[stream].[timestamp].flv", 30.0, (0.0, 0))
    assert default.applies("any", "thing")
    with pytest.raises(ConfigErrors, match=r'x.conf:2:20: invalid value "append"'):
        _load(tmp_path, "vhost v {\n    dvr { dvr_plan append; }\n}\n")
    with pytest.raises(ConfigErrors, match=r"invalid dvr_keep"):
        _load(tmp_path, "vhost v {\n    dvr { dvr_keep 5x; }\n}\n")
