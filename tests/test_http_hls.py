"""HLS serving on the real server (workers 2) with real HTTP requests: files of `hls_path` with
their types, caching and validators over HTTP and HTTPS, CORS (`crossdomain`) on HLS and
HTTP-FLV, and SRS's `hls_ctx` viewers: variant playlist, `hls-play` clients across workers,
timeout with one `on_stop`, refusals as 403.

Most files are written by the test itself (segments and playlists of a fake stream), so serving
is tested on its own; the last tests publish with ffmpeg and serve what the HLS writer wrote
(every URI of the live playlist from both workers, ffmpeg playing through the variant, viewers
leaving with one on_stop each). Every request is a fresh connection, so either worker may answer.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Clients, Server, free_port, wait_for
from hookserver import HookServer
from prometheus_client.parser import text_string_to_metric_families
from test_http_methods import exchange, head_of, request
from tls_certs import Authority

from srv.app.access import make_token

PLAYLIST = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            "#EXTINF:2.000,\ns-0.ts\n#EXTINF:2.000,\ns-1.ts\n")
FMP4_PLAYLIST = ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"f-init.mp4\"\n"
                 "#EXTINF:2.000,\nf-0.m4s\n")


def fetch(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None,
          host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers with lower-case names, body)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head_of(exchange(port, request(method, path, extra=extra).replace(b"127.0.0.1", host.encode(), 1)))


def write_stream(root: Path, app: str = "live", stream: str = "s") -> dict[str, bytes]:
    """A fake stream's files under `root` (TS and fMP4); {relative path: content}."""
    files = {f"{app}/{stream}.m3u8": PLAYLIST.replace("s-", f"{stream}-").encode(),
             f"{app}/{stream}-0.ts": b"\x47" + bytes(187) * 1, f"{app}/{stream}-1.ts": b"\x47" * 376,
             f"{app}/f.m3u8": FMP4_PLAYLIST.encode(), f"{app}/f-init.mp4": b"\0\0\0\x08ftyp",
             f"{app}/f-0.m4s": b"\0\0\0\x08moof"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def hls_vhost(hls_path: Path, extra: str = "", vhost_extra: str = "", window: float = 1) -> str:
    return (f"vhost __defaultVhost__ {{ hls {{ enabled on; hls_path {hls_path}; hls_window {window}; "
            f"hls_fmp4_file [app]/[stream]-[seq].m4s; hls_init_file [app]/[stream]-init.mp4; {extra} }}\n"
            f"  http_remux {{ enabled on; mount [vhost]/[app]/[stream].flv; }}\n{vhost_extra} }}\n")


def api(srv: Server, path: str) -> dict[str, Any]:
    status, _, body = fetch(srv.api_port, path)
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def hls_clients(srv: Server) -> list[dict[str, Any]]:
    return [c for c in api(srv, "/api/v1/clients?count=100")["clients"] if c["type"] == "hls-play"]


def start(srs_server: Any, tmp_path: Path, body: str, server: str = "") -> Server:
    """srs with workers 2, an API and an http_server with `server` in its block."""
    http_port, api_port, exporter_port = free_port(), free_port(), free_port()
    (tmp_path / "www").mkdir(exist_ok=True)
    srv: Server = srs_server(f"http_server {{ enabled on; listen 127.0.0.1:{http_port}; dir {tmp_path / 'www'}; "
                             f"{server} }}\nhttp_api {{ enabled on; listen 127.0.0.1:{api_port}; }}\n"
                             f"exporter {{ enabled on; listen 127.0.0.1:{exporter_port}; }}\n{body}")
    srv.http_port, srv.api_port, srv.exporter_port = http_port, api_port, exporter_port
    return srv


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.close()


# ---- files ------------------------------------------------------------------------------------


def test_hls_files_come_from_hls_path_with_types_cache_and_validators(srs_server: Any, tmp_path: Path) -> None:
    hls_path = tmp_path / "hls"
    files = write_stream(hls_path)
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_ctx off;"))
    (tmp_path / "www/page.html").write_text("<p>hi</p>")  # the http_server dir, a different folder
    expect = {".m3u8": ("application/vnd.apple.mpegurl", "no-cache"),
              ".ts": ("video/mp2t", "public, max-age=120, immutable"),
              ".m4s": ("video/iso.segment", "public, max-age=120, immutable"),
              ".mp4": ("video/mp4", "no-cache")}
    for rel, data in files.items():
        ctype, cache = expect[rel[rel.rfind("."):]]
        for _ in range(4):  # fresh connections: both workers answer
            status, headers, body = fetch(srv.http_port, "/" + rel)
            assert (status, body) == (200, data), rel
            assert headers["content-type"] == ctype and headers["cache-control"] == cache, (rel, headers)
            assert headers["etag"] and headers["last-modified"]
        # a client holding the current copy gets 304 and no body; a changed file is sent again
        status, again, body = fetch(srv.http_port, "/" + rel, headers={"If-None-Match": headers["etag"]})
        assert (status, body) == (304, b"") and again["etag"] == headers["etag"]
        status, _, body = fetch(srv.http_port, "/" + rel, headers={"If-Modified-Since": headers["last-modified"]})
        assert (status, body) == (304, b"")
    (hls_path / "live/s.m3u8").write_text(PLAYLIST + "#EXT-X-ENDLIST\n")
    status, _, body = fetch(srv.http_port, "/live/s.m3u8", headers={"If-None-Match": headers["etag"]})
    assert status == 200 and body.endswith(b"#EXT-X-ENDLIST\n")
    # segments come from each worker's cache: a file written again is served new, a deleted one is 404
    (hls_path / "live/s-1.ts").write_bytes(b"\x47" * 564)
    (hls_path / "live/f-init.mp4").write_bytes(b"\0\0\0\x0cftypnew!")
    (hls_path / "live/s-0.ts").unlink()
    for _ in range(4):
        assert fetch(srv.http_port, "/live/s-1.ts")[::2] == (200, b"\x47" * 564)
        assert fetch(srv.http_port, "/live/f-init.mp4")[::2] == (200, b"\0\0\0\x0cftypnew!")
        assert fetch(srv.http_port, "/live/s-0.ts")[0] == 404
    # the http_server dir is still served; nothing outside either folder is
    assert fetch(srv.http_port, "/page.html")[0] == 200
    (tmp_path / "secret.ts").write_bytes(b"secret")
    for path in ("/../secret.ts", "/live/../../secret.ts", "/%2e%2e/secret.ts", "/live/%2e%2e/%2e%2e/secret.ts"):
        status, _, body = fetch(srv.http_port, path)
        assert status in (403, 404) and b"secret" not in body, path
    (hls_path / "live/out.ts").symlink_to(tmp_path / "secret.ts")
    status, _, body = fetch(srv.http_port, "/live/out.ts")
    assert status in (403, 404) and b"secret" not in body
    assert fetch(srv.http_port, "/live/nothing-7.ts")[0] == 404


def test_hls_files_over_https(srs_server: Any, tmp_path: Path) -> None:
    hls_path = tmp_path / "hls"
    files = write_stream(hls_path)
    cert, key = Authority(tmp_path / "pki").issue("server", 1)
    port = free_port()
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_ctx off;"),
                f"https {{ enabled on; listen 127.0.0.1:{port}; key {key}; cert {cert}; }}")
    assert srv.http_port != port
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    for rel in ("live/s.m3u8", "live/s-1.ts", "live/f-0.m4s", "live/f-init.mp4"):
        for _ in range(3):
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/{rel}", context=tls, timeout=10) as r:
                assert r.status == 200 and r.read() == files[rel]
                assert r.headers["Content-Type"] in ("application/vnd.apple.mpegurl", "video/mp2t",
                                                     "video/iso.segment", "video/mp4")
                assert r.headers["Cache-Control"] and r.headers["ETag"]


