"""The player page at /players/ in a real browser (Debian's headless Chromium, tests/browser.py):
HTTP-FLV with the vendored mpegts.js, HLS with the vendored hls.js, published by ffmpeg.

What a viewer would see is asserted: the picture moves (`currentTime` advances every second
for 20 s), frames are decoded (`getVideoPlaybackQuality().totalVideoFrames` grows), the player
reports no fatal error and the page no console error, and playback comes back by itself after the publisher
reconnects. Screenshots and the browser's console are kept in objs/test-artifacts/<test>/.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote, urljoin

import pytest
from browser import Browser
from conftest import Clients, Server, wait_for

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "srv" / "http" / "www" / "vendor"
FLV_VHOST = "vhost __defaultVhost__ { http_remux { enabled on; mount [vhost]/[app]/[stream].flv; } }\n"


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except HTTPError as e:
        return e.code, dict(e.headers), e.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


def open_player(browser: Browser, server: Server, stream_url: str) -> None:
    browser.open(f"http://127.0.0.1:{server.http_port}/players/?url={quote(stream_url, safe='')}")


def snapshot(browser: Browser) -> dict[str, Any]:
    return browser.js("return window.srvPlayer.snapshot();")  # type: ignore[no-any-return]


def wait_playing(browser: Browser, timeout: float = 30) -> dict[str, Any]:
    """The first snapshot after which the picture moved and frames were decoded within a second."""
    def moving() -> dict[str, Any] | None:
        a = snapshot(browser)
        time.sleep(1)
        b = snapshot(browser)
        ok = b["frames"] > a["frames"] and b["currentTime"] > a["currentTime"] and not b["ended"]
        return b if ok else None

    try:
        return wait_for(moving, timeout, interval=0, what="the player to play")  # type: ignore[no-any-return]
    except AssertionError:
        browser.screenshot("not-playing")
        raise AssertionError(f"not playing after {timeout}s: {snapshot(browser)}") from None


def watch(browser: Browser, seconds: int) -> list[dict[str, Any]]:
    """One snapshot a second for `seconds` seconds (plus the one at the start)."""
    samples = [snapshot(browser)]
    for _ in range(seconds):
        time.sleep(1)
        samples.append(snapshot(browser))
    return samples


def assert_plays(browser: Browser, samples: list[dict[str, Any]], label: str) -> None:
    """The picture moved between every two samples, frames were decoded, nothing went wrong."""
    browser.screenshot(label)
    summary = [(round(s["currentTime"], 2), s["frames"]) for s in samples]
    for a, b in zip(samples, samples[1:], strict=False):
        assert b["currentTime"] > a["currentTime"], f"{label}: picture stood still: {summary}"
    assert samples[-1]["frames"] > samples[0]["frames"], f"{label}: no frame decoded: {summary}"
    assert samples[-1]["dropped"] < samples[-1]["frames"], samples[-1]
    assert samples[-1]["width"] > 0 and samples[-1]["height"] > 0, samples[-1]
    fatal = [e for e in samples[-1]["errors"] if e["fatal"]]
    assert not fatal, f"{label}: the player failed: {samples[-1]['errors']}"
    assert not browser.console_errors(), f"{label}: console errors: {browser.console_errors()}"


def republish(clients: Clients, publisher: subprocess.Popen[bytes], url: str) -> subprocess.Popen[bytes]:
    """The publisher leaves (as ffmpeg does on q) and comes back two seconds later."""
    publisher.terminate()
    publisher.wait(10)
    time.sleep(2)
    return clients.publish(url)


def assert_survives_republish(browser: Browser, clients: Clients, publisher: subprocess.Popen[bytes],
                              url: str, hls: bool = False) -> None:
    """After the publisher reconnects the picture moves on with frames of the new publisher.

    HLS: what is on screen is known to come from the new publisher once its
    EXT-X-PROGRAM-DATE-TIME is later than the reconnect (the player first plays out what it
    had buffered, and may have to wait out an EXT-X-ENDLIST)."""
    before = snapshot(browser)
    republish(clients, publisher, url)
    back = time.time() * 1000
    if hls:
        wait_for(lambda: (snapshot(browser)["programDate"] or 0) > back, timeout=60, interval=0.5,
                 what="a picture of the new publisher (EXT-X-PROGRAM-DATE-TIME after the reconnect)")
    else:
        time.sleep(3)
    wait_playing(browser, timeout=40)
    samples = watch(browser, 10)
    browser.screenshot("after-republish")
    summary = [(round(s["currentTime"], 2), s["frames"], s["reloads"]) for s in samples]
    for a, b in zip(samples, samples[1:], strict=False):
        assert b["currentTime"] > a["currentTime"], \
            f"after the republish the picture stood still: {summary} {samples[-1]['errors']}"
    assert samples[-1]["frames"] > max(samples[0]["frames"], 0), summary
    assert samples[-1]["frames"] != before["frames"], summary
    fatal = [e for e in samples[-1]["errors"] if e["fatal"]]
    assert not fatal, f"the player failed across the republish: {fatal}"
    assert not browser.console_errors(), browser.console_errors()


# ---- the page and its players are the package's --------------------------------------------


def test_player_page_and_vendored_players_are_served_from_the_package(srs_server) -> None:  # type: ignore[no-untyped-def]
    server = srs_server(http=True, workers=1)
    (server.dir / "players").mkdir()
    (server.dir / "players" / "index.html").write_text("the document root's own players page")
    base = f"http://127.0.0.1:{server.http_port}"

    status, headers, _ = get(f"{base}/players")
    assert status == 301 and headers["Location"] == "/players/"
    status, headers, page = get(f"{base}/players/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"vendor/hls.js/hls.min.js" in page and b"vendor/mpegts.js/mpegts.js" in page
    status, headers, _ = get(f"{base}/players/player.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")

    manifest = json.loads((VENDOR / "vendor.json").read_text())
    for pkg in manifest["packages"]:
        for entry in pkg["files"]:
            status, _, body = get(f"{base}/players/vendor/{entry['to']}")
            assert status == 200, entry
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry
    assert get(f"{base}/players/vendor/../../static.py")[0] in (403, 404)
    assert get(f"{base}/players/nope.js")[0] == 404


def test_vendored_players_match_their_pinned_npm_releases() -> None:
    out = subprocess.run([str(REPO / "scripts" / "vendor-js"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    names = {p["name"]: p["version"] for p in json.loads((VENDOR / "vendor.json").read_text())["packages"]}
    assert set(names) == {"hls.js", "mpegts.js"}
    for pkg in names:
        assert (VENDOR / pkg / "LICENSE").is_file()


def test_player_page_loads_both_players_without_errors(srs_server, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    server = srs_server(http=True, workers=1)
    browser.open(f"http://127.0.0.1:{server.http_port}/players/")
    versions = browser.js("return [window.Hls && Hls.version, window.mpegts && mpegts.version, "
                          "Hls.isSupported(), mpegts.isSupported(), "
                          "mpegts.getFeatureList().mseLivePlayback];")
    names = {p["name"]: p["version"] for p in json.loads((VENDOR / "vendor.json").read_text())["packages"]}
    assert versions[0] == names["hls.js"] and versions[1] == names["mpegts.js"], versions
    assert versions[2:] == [True, True, True], "Chromium's Media Source Extensions are not usable"
    browser.screenshot("empty-page")
    assert not browser.console_errors(), browser.console_errors()


# ---- HTTP-FLV with mpegts.js ------------------------------------------------------------------


def test_http_flv_plays_in_chromium_with_mpegts_js_and_survives_a_republish(  # type: ignore[no-untyped-def]
        srs_server, clients: Clients, browser: Browser) -> None:
    server = srs_server(http=True, workers=2, body=FLV_VHOST)
    url = f"{server.url}/live/browser"
    publisher = clients.publish(url)
    flv = f"http://127.0.0.1:{server.http_port}/live/browser.flv"
    open_player(browser, server, flv)
    start = wait_playing(browser)
    assert start["kind"] == "flv"
    assert_plays(browser, watch(browser, 20), "flv-20s")
    assert_survives_republish(browser, clients, publisher, url)


# ---- HLS with hls.js ---------------------------------------------------------------------------


def media_playlist(url: str) -> bytes:
    """The media playlist at `url`, following a variant playlist (hls_ctx) as a player does."""
    status, _, body = get(url)
    if status == 200 and b"#EXT-X-STREAM-INF" in body:
        uri = next(ln for ln in body.decode().splitlines() if ln and not ln.startswith("#"))
        status, _, body = get(urljoin(url, uri))
    return body if status == 200 else b""


def hls_vhost(path: Path, extra: str = "") -> str:
    return (f"vhost __defaultVhost__ {{ hls {{ enabled on; hls_fragment 2; hls_window 10; hls_path {path}; "
            f"hls_dispose 0; {extra} }} }}\n")


@pytest.mark.parametrize("fmp4", [False, True], ids=["ts", "fmp4"])
def test_hls_plays_in_chromium_with_hls_js_and_survives_a_republish(  # type: ignore[no-untyped-def]
        srs_server, clients: Clients, browser: Browser, fmp4: bool) -> None:
    server = srs_server(http=True, workers=2, body=hls_vhost(Path("."), "hls_use_fmp4 on;" if fmp4 else ""))
    url = f"{server.url}/live/browser"
    publisher = clients.publish(url)
    m3u8_url = f"http://127.0.0.1:{server.http_port}/live/browser.m3u8"
    wait_for(lambda: media_playlist(m3u8_url).count(b"#EXTINF") >= 2, timeout=30, what="a playlist with two segments")
    open_player(browser, server, m3u8_url)
    start = wait_playing(browser, timeout=40)
    assert start["kind"] == "hls"
    assert_plays(browser, watch(browser, 20), "hls-20s")
    assert_survives_republish(browser, clients, publisher, url, hls=True)
