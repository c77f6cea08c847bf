"""The console at /console/ in a real browser (Debian's headless Chromium, tests/browser.py).

One server with a stream published by ffmpeg, an RTMP player and a forward to a port that
refuses. What an operator would see is asserted on the page itself: the console loads with no
console error; a stream shows up with its codecs within 2 s of the API knowing it (live
updates, no reload); a kicked client (with the confirmation accepted) is gone from the API; the
player page plays HTTP-FLV (mpegts.js) and HLS (hls.js, from the HLS writer's files): `currentTime`
advances, frames decode, the latency is shown, and the RTMP URL for OBS. Screenshots of every page are kept in
objs/test-artifacts/<test name>/ for a person to look at.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.request
from typing import Any

from browser import Browser
from conftest import Clients, Server, free_port, player, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait


def api(srv: Server, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/api/v1/{path}", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def texts(browser: Browser, css: str) -> list[str]:
    """The text of what `css` selects, read in one go (the page redraws its tables each second,
    so an element found a moment ago may be gone)."""
    return browser.js("return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);", css)  # type: ignore[no-any-return]


def plays_in_the_player_frame(browser: Browser, kind: str) -> dict[str, Any]:
    """In the Player page's frame (the /players/ page): frames decode, the picture moves (more
    than 1 s of `currentTime`) with `kind`'s player, the latency readout shows seconds; its
    last snapshot. The readout is scrolled into view for the screenshot."""
    frame = browser.driver.find_element(By.ID, "pl-frame")
    wait_for(lambda: f"type={kind}" in (frame.get_attribute("src") or ""), 10, what=f"the {kind} player frame")
    browser.driver.switch_to.frame(frame)
    try:
        wait_for(lambda: browser.js("return !!(window.srvPlayer && window.srvPlayer.snapshot)"), 15,
                 what="the player page")
        wait_for(lambda: browser.js("return window.srvPlayer.snapshot();")["frames"] > 0, 40, what="decoded frames")
        first = browser.js("return window.srvPlayer.snapshot();")
        wait_for(lambda: browser.js("return window.srvPlayer.snapshot();")["currentTime"] > first["currentTime"] + 1,
                 15, what="the picture moving")
        snap: dict[str, Any] = browser.js("return window.srvPlayer.snapshot();")
        assert snap["kind"] == kind, snap
        latency = browser.driver.find_element(By.ID, "s-latency")
        assert latency.text.endswith(" s") and float(latency.text.split()[0]) >= 0, latency.text
        browser.js("arguments[0].scrollIntoView();", latency)
        return snap
    finally:
        browser.driver.switch_to.default_content()


def test_console_pages_live_updates_kick_and_player_in_chromium(
        srs_server, clients: Clients, browser: Browser) -> None:
    dead = free_port()
    srv: Server = srs_server("vhost __defaultVhost__ {\n  http_remux { enabled on; }\n"
                             "  forward { enabled on; backoff_initial 300; backoff_max 600;\n"
                             f"    destination 127.0.0.1:{dead}; }}\n}}\n", workers=2, http=True)
    console = f"http://127.0.0.1:{srv.api_port}/console/"

    # overview: figures filled in by the API, no error in the console
    browser.open(console + "#overview")
    wait_for(lambda: "workers" in " ".join(texts(browser, "#ov-cards .k")), 15, what="overview cards")
    wait_for(lambda: len(texts(browser, "#ov-workers tbody tr")) == 2, 10, what="two workers listed")
    wait_for(lambda: "ok" in " ".join(texts(browser, "#ov-config tbody tr")), 10, what="the -t result")
    assert str(srv.conf) in " ".join(texts(browser, "#ov-config tbody tr"))
    browser.screenshot("overview")

    # streams: a stream published now appears with its codecs, without a reload
    browser.open(console + "#streams")
    wait_for(lambda: browser.js("return document.querySelector('#st-empty').hidden === false"), 10,
             what="the empty streams page")
    browser.js("window.srvLoaded = true;")  # gone if the page were reloaded
    clients.publish(f"{srv.url}/live/cam")

    def codecs_in_api() -> bool:
        return any(s["name"] == "cam" and s["video"] and s["audio"] for s in api(srv, "streams")["streams"])

    wait_for(codecs_in_api, 20, what="cam's codecs in the API")
    rows = "#st-table tbody tr[data-stream='live/cam']"
    wait_for(lambda: any("H264" in t for t in texts(browser, f"{rows} td.video"))
             and any("AAC" in t for t in texts(browser, f"{rows} td.audio")), 2,
             what="cam with H264 and AAC on the page within 2 s")
    assert browser.js("return window.srvLoaded === true")
    wait_for(lambda: any(b in " ".join(texts(browser, f"{rows} .badge")) for b in ("backoff", "connecting")), 10,
             what="the forward's state")
    wait_for(lambda: "fps" in " ".join(texts(browser, f"{rows} td.video")), 10, what="the frame rate")
    browser.screenshot("streams")

    # clients: kick the player after confirming
    player(clients, f"{srv.url}/live/cam")
    wait_for(lambda: [c for c in api(srv, "clients")["clients"] if c["type"] == "rtmp-play"], 20,
             what="the player in the API")
    victim = next(c["id"] for c in api(srv, "clients")["clients"] if c["type"] == "rtmp-play")
    browser.open(console + "#clients")
    button = f"#cl-table tr[data-client='{victim}'] button.kick"
    wait_for(lambda: texts(browser, button), 10, what="the player's row")
    browser.screenshot("clients")
    # a click as the user's, on whichever copy of the row is there (after the confirm dialog opens,
    # the script would not return)
    browser.js("setTimeout(() => document.querySelector(arguments[0]).click(), 0);", button)
    alert = WebDriverWait(browser.driver, 10).until(expected_conditions.alert_is_present())
    assert victim in alert.text
    alert.accept()
    wait_for(lambda: victim not in {c["id"] for c in api(srv, "clients")["clients"]}, 10,
             what="the kicked client gone from the API")
    wait_for(lambda: not texts(browser, button), 20, what="its row gone")

    # player: HTTP-FLV with mpegts.js in the player frame, latency shown, OBS URLs
    sid = next(s["id"] for s in api(srv, "streams")["streams"] if s["name"] == "cam")
    browser.open(console + f"#player/{sid}")
    wait_for(lambda: f"rtmp://127.0.0.1:{srv.port}/live" in " ".join(texts(browser, "#pl-urls td")), 10,
             what="the OBS server URL")
    assert "cam" in texts(browser, "#pl-urls tr:nth-child(2) td")[1]
    plays_in_the_player_frame(browser, "flv")  # mpegts.js
    browser.screenshot("player")
    assert browser.console_errors() == []


def test_console_player_plays_hls_with_hls_js_in_chromium(srs_server, clients: Clients, browser: Browser) -> None:
    srv: Server = srs_server("", workers=1, http=True)
    srv.write_conf(f"vhost __defaultVhost__ {{\n  hls {{ enabled on; hls_path {srv.dir}; hls_fragment 1; "
                   "hls_window 10; }\n}\n")
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok")
    clients.publish(f"{srv.url}/live/cam")

    def hls_segments() -> int:
        found = [s for s in api(srv, "streams")["streams"] if s["name"] == "cam"]
        return int(found[0]["hls"].get("segments", 0)) if found and found[0].get("hls") else 0

    wait_for(lambda: hls_segments() >= 3, 30, what="three HLS segments")
    sid = next(s["id"] for s in api(srv, "streams")["streams"] if s["name"] == "cam")
    browser.open(f"http://127.0.0.1:{srv.api_port}/console/#streams")
    wait_for(lambda: any(re.match(r"HLS ts: \d+ segments", t) for t in texts(browser, "#st-table td")), 10,
             what="the stream's HLS state")
    browser.screenshot("streams-hls")
    browser.open(f"http://127.0.0.1:{srv.api_port}/console/#player/{sid}")
    wait_for(lambda: "segments" in " ".join(texts(browser, "#pl-urls td")) or
             ".m3u8" in " ".join(texts(browser, "#pl-urls td")), 10, what="the HLS URL")
    Select(browser.driver.find_element(By.ID, "pl-kind")).select_by_value("hls")
    snap = plays_in_the_player_frame(browser, "hls")  # hls.js
    assert snap["url"].endswith("live/cam.m3u8"), snap
    browser.screenshot("player-hls")
    assert browser.console_errors() == []


def test_console_pages_through_a_thousand_clients(srs_server, browser: Browser) -> None:
    # 1000 TCP clients that never shake hands: they stay for handshake_timeout
    srv: Server = srs_server(workers=2, http=True, settings={"max_connections": "2000", "handshake_timeout": "300000"})
    socks = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        wait_for(lambda: api(srv, "clients")["total"] == 1000, 30, what="1000 clients")
        browser.open(f"http://127.0.0.1:{srv.api_port}/console/#clients")

        def shows(first: int, last: int) -> bool:
            return texts(browser, "#cl-range") == [f"{first}–{last} of 1000"] and \
                len(texts(browser, "#cl-table tbody tr")) == last - first + 1

        wait_for(lambda: shows(1, 100), 15, what="the first page of 100")
        browser.js("document.querySelector('#cl-next').click();")
        wait_for(lambda: shows(101, 200), 10, what="the second page")
        browser.js("const s = document.querySelector('#cl-size'); s.value = '500';"
                   "s.dispatchEvent(new Event('change'));")
        wait_for(lambda: shows(1, 500), 10, what="a page of 500")
        browser.js("document.querySelector('#cl-next').click();")
        wait_for(lambda: shows(501, 1000), 10, what="the last page of 500")
        assert browser.js("return document.querySelector('#cl-next').disabled") is True
        ids = texts(browser, "#cl-table tbody tr td:first-child")
        assert len(set(ids)) == 500
        browser.screenshot("clients-1000")
        assert browser.console_errors() == []
    finally:
        for s in socks:
            s.close()
