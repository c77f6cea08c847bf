"""Pure parts of srv.http: static path resolution, HTTP-FLV mounts, the server-wide view of a
snapshot and the exporter's text, without a running server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from srv.conf.model import ExporterConfig, HttpRemuxConfig, VhostConfig
from srv.http import static
from srv.http.exporter import render
from srv.http.flv import match_mount
from srv.http.stats import ServerView, stream_id
from srv.media.metadata import decode_metadata, describe
from srv.net.context import ClientQuery, client_figures
from srv.rtmp import amf0


def test_static_serves_files_and_index_with_types(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("hi")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("sub")
    (tmp_path / "a.m3u8").write_text("#EXTM3U")
    assert static.resolve(str(tmp_path), "/").path == str(tmp_path / "index.html")
    assert static.resolve(str(tmp_path), "/sub/").path == str(tmp_path / "sub" / "index.html")
    assert static.resolve(str(tmp_path), "/index.html").content_type == "text/html; charset=utf-8"
    assert static.resolve(str(tmp_path), "/a.m3u8").content_type == "application/vnd.apple.mpegurl"
    assert static.resolve(str(tmp_path), "/nope").status == 404


def test_static_refuses_every_way_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", root / "link")
    os.symlink(tmp_path, root / "dirlink")
    for path in ("/../secret", "/%2e%2e/secret", "/%2E%2E%2Fsecret", "/a/../../secret", "/link",
                 "/dirlink/secret", "/..\\secret", "/%00", "/.%2e/secret"):
        assert static.resolve(str(root), path).status in (403, 404), path
    assert static.resolve(str(root), "/%252e%252e/secret").status == 404  # decoded once only
    assert static.resolve(str(root), "/%ff%fe").status == 404


def test_flv_mount_drops_the_default_vhost_and_uses_the_host_otherwise() -> None:
    on = HttpRemuxConfig(enabled=True)
    default = VhostConfig("__defaultVhost__", http_remux=on)
    named = VhostConfig("a.com", http_remux=on)
    assert match_mount(default, "/live/s.flv") == ("live", "s")
    assert match_mount(default, "/live/sub/s.flv") == ("live/sub", "s")
    assert match_mount(default, "/live/s.mp4") is None
    assert match_mount(named, "/live/s.flv") == ("live", "s")
    fixed = VhostConfig("__defaultVhost__", http_remux=HttpRemuxConfig(True, "[app]/x/[stream].flv"))
    assert match_mount(fixed, "/live/x/s.flv") == ("live", "s")
    assert match_mount(fixed, "/live/s.flv") is None
    assert match_mount(VhostConfig("__defaultVhost__"), "/live/s.flv") is None  # http_remux off


EVERY_CLIENT = ClientQuery(0, 100)


def _snapshot(dead: bool = False) -> dict[str, Any]:
    key = "__defaultVhost__/live/s"
    meta = amf0.encode("onMetaData", {"width": 320.0, "height": 240.0, "videocodecid": 7.0})
    origin = {"key": key, "publishing": True, "origin": True, "publish_started": 1.0, "players": 2,
              "frames": 100, "bytes_in": 5000, "bytes_out": 9000, "dropped": 0,
              "description": describe(None, None, decode_metadata(meta)),
              "forwards": [{"destination": "127.0.0.1:1936/live/s", "state": "connected",
                            "messages_sent": 10, "bytes_sent": 1000, "reconnects": 1}]}
    pull = dict(origin, origin=False, players=1, bytes_in=4000, forwards=[])
    workers = {
        1: {"slot": 1, "pid": 11, "counters": {"send_bytes": 100, "recv_bytes": 5000, "clients_total": 3,
                                                 "rejected:max_connections": 2},
            **client_figures([{"id": "1-1", "type": "fmle-publish", "stream": key, "vhost": "__defaultVhost__",
                               "send_bytes": 10, "recv_bytes": 5000, "alive": 10.0},
                              {"id": "1-2", "type": "rtmp-play", "stream": key, "vhost": "__defaultVhost__",
                               "send_bytes": 90, "recv_bytes": 0, "alive": 5.0}], EVERY_CLIENT),
            "streams": [origin]},
        2: {"slot": 2, "pid": 22, "counters": {"send_bytes": 300, "clients_total": 1},
            **client_figures([{"id": "2-1", "type": "flv-play", "stream": key, "vhost": "__defaultVhost__",
                               "send_bytes": 300, "recv_bytes": 0, "alive": 5.0}], EVERY_CLIENT),
            "streams": [pull]},
    }
    alive = [{"slot": 1, "pid": 11, "ready": True, "age": 5.0}]
    if not dead:
        alive.append({"slot": 2, "pid": 22, "ready": True, "age": 5.0})
    return {"workers": workers, "master": {"pid": 1, "started": 0.0, "workers": alive, "ready": True,
                                           "retired": {"send_bytes": 1000, "clients_total": 7},
                                           "streams": {key: 1}, "reloads_ok": 2, "reloads_failed": 1,
                                           "worker_restarts": 1}}


def test_server_view_folds_a_stream_seen_on_two_workers() -> None:
    view = ServerView(_snapshot())
    (s,) = view.streams.values()
    assert s.players == 2 and s.clients == 3  # the pull between workers is not a player
    assert s.recv_bytes == 5000 and s.frames == 100 and s.publish_cid == "1-1"
    assert s.send_bytes == 390 and s.workers == [1, 2]
    assert view.stream(stream_id(s.key)) is s
    video = view.codecs(s)["video"]
    assert video is not None and video["codec"] == "H264" and video["width"] == 320
    assert view.counter("send_bytes") == 1400 and view.counter("clients_total") == 11


def test_a_worker_that_died_after_answering_is_not_counted_twice() -> None:
    view = ServerView(_snapshot(dead=True))
    assert set(view.workers) == {1}
    assert view.counter("send_bytes") == 1100
    assert [c["id"] for c in view.clients] == ["1-1", "1-2"]


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exporter_text_parses_with_help_type_and_total_suffixes() -> None:
    text = render(_snapshot(), ExporterConfig(label="l", tag="t"))
    assert b"# HELP srs_send_bytes_total" in text and b"# TYPE srs_send_bytes_total counter" in text
    m = _samples(text)
    lv = (("app", "live"), ("stream", "s"), ("vhost", "__defaultVhost__"))
    dest = lv + (("destination", "127.0.0.1:1936/live/s"),)
    assert m[("srs_send_bytes_total", ())] == 1400
    assert m[("srs_clients", ())] == 3 and m[("srs_clients_total", ())] == 11
    assert m[("srs_stream_players", lv)] == 2 and m[("srs_stream_publishers", lv)] == 1
    assert m[("srs_forward_up", tuple(sorted(dest)))] == 1
    assert m[("srs_forward_messages_dropped_total", tuple(sorted(dest)))] == 0  # missing key tolerated
    assert m[("srs_forward_reconnects_total", tuple(sorted(dest)))] == 1
    assert m[("srs_connections_rejected_total", (("reason", "max_connections"),))] == 2
    assert m[("srs_reloads_total", (("result", "failed"),))] == 1
    assert m[("srs_worker_restarts_total", ())] == 1
    for name, _ in m:
        assert name.startswith("srs_")


def test_the_hub_describes_a_stream_once_per_header_change_and_ships_only_that(
        monkeypatch: Any, tmp_path: Path) -> None:
    """onMetaData is decoded once, by the RTMP layer, and its values travel with the message: the
    hub describes the stream when the headers change, never decoding the payload again nor on API
    calls; the snapshot carries the small StreamDescription, never the raw header bytes. Driven
    through a real RtmpServerProtocol, metadata both held while the publish is decided and live."""
    import asyncio

    from test_rtmp_robustness import attach_client

    from srv.app.hub import StreamHub
    from srv.conf.loader import load
    from srv.media.metadata import AudioDescription, StreamDescription, VideoDescription
    from srv.net.rtmp_server import RtmpServerProtocol
    from srv.rtmp.messages import Message
    from srv.worker_context import WorkerContext

    real_decode = amf0.decode
    meta_decodes: list[bytes] = []

    def counting_decode(payload: bytes) -> Any:
        if b"onMetaData" in bytes(payload):
            meta_decodes.append(bytes(payload))
        return real_decode(payload)

    monkeypatch.setattr(amf0, "decode", counting_decode)

    class Registry:
        async def claim(self, key: str) -> int | None:
            return None

        def release(self, key: str) -> None:
            pass

    conf = tmp_path / "x.conf"
    conf.write_text("listen 1935;\nvhost __defaultVhost__ { }\n")
    config = load(str(conf), {})
    loop = asyncio.new_event_loop()
    try:
        hub = StreamHub(config, 1, Registry(), loop)  # type: ignore[arg-type]
        conn = RtmpServerProtocol(WorkerContext(1, config, hub, loop, None))  # type: ignore[arg-type]
        transport, client, exchange = attach_client(conn)
        for step in range(6):
            if step == 4:
                client.create_stream()
            if step == 5:
                client.publish("s")
            exchange()
        meta = amf0.encode("@setDataFrame", "onMetaData", {
            "width": 640.0, "height": 360.0, "videocodecid": 7.0, "audiocodecid": 10.0,
            "audiosamplerate": 44100.0})
        client.send_media(Message(18, 1, 0, meta))  # held: the publish is not decided yet
        exchange()
        loop.run_until_complete(asyncio.sleep(0.01))  # the hub grants the publish
        assert not conn.closed
        (src,) = hub.sources.values()
        assert src.description.video == VideoDescription("H264", "Other", "Other", 640, 360)
        client.send_media(Message(9, 1, 0, bytes.fromhex(
            "17000000000142001effe100086742001eed0283f201000468ce3880")))
        client.send_media(Message(8, 1, 0, b"\xaf\x00\x12\x10"))
        for ts in range(1, 50):
            client.send_media(Message(9, 1, ts * 40, b"\x27\x01\x00\x00\x00" + b"\0" * 100))
            client.send_media(Message(8, 1, ts * 40, b"\xaf\x01" + b"\0" * 50))
        exchange()
        for _ in range(5):
            (stats,) = hub.stats()
            assert not {"meta", "video_sh", "audio_sh"} & set(stats)
        assert len(meta_decodes) == 1  # by the RTMP layer; not again per header change or API call
        desc = stats["description"]
        assert isinstance(desc, StreamDescription)
        assert desc.video is not None and desc.video.codec == "H264" and desc.video.profile == "Baseline"
        assert desc.audio == AudioDescription("AAC", 44100, 2, "LC")
        client.send_media(Message(18, 1, 2000, amf0.encode("onMetaData", {"width": 1280.0})))
        exchange()  # a live metadata change: decoded once more, and described from its values
        assert len(meta_decodes) == 2
        assert src.metadata is not None and src.metadata.width == 1280
        src.on_unpublish()
        assert src.description == StreamDescription() and src.metadata is None
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()


def test_http_reads_stream_descriptions_without_the_rtmp_layer() -> None:
    from tests.test_layers import SRV, imports

    for path in (SRV / "http").rglob("*.py"):
        assert not [mod for _, mod in imports(path, SRV) if mod.startswith("srv.rtmp")], path


def test_api_and_exporter_keep_their_own_cpu_sampling_state() -> None:
    # psutil's cpu_percent is "since the previous call on this Process object": a scrape sharing
    # the API's objects would cut the API's interval short (and the reverse)
    from srv.http import api, exporter

    me = os.getpid()
    snap = _snapshot()
    snap["master"] = dict(snap["master"], pid=me, workers=[])
    api.CPU.forget(set())
    render(snap, ExporterConfig())
    assert me in exporter.CPU.procs
    assert me not in api.CPU.procs  # the scrape left the API's interval alone
    first = exporter.CPU.procs[me]
    api.CPU.figures(me)
    assert api.CPU.procs[me] is not first and exporter.CPU.procs[me] is first


def test_routes_follow_the_listener_services_in_order() -> None:
    from srv.http.routes import Route, route

    both = frozenset({"api", "server"})
    assert route(both, "OPTIONS", "/api/v1/clients/1-1", cors=True) is Route.PREFLIGHT
    assert route(both, "OPTIONS", "/api/v1/streams", cors=False) is Route.API
    assert route(frozenset({"exporter"}), "GET", "/livez", cors=False) is Route.LIVE
    assert route(frozenset({"server"}), "HEAD", "/readyz", cors=False) is Route.READY
    assert route(frozenset({"exporter"}), "GET", "/metrics", cors=False) is Route.METRICS
    assert route(frozenset({"server"}), "GET", "/metrics", cors=False) is Route.MEDIA  # a file there
    assert route(both, "DELETE", "/api/v1/clients/1-1", cors=True) is Route.API
    assert route(both, "GET", "/apix", cors=False) is Route.MEDIA
    assert route(frozenset({"server"}), "POST", "/live/s.flv", cors=False) is Route.NOT_ALLOWED
    assert route(frozenset({"api"}), "GET", "/live/s.flv", cors=False) is Route.NOT_FOUND