# ---- CORS ---------------------------------------------------------------------------------------


CORS_ORIGIN = "http://player.example"


@pytest.mark.parametrize("crossdomain", ["on", "off"])
def test_crossdomain_adds_cors_to_hls_and_flv_and_answers_preflight(srs_server: Any, tmp_path: Path,
                                                                    crossdomain: str) -> None:
    hls_path = tmp_path / "hls"
    write_stream(hls_path)
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_ctx off;"), f"crossdomain {crossdomain};")
    origin = {"Origin": CORS_ORIGIN}
    answers = [fetch(srv.http_port, p, headers=origin) for p in ("/live/s.m3u8", "/live/s-0.ts", "/live/f-0.m4s")]
    # HTTP-FLV: the head of a play (HEAD answers what a GET would, without the stream)
    answers.append(fetch(srv.http_port, "/live/s.flv", method="HEAD", headers=origin))
    preflight = fetch(srv.http_port, "/live/s.m3u8", method="OPTIONS",
                      headers={**origin, "Access-Control-Request-Method": "GET",
                               "Access-Control-Request-Headers": "range"})
    for status, headers, _ in answers:
        assert status == 200
        if crossdomain == "on":
            assert headers["access-control-allow-origin"] == "*"
            assert "range" in headers["access-control-allow-headers"]
            assert "Content-Range" in headers["access-control-expose-headers"]
        else:
            assert not [k for k in headers if k.startswith("access-control-")], headers
    if crossdomain == "on":
        assert preflight[0] == 200 and preflight[1]["access-control-allow-origin"] == "*"
        assert "GET" in preflight[1]["access-control-allow-methods"]
    else:
        assert preflight[0] == 405 and "access-control-allow-origin" not in preflight[1]


