"""LL-HLS serving on the real server (workers 2), ffmpeg publishing a 1 s GOP, `hls_ll on;
hls_part 0.2;`: blocking playlist reloads from many concurrent clients on every worker, the
RFC 8216bis answers to requests ahead of and behind the playlist, the preload-hinted part
streamed (chunked) while it is written, delta playlists read by the `m3u8` package, caching
headers, and hls.js in low-latency mode in headless Chromium, under 2 s behind live.

Every request is a fresh connection, so SO_REUSEPORT gives it to either worker; only one of them
owns the publisher and writes, the other learns of each part through the master.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import m3u8
import pytest
from browser import Browser
from conftest import Clients, Server, wait_for
from test_browser_players import snapshot, wait_playing, watch
from test_http_hls import api, start

from srv.app.hls_reload import LiveState, state_of

LL = "hls_ll on; hls_part 0.2; hls_fragment 1; hls_use_fmp4 on; hls_ctx off; hls_dispose 30;"
PLAYLIST = "/live/s.m3u8"


def get(port: int, path: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers lower-cased, body de-chunked)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def ll_server(srs_server: Any, tmp_path: Path, window: float = 6, ctx: bool = False) -> tuple[Server, Path]:
    hls_path = tmp_path / "hls"
    hls_path.mkdir()
    conf = LL.replace("hls_ctx off;", "hls_ctx on;") if ctx else LL
    body = (f"vhost __defaultVhost__ {{ hls {{ enabled on; hls_path {hls_path}; hls_window {window}; "
            f"hls_fmp4_file [app]/[stream]-[seq].m4s; hls_init_file [app]/[stream]-init.mp4; {conf} }} }}\n")
    return start(srs_server, tmp_path, body), hls_path


def live_state(srv: Server, segments: int = 2) -> tuple[LiveState, bytes]:
    """The playlist once it is live: `segments` complete ones and a preload hint."""
    def ready() -> tuple[LiveState, bytes] | None:
        status, _, body = get(srv.http_port, PLAYLIST)
        state = state_of(body) if status == 200 else None
        return (state, body) if state is not None and state.segments >= segments and state.hint else None

    return wait_for(ready, 40, interval=0.2, what="a live LL-HLS playlist")  # type: ignore[no-any-return]


def listed(body: bytes, msn: int, part: int) -> bool:
    """Whether the playlist `body` lists part `part` of segment `msn` (or segment msn whole,
    or any later one: RFC 8216bis's "or later")."""
    state = state_of(body)
    return msn < state.next_msn or (msn == state.next_msn and part < state.parts)


def parts_listed(body: bytes) -> dict[tuple[int, int], str]:
    """{(msn, part index): uri} of every EXT-X-PART of a playlist."""
    p = m3u8.loads(body.decode())
    msn = p.media_sequence + (p.skip.skipped_segments if p.skip else 0)
    out = {}
    for seg in p.segments:
        for i, part in enumerate(seg.parts):
            out[(msn, i)] = part.uri
        if seg.uri:
            msn += 1
    return out


# ---- serving on its own: files written by the test (no publisher, no notification: the
# fallback poll is what wakes the held requests here) ---------------------------------------


def fake_playlist(parts: int, ended: bool = False) -> str:
    """Segment 40 (complete, parts 0-4), then `parts` parts of segment 41 and the hint."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:1",
             "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=6.000",
             "#EXT-X-PART-INF:PART-TARGET=0.200", "#EXT-X-MEDIA-SEQUENCE:40", '#EXT-X-MAP:URI="f-init.mp4"']
    lines += [f'#EXT-X-PART:DURATION=0.200,URI="f-40.{k}.m4s"' for k in range(5)] + ["#EXTINF:1.000,", "f-40.m4s"]
    lines += [f'#EXT-X-PART:DURATION=0.200,URI="f-41.{k}.m4s"' for k in range(parts)]
    lines.append("#EXT-X-ENDLIST" if ended else f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="f-41.{parts}.m4s"')
    return "\n".join(lines) + "\n"


def put(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


@pytest.fixture
def fake_ll(srs_server: Any, tmp_path: Path) -> tuple[Server, Path]:
    srv, hls_path = ll_server(srs_server, tmp_path)
    live = hls_path / "live"
    live.mkdir()
    for k in range(5):
        put(live / f"f-40.{k}.m4s", f"part 40.{k}")
    put(live / "f-40.m4s", "segment 40")
    put(live / "f.m3u8", fake_playlist(0))
    return srv, live


def test_a_held_request_waits_for_its_part_and_gets_503_when_it_never_comes(fake_ll: tuple[Server, Path]) -> None:
    srv, live = fake_ll
    results: list[tuple[int, dict[str, str], bytes]] = []
    q = "/live/f.m3u8?_HLS_msn=41&_HLS_part=1"
    held = threading.Thread(target=lambda: results.append(get(srv.http_port, q)))
    held.start()
    time.sleep(0.5)
    assert not results, "answered before its part was listed"
    put(live / "f-41.0.m4s", "part 41.0")
    put(live / "f.m3u8", fake_playlist(1))
    time.sleep(0.3)
    assert not results, "part 1 is not listed yet"
    put(live / "f-41.1.m4s", "part 41.1")
    put(live / "f.m3u8", fake_playlist(2))
    held.join(10)
    status, headers, body = results[0]
    assert status == 200 and b'URI="f-41.1.m4s"' in body and b'PRELOAD-HINT:TYPE=PART,URI="f-41.2.m4s"' in body
    assert headers["cache-control"] == "public, max-age=3"
    # a part that never comes: 503 after three target durations
    status, _, body = get(srv.http_port, "/live/f.m3u8?_HLS_msn=42")
    assert status == 503, body
    # an ended playlist answers at once whatever is asked
    put(live / "f.m3u8", fake_playlist(2, ended=True))
    status, _, body = get(srv.http_port, "/live/f.m3u8?_HLS_msn=42&_HLS_part=3")
    assert status == 200 and body.endswith(b"#EXT-X-ENDLIST\n")


def test_the_hinted_part_streams_as_its_chunks_land(fake_ll: tuple[Server, Path]) -> None:
    srv, live = fake_ll
    partial = live / "f-41.0.m4s.partial"
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as sock:
        sock.sendall(b"GET /live/f-41.0.m4s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.3)  # the hinted part has not started: the request waits for it
        with open(partial, "wb") as f:
            f.write(b"chunk one;")
            f.flush()
            got = b""
            while b"chunk one;" not in got:
                got += sock.recv(65536)  # the first chunk arrives before the part is complete
            head = got.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 200") and b"transfer-encoding: chunked" in head, got
            assert b"content-type: video/iso.segment" in head and b"immutable" in head
            f.write(b"chunk two;")
            f.flush()
            while b"chunk two;" not in got:
                got += sock.recv(65536)
            f.write(b"chunk three")
        partial.rename(live / "f-41.0.m4s")  # complete
        while not got.endswith(b"\r\n0\r\n\r\n"):
            data = sock.recv(65536)
            assert data, got
            got += data
    body = got.split(b"\r\n\r\n", 1)[1]
    dechunked, rest = b"", body
    while True:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        dechunked, rest = dechunked + rest[:n], rest[n + 2:]
    assert dechunked == b"chunk one;chunk two;chunk three"
    # the complete part is a plain file now; one that is not hinted is a 404
    status, headers, data = get(srv.http_port, "/live/f-41.0.m4s")
    assert (status, data) == (200, b"chunk one;chunk two;chunk three") and "content-length" in headers
    status, _, _ = get(srv.http_port, "/live/f-41.5.m4s")
    assert status == 404


def test_a_viewers_blocking_request_is_held_and_its_part_uris_carry_its_ctx(srs_server: Any, tmp_path: Path) -> None:
    srv, hls_path = ll_server(srs_server, tmp_path, ctx=True)
    live = hls_path / "live"
    live.mkdir()
    put(live / "f.m3u8", fake_playlist(0))
    status, _, variant = get(srv.http_port, "/live/f.m3u8")  # a new viewer: SRS's variant
    media = next(line for line in variant.decode().splitlines() if line.startswith("/live/f.m3u8?hls_ctx="))
    ctx = media.split("hls_ctx=", 1)[1]
    results: list[tuple[int, dict[str, str], bytes]] = []
    held = threading.Thread(target=lambda: results.append(get(srv.http_port, f"{media}&_HLS_msn=41&_HLS_part=0")))
    held.start()
    time.sleep(0.3)
    assert not results
    put(live / "f-41.0.m4s", "part 41.0")
    put(live / "f.m3u8", fake_playlist(1))
    held.join(10)
    status, headers, body = results[0]
    assert status == 200 and headers["cache-control"] == "private, no-store"
    assert f'URI="f-41.0.m4s?hls_ctx={ctx}"'.encode() in body
    assert f'PRELOAD-HINT:TYPE=PART,URI="f-41.1.m4s?hls_ctx={ctx}"'.encode() in body


# ---- the real writer ------------------------------------------------------------------------


@pytest.fixture
def ll_live(srs_server: Any, tmp_path: Path, clients: Clients) -> tuple[Server, Path]:
    srv, hls_path = ll_server(srs_server, tmp_path, window=12)
    clients.publish(f"{srv.url}/live/s")
    live_state(srv)
    return srv, hls_path


def test_blocking_reload_from_50_clients_on_every_worker_carries_the_requested_part(
        ll_live: tuple[Server, Path]) -> None:
    srv, _ = ll_live
    failures: list[str] = []
    answered = []
    lock = threading.Lock()

    def client(i: int) -> None:
        status, _, body = get(srv.http_port, PLAYLIST)
        state = state_of(body)
        msn, part = state.next_msn, state.parts  # the hinted part: not there yet
        for _ in range(8):
            q = f"{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}"
            status, headers, body = get(srv.http_port, q)
            with lock:
                if status != 200 or not listed(body, msn, part):
                    failures.append(f"client {i} {q}: {status} {body[-300:]!r}")
                    return
                answered.append((msn, part))
            state = state_of(body)
            msn, part = (msn, part + 1) if msn == state.next_msn else (msn + 1, 0)

    with ThreadPoolExecutor(50) as pool:
        list(pool.map(client, range(50)))
    assert not failures, failures[:5]
    assert len(answered) == 50 * 8
    workers = api(srv, "/api/v1/summaries")["data"]["workers"]
    assert len(workers) == 2
    for w in workers:  # both workers held requests, and both were woken by the writer's notification
        assert w["hls_ll"].get("held", 0) > 0 and w["hls_ll"].get("notified", 0) > 0, workers
        assert w["hls_ll"].get("timeouts", 0) == 0, workers
        # the fallback poll is for lost notices, not the way changes are learnt
        assert w["hls_ll"].get("polled", 0) < w["hls_ll"]["notified"], workers


def test_requests_ahead_get_400_at_once_and_behind_get_the_playlist(ll_live: tuple[Server, Path]) -> None:
    srv, _ = ll_live
    state, _ = live_state(srv)
    # 400, not held (a held request that never gets its part ends in 503)
    status, headers, body = get(srv.http_port, f"{PLAYLIST}?_HLS_msn={state.next_msn + 5}")
    assert status == 400 and b"too far ahead" in body, body
    assert headers["cache-control"] == "no-store"
    status, _, body = get(srv.http_port, f"{PLAYLIST}?_HLS_msn={state.next_msn + 5}&_HLS_part=0")
    assert status == 400, body
    status, _, body = get(srv.http_port, f"{PLAYLIST}?_HLS_msn={state.next_msn}&_HLS_part={state.parts + 40}")
    assert status == 400, body  # past the Advance Part Limit
    status, _, body = get(srv.http_port, f"{PLAYLIST}?_HLS_part=1")
    assert status == 400 and b"_HLS_msn" in body
    status, _, body = get(srv.http_port, f"{PLAYLIST}?_HLS_msn=abc")
    assert status == 400
    # behind: the playlist as it is, at once
    status, headers, body = get(srv.http_port, f"{PLAYLIST}?_HLS_msn={state.media_sequence}&_HLS_part=0")
    assert status == 200 and state_of(body).next_msn >= state.next_msn
    assert headers["cache-control"].startswith("public, max-age=")


def test_a_held_request_is_answered_with_its_part_once_it_is_written(ll_live: tuple[Server, Path]) -> None:
    srv, hls_path = ll_live
    state, _ = live_state(srv)
    msn, part = state.next_msn, state.parts + 1  # the part after the hinted one
    status, headers, body = get(srv.http_port, f"{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}")
    assert status == 200 and listed(body, msn, part), body[-400:]
    assert headers["cache-control"] == "public, max-age=3"  # three target durations, for CDNs
    # plain playlists stay no-cache; parts are named once and cached for long
    status, headers, _ = get(srv.http_port, PLAYLIST)
    assert headers["cache-control"] == "no-cache"
    uri = parts_listed(body)[(msn, part)] if (msn, part) in parts_listed(body) else \
        next(iter(parts_listed(body).values()))
    status, headers, data = get(srv.http_port, f"/live/{uri}")
    assert status == 200 and data == (hls_path / "live" / uri).read_bytes()
    assert headers["cache-control"].endswith("immutable")


def test_the_hinted_part_is_served_chunked_while_written_and_decodes(
        ll_live: tuple[Server, Path], tmp_path: Path) -> None:
    srv, hls_path = ll_live
    chunked = None
    for _ in range(40):
        state, _ = live_state(srv)
        status, headers, data = get(srv.http_port, f"/live/{state.hint}")
        assert status == 200, data
        if headers.get("transfer-encoding") == "chunked":
            chunked = (state.hint, headers, data)
            break
    assert chunked is not None, "the hinted part was never caught while written"
    uri, headers, data = chunked
    assert headers["content-type"] == "video/iso.segment"
    assert data == (hls_path / "live" / uri).read_bytes()  # what was streamed is the whole part
    # a part that does not start on a keyframe decodes after the parts before it in its segment:
    # decoded with them, it adds video frames
    stem, index, ext = uri.rsplit(".", 2)
    earlier = b"".join((hls_path / "live" / f"{stem}.{k}.{ext}").read_bytes() for k in range(int(index)))
    init = (hls_path / "live/s-init.mp4").read_bytes()
    sample = tmp_path / "part.mp4"

    def video_frames(body: bytes) -> int:
        sample.write_bytes(init + body)
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v",
                                "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(sample)],
                               capture_output=True, text=True, timeout=30)
        text = probe.stdout.strip().split(",")[0]
        return int(text) if text.isdigit() else 0

    sample.write_bytes(init + earlier + data)
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(sample), "-f", "null", "-"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    assert video_frames(earlier + data) > video_frames(earlier), uri
    # a part past the hint is no preload hint: 404
    state, _ = live_state(srv)
    assert state.hint.endswith(".m4s")
    stem, index, ext = state.hint.rsplit(".", 2)
    status, _, _ = get(srv.http_port, f"/live/{stem}.{int(index) + 3}.{ext}")
    assert status == 404


def test_skip_playlists_are_well_formed(ll_live: tuple[Server, Path]) -> None:
    srv, _ = ll_live
    state, _ = live_state(srv, segments=9)  # more than CAN-SKIP-UNTIL (6 target durations) listed

    def pair() -> tuple[m3u8.M3U8, m3u8.M3U8] | None:
        s, _ = live_state(srv, segments=9)
        q = f"{PLAYLIST}?_HLS_msn={s.next_msn}&_HLS_part={s.parts}"
        _, _, full = get(srv.http_port, q)
        status, headers, delta = get(srv.http_port, q + "&_HLS_skip=YES")
        assert status == 200 and headers["cache-control"].startswith("public")
        a, b = m3u8.loads(full.decode()), m3u8.loads(delta.decode())
        return (a, b) if a.media_sequence == b.media_sequence and state_of(full).next_msn == \
            state_of(delta).next_msn else None

    full, delta = wait_for(pair, 20, interval=0, what="a full and a delta playlist of the same moment")
    assert delta.skip is not None and delta.skip.skipped_segments > 0
    assert delta.skip.skipped_segments + len(delta.segments) == len(full.segments)
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments][delta.skip.skipped_segments:]
    assert delta.server_control.can_skip_until and delta.preload_hint is not None
    kept = sum(s.duration for s in delta.segments if s.uri)
    assert kept >= delta.server_control.can_skip_until - 1.0  # at least CAN-SKIP-UNTIL stays listed


def caught_up(browser: Browser, timeout: float = 15) -> None:
    """Wait until the player is under 2 s behind live, by its own figure and by the wall clock.
    hls.js starts where the playlist it loaded put the live edge: on a loaded machine the first
    picture can come late, and the player then catches up (at up to 1.5x); from there it must stay
    under 2 s."""
    def close() -> bool:
        s = snapshot(browser)
        return bool(s["programDate"]) and (s["now"] - s["programDate"]) / 1000 < 2.0 \
            and s["hlsLatency"] is not None and s["hlsLatency"] < 2.0
    wait_for(close, timeout, interval=0.5, what="the player within 2 s of live")


def test_hls_js_low_latency_plays_under_2s_behind_live_and_survives_a_republish(
        srs_server: Any, tmp_path: Path, clients: Clients, browser: Browser) -> None:
    srv, _ = ll_server(srs_server, tmp_path)
    url = f"{srv.url}/live/s"
    publisher = clients.publish(url)
    live_state(srv)
    page = f"http://127.0.0.1:{srv.http_port}/players/?ll=1&url={quote(f'http://127.0.0.1:{srv.http_port}{PLAYLIST}')}"
    browser.open(page)
    wait_playing(browser, timeout=40)
    caught_up(browser)
    samples = watch(browser, 30)
    behind = [(s["now"] - s["programDate"]) / 1000 for s in samples if s["programDate"]]
    summary = [(round(s["currentTime"], 2), s["hlsLatency"], round(b, 2))
               for s, b in zip(samples, behind, strict=False)]
    assert samples[0]["lowLatency"] and len(behind) == len(samples), summary
    for a, b in zip(samples, samples[1:], strict=False):
        assert b["currentTime"] > a["currentTime"], f"the picture stood still: {summary}"
    assert max(behind) < 2.0, f"more than 2 s behind live (wall clock against PROGRAM-DATE-TIME): {summary}"
    assert all(s["hlsLatency"] is not None and s["hlsLatency"] < 2.0 for s in samples), summary
    assert not [e for e in samples[-1]["errors"] if e["fatal"]], samples[-1]["errors"]
    assert not browser.console_errors(), browser.console_errors()

    publisher.terminate()
    publisher.wait(10)
    time.sleep(2)
    clients.publish(url)
    back = time.time() * 1000
    wait_for(lambda: (snapshot(browser)["programDate"] or 0) > back, timeout=60, interval=0.5,
             what="a picture of the new publisher")
    wait_playing(browser, timeout=40)
    caught_up(browser)
    samples = watch(browser, 10)
    behind = [(s["now"] - s["programDate"]) / 1000 for s in samples if s["programDate"]]
    for a, b in zip(samples, samples[1:], strict=False):
        assert b["currentTime"] > a["currentTime"], "after the republish the picture stood still"
    assert behind and max(behind) < 2.0, f"after the republish: {behind}"
    assert not [e for e in samples[-1]["errors"] if e["fatal"]], samples[-1]["errors"]


def test_hls_js_low_latency_plays_through_hls_ctx_viewers(srs_server: Any, tmp_path: Path, clients: Clients,
                                                           browser: Browser) -> None:
    """SRS's default `hls_ctx on`: hls.js goes through the variant playlist to its viewer's media
    playlist, whose blocking requests are held like any other (and whose parts carry the ctx)."""
    srv, hls_path = ll_server(srs_server, tmp_path, ctx=True)
    clients.publish(f"{srv.url}/live/s")

    def live() -> bool:
        """Two segments and a hint on disk (a plain request would make a viewer): as the test
        above, the viewer comes to a live stream, not to its first second (docs/hls.md, hls.js
        at the start of a stream)."""
        playlist = hls_path / "live/s.m3u8"
        body = playlist.read_bytes() if playlist.exists() else b""
        return bool(body) and bool(state_of(body).hint) and body.count(b"#EXTINF") >= 2

    wait_for(live, 40, interval=0.2, what="a live LL-HLS playlist")
    browser.open(f"http://127.0.0.1:{srv.http_port}/players/?ll=1&url="
                 f"{quote(f'http://127.0.0.1:{srv.http_port}{PLAYLIST}')}")
    wait_playing(browser, timeout=40)
    caught_up(browser)
    samples = watch(browser, 15)
    behind = [(s["now"] - s["programDate"]) / 1000 for s in samples if s["programDate"]]
    for a, b in zip(samples, samples[1:], strict=False):
        assert b["currentTime"] > a["currentTime"], "the picture stood still"
    assert len(behind) == len(samples) and max(behind) < 2.0, behind
    assert not [e for e in samples[-1]["errors"] if e["fatal"]], samples[-1]["errors"]
    viewers = [c for c in api(srv, "/api/v1/clients?count=100")["clients"] if c["type"] == "hls-play"]
    assert len(viewers) == 1, viewers  # one viewer, however many workers its requests reached