# ---- hls_ctx ----------------------------------------------------------------------------------


def ctx_of(variant: bytes) -> tuple[str, str]:
    """(the URI a variant playlist points at, its hls_ctx)."""
    lines = variant.decode().split("\n")
    assert lines[0] == "#EXTM3U" and lines[1].startswith("#EXT-X-STREAM-INF:BANDWIDTH=")
    uri = lines[2]
    return uri, parse_qs(urlsplit(uri).query)["hls_ctx"][0]


def test_hls_ctx_viewer_across_workers_then_timeout_and_one_on_stop(srs_server: Any, tmp_path: Path,
                                                                   hooks: HookServer) -> None:
    hls_path = tmp_path / "hls"
    write_stream(hls_path)
    hooked = f"http_hooks {{ enabled on; on_play {hooks.url('play')}; on_stop {hooks.url('stop')}; }}"
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, vhost_extra=hooked, window=3))
    status, headers, body = fetch(srv.http_port, "/live/s.m3u8?token=abc&x=1")
    assert status == 200 and headers["content-type"] == "application/vnd.apple.mpegurl"
    assert headers["cache-control"] == "private, no-store"
    uri, ctx = ctx_of(body)
    # SRS's variant: the same path, the ctx, then the viewer's own query
    assert uri == f"/live/s.m3u8?hls_ctx={ctx}&token=abc&x=1"
    assert [b["param"] for b in hooks.bodies("on_play")] == ["?token=abc&x=1"]
    client_id = hooks.bodies("on_play")[0]["client_id"]
    # the viewer's playlist (whichever worker answers): every URI carries the ctx
    sent = len(body)
    for _ in range(6):
        status, headers, text = fetch(srv.http_port, uri)
        assert status == 200 and headers["cache-control"] == "private, no-store"
        segs = [ln for ln in text.decode().split("\n") if ln and not ln.startswith("#")]
        assert segs == [f"s-0.ts?hls_ctx={ctx}", f"s-1.ts?hls_ctx={ctx}"]
        sent += len(text)
        for seg in segs:
            status, _, data = fetch(srv.http_port, f"/live/{seg}")
            assert status == 200
            sent += len(data)
    # one viewer, one client, whichever workers it reached; its bytes are all counted
    listed = hls_clients(srv)
    assert [c["id"] for c in listed] == [client_id]
    c = listed[0]
    assert c["name"] == "s" and c["url"] == "/live/s.m3u8" and c["ip"] == "127.0.0.1" and not c["publish"]
    assert c["tcUrl"] == "http://127.0.0.1/live" and ctx.split(".")[0] == client_id
    # bytes of the last segments may be reported with the viewer's next playlist request
    fetch(srv.http_port, uri)
    wait_for(lambda: hls_clients(srv)[0]["send_bytes"] >= sent, 20, what="the viewer's bytes")
    assert len(hooks.bodies("on_play")) == 1 and not hooks.bodies("on_stop")
    # no more requests: gone after twice hls_window (3 s), on_stop once
    wait_for(lambda: not hls_clients(srv), 15, interval=0.3, what="the viewer leaving")
    wait_for(lambda: hooks.bodies("on_stop"), 20, what="on_stop")
    time.sleep(1.5)
    stops = hooks.bodies("on_stop")
    assert len(stops) == 1 and stops[0]["client_id"] == client_id and stops[0]["stream"] == "s"
    # its ctx now names nobody: a new viewer, as SRS
    status, _, body = fetch(srv.http_port, uri)
    assert status == 200 and ctx_of(body)[1] != ctx and len(hooks.bodies("on_play")) == 2


def test_hls_viewers_are_made_by_every_worker_and_a_forged_ctx_is_a_new_viewer(srs_server: Any,
                                                                              tmp_path: Path) -> None:
    hls_path = tmp_path / "hls"
    write_stream(hls_path)
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, window=30))
    owners: set[str] = set()
    ctxs = []
    for _ in range(30):
        uri, ctx = ctx_of(fetch(srv.http_port, "/live/s.m3u8")[2])
        ctxs.append(ctx)
        owners.add(ctx.split("-")[0])
        if len(owners) == 2 and len(ctxs) >= 4:
            break
    assert owners == {"1", "2"}
    # each viewer's playlist is served by whichever worker gets the request
    for ctx in ctxs:
        for _ in range(3):
            status, _, text = fetch(srv.http_port, f"/live/s.m3u8?hls_ctx={ctx}")
            assert status == 200 and f"s-0.ts?hls_ctx={ctx}".encode() in text
    ids = sorted(ctx.split(".")[0] for ctx in ctxs)  # a ctx is its client's id and worker run, signed
    wait_for(lambda: sorted(c["id"] for c in hls_clients(srv)) == ids, 20, what="the viewers")
    # a ctx this server did not sign, or signed for another stream, is a new viewer
    for forged in (ctxs[0][:-1] + ("0" if ctxs[0][-1] != "0" else "1"), "1-1-0123456789abcdef", "x"):
        _, new = ctx_of(fetch(srv.http_port, f"/live/s.m3u8?hls_ctx={forged}")[2])
        assert new not in ctxs and new != forged
    (hls_path / "live/t.m3u8").write_text(PLAYLIST)
    _, new = ctx_of(fetch(srv.http_port, f"/live/t.m3u8?hls_ctx={ctxs[0]}")[2])
    assert new != ctxs[0]
    # a kicked viewer: 404 (SRS: "HLS stream is EOF") on every worker, and gone from the API
    victim = next(c for c in hls_clients(srv) if c["id"] == ctxs[0].split(".")[0])
    assert fetch(srv.api_port, f"/api/v1/clients/{victim['id']}", method="DELETE")[0] == 200
    wait_for(lambda: victim["id"] not in [c["id"] for c in hls_clients(srv)], 20, what="the kick")
    for _ in range(4):
        assert fetch(srv.http_port, f"/live/s.m3u8?hls_ctx={ctxs[0]}")[0] == 404


def test_hls_ctx_off_serves_the_playlist_as_a_file(srs_server: Any, tmp_path: Path) -> None:
    hls_path = tmp_path / "hls"
    files = write_stream(hls_path)
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_ctx off;"))
    status, headers, body = fetch(srv.http_port, "/live/s.m3u8")
    assert (status, body) == (200, files["live/s.m3u8"]) and headers["cache-control"] == "no-cache"
    assert not hls_clients(srv)


def test_hls_ts_ctx_off_leaves_segment_uris_alone_and_fmp4_map_gets_the_ctx(srs_server: Any, tmp_path: Path) -> None:
    hls_path, plain_path = tmp_path / "hls", tmp_path / "plain"
    write_stream(hls_path)
    files = write_stream(plain_path)
    plain = hls_vhost(plain_path, "hls_ts_ctx off;").replace("__defaultVhost__", "plain.example")
    srv = start(srs_server, tmp_path, hls_vhost(hls_path) + plain)
    uri, ctx = ctx_of(fetch(srv.http_port, "/live/f.m3u8")[2])
    text = fetch(srv.http_port, uri)[2].decode()
    assert f'#EXT-X-MAP:URI="f-init.mp4?hls_ctx={ctx}"' in text and f"\nf-0.m4s?hls_ctx={ctx}\n" in text
    # the vhost is the Host's: plain.example keeps its segment URIs as written
    uri, ctx = ctx_of(fetch(srv.http_port, "/live/s.m3u8", host="plain.example:80")[2])
    assert fetch(srv.http_port, uri, host="plain.example")[2] == files["live/s.m3u8"]
    assert len({c["vhost"] for c in hls_clients(srv)}) == 2  # one viewer in each vhost


def test_hls_play_refused_by_security_signed_url_and_on_play_is_403(srs_server: Any, tmp_path: Path,
                                                                     hooks: HookServer) -> None:
    hls_path = tmp_path / "hls"
    write_stream(hls_path)
    write_stream(hls_path, stream="v_code1")
    rules = (f"security {{ enabled on; deny play 127.0.0.7; allow play all; allow publish all; }}\n"
             f"http_hooks {{ enabled on; on_play {hooks.url('play')}; }}")
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, vhost_extra=rules))
    # security: a client from 127.0.0.7 (the test binds its address)
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10, source_address=("127.0.0.7", 0)) as s:
        s.sendall(b"GET /live/s.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 403 ") and b"hls_ctx" not in data
    assert not hooks.bodies("on_play")  # refused before the hook is asked
    # on_play refuses (the hook server answers {"code":1} for stream v_code1)
    status, _, body = fetch(srv.http_port, "/live/v_code1.m3u8")
    assert status == 403 and b"hls_ctx" not in body
    assert fetch(srv.http_port, "/live/s.m3u8")[0] == 200
    assert [c["name"] for c in hls_clients(srv)] == ["s"]
    srv.wait_log("hls play /live/v_code1.m3u8")  # its log line may follow the 403


# ---- figures ----------------------------------------------------------------------------------


def test_hls_requests_and_bytes_per_stream_are_summed_over_workers(srs_server: Any, tmp_path: Path,
                                                                   clients: Clients) -> None:
    hls_path = tmp_path / "hls"
    write_stream(hls_path, stream="other")
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_ctx off; hls_fragment 1;", window=10))
    clients.publish(f"{srv.url}/live/s")
    wait_for(lambda: fetch(srv.http_port, "/live/s.m3u8")[0] == 200, 20, interval=0.3, what="the writer's playlist")
    base = api(srv, "/api/v1/streams")["streams"][0]["hls"]
    requests, sent = base["requests"], base["send_bytes"]
    for _ in range(4):  # fresh connections: both workers serve
        status, _, text = fetch(srv.http_port, "/live/s.m3u8")
        assert status == 200
        requests, sent = requests + 1, sent + len(text)
        for uri in [ln for ln in text.decode().split("\n") if ln and not ln.startswith("#")]:
            status, _, body = fetch(srv.http_port, f"/live/{uri}")
            assert status == 200 and body[:1] == b"\x47"
            requests, sent = requests + 1, sent + len(body)
    fetch(srv.http_port, "/live/s.m3u8", method="HEAD")  # a request, no body
    fetch(srv.http_port, "/live/other-0.ts")  # another stream's file
    requests += 1
    for _ in range(3):  # whichever worker answers, the same sums
        (stream,) = api(srv, "/api/v1/streams")["streams"]
        assert (stream["hls"]["requests"], stream["hls"]["send_bytes"]) == (requests, sent)
        assert stream["hls"]["segments"] >= 1  # the writer's figures are there too
    status, _, body = fetch(srv.exporter_port, "/metrics")
    samples = {(s.name, s.labels.get("stream")): s.value for fam in text_string_to_metric_families(body.decode())
               for s in fam.samples}
    assert samples[("srs_stream_hls_requests_total", "s")] == requests
    assert samples[("srs_stream_hls_send_bytes_total", "s")] == sent


# ---- with the writer ----------------------------------------------------------------------------


def test_live_stream_every_uri_from_every_worker_viewers_listed_then_gone_with_on_stop(
        srs_server: Any, tmp_path: Path, clients: Clients, hooks: HookServer) -> None:
    hls_path = tmp_path / "hls"
    rules = (f"security {{ enabled on; deny play 127.0.0.7; allow play all; allow publish all; }}\n"
             f"http_hooks {{ enabled on; on_play {hooks.url('play')}; on_stop {hooks.url('stop')}; }}")
    srv = start(srs_server, tmp_path, hls_vhost(hls_path, "hls_fragment 1;", vhost_extra=rules, window=3))
    clients.publish(f"{srv.url}/live/s")
    wait_for(lambda: (hls_path / "live/s.m3u8").exists() and (hls_path / "live/s.m3u8").read_text().count(".ts") >= 2,
             30, interval=0.3, what="the writer's playlist")
    before = {w["slot"]: w["hls_requests"] for w in api(srv, "/api/v1/summaries")["data"]["workers"]}
    # viewers admitted by both workers (SO_REUSEPORT picks the worker of each new connection)
    ctxs: list[str] = []
    while len({c.split("-")[0] for c in ctxs}) < 2:
        assert len(ctxs) < 40, "one worker answered every request"
        ctxs.append(ctx_of(fetch(srv.http_port, "/live/s.m3u8")[2])[1])
    # a real player goes through the variant and decodes the stream
    player = clients.spawn(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i",
                            f"http://127.0.0.1:{srv.http_port}/live/s.m3u8", "-t", "3", "-f", "null", "-"],
                           stderr=subprocess.PIPE)
    # every URI of each viewer's live playlist answers 200 on fresh connections (either worker)
    for ctx in ctxs:
        status, _, text = fetch(srv.http_port, f"/live/s.m3u8?hls_ctx={ctx}")
        assert status == 200 and b"#EXT-X-TARGETDURATION" in text
        uris = [ln for ln in text.decode().split("\n") if ln and not ln.startswith("#")]
        assert uris and all(u.endswith(f"?hls_ctx={ctx}") for u in uris)
        for uri in uris:
            for _ in range(3):
                status, headers, body = fetch(srv.http_port, f"/live/{uri}")
                assert status == 200 and body[:1] == b"\x47" and headers["content-type"] == "video/mp2t", uri
    after = {w["slot"]: w["hls_requests"] for w in api(srv, "/api/v1/summaries")["data"]["workers"]}
    assert all(after[slot] > before[slot] for slot in before), (before, after)
    _, err = player.communicate(timeout=60)
    assert player.returncode == 0 and not err.strip(), err
    # one hls-play client per viewer, whichever workers it reached; each counts as a player
    ids = sorted(c.split(".")[0] for c in ctxs)
    listed = hls_clients(srv)
    assert set(ids) <= {c["id"] for c in listed} and len(listed) == len({c["id"] for c in listed})
    (stream,) = api(srv, "/api/v1/streams")["streams"]
    assert stream["players"] >= len(ctxs)
    # refused by security before anything else: 403, no viewer, no hook
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10, source_address=("127.0.0.7", 0)) as s:
        s.sendall(b"GET /live/s.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 403 ")
    assert not [b for b in hooks.bodies("on_play") if b["ip"] == "127.0.0.7"]
    # nobody asks any more: every viewer leaves within twice hls_window, with one on_stop each
    wait_for(lambda: not hls_clients(srv), 20, interval=0.5, what="the viewers leaving")
    plays = sorted(b["client_id"] for b in hooks.bodies("on_play"))
    wait_for(lambda: len(hooks.bodies("on_stop")) >= len(plays), 20, what="on_stop")
    time.sleep(1.5)
    assert sorted(b["client_id"] for b in hooks.bodies("on_stop")) == plays
    assert set(ids) <= set(plays)


def test_hls_signed_url_and_a_ban_after_refused_tokens(srs_server: Any, tmp_path: Path) -> None:
    hls_path = tmp_path / "hls"
    write_stream(hls_path)
    signed = "signed_url { enabled on; publish off; play on; key k1 s3cret; }"
    srv = start(srs_server, tmp_path, "per_ip { ban_after 2; ban_window 60; ban_time 60; }\n"
                + hls_vhost(hls_path, vhost_extra=signed))
    token = make_token("k1", "s3cret", "play", "__defaultVhost__", "live", "s", int(time.time()) + 600)
    # a valid token: a viewer, whose variant carries the token on to its playlist requests
    status, _, body = fetch(srv.http_port, f"/live/s.m3u8?token={token}")
    uri, ctx = ctx_of(body)
    assert status == 200 and uri == f"/live/s.m3u8?hls_ctx={ctx}&token={token}"
    assert fetch(srv.http_port, uri)[0] == 200
    # no token, a forged one: 403, and each counts toward the ban (3 refusals: one worker saw 2)
    status, _, body = fetch(srv.http_port, "/live/s.m3u8")
    assert status == 403 and b"signed_url: play needs a token" in body
    for _ in range(2):
        status, _, body = fetch(srv.http_port, f"/live/s.m3u8?token={token[:-2]}xx")
        assert status == 403 and (b"signed_url" in body or b"banned" in body)
    # banned now, on every worker (the master tells them all): even a good token is refused
    wait_for(lambda: all(fetch(srv.http_port, f"/live/s.m3u8?token={token}")[0] == 403 for _ in range(4)), 20,
             what="the ban on every worker")
    assert b"banned" in fetch(srv.http_port, f"/live/s.m3u8?token={token}")[2]
