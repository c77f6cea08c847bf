"""SRS's http_hooks: SRS's accept rule byte for byte, SRS's bodies per hook and in order, the
real RTMP answer a refused client gets (ffmpeg prints it, an OBS-like client stops retrying),
HTTP-FLV's 403, the exporter's counters, and a hanging or flooding hook server that costs one
refused client and never the worker's loop.

The hook server (tests/hookserver.py) is a real `http.server` answering per stream name.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import signal
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FFMPEG_PUBLISH, wait_for
from hookserver import ACCEPTED, HookServer

from srv.app.access import Refusal
from srv.app.http_hooks import FIELDS, HookRequest, answer_refusal, hook_body
from srv.app.hub import stream_id
from srv.conf import load
from srv.net.hooks import HookClient, call_hooks
from srv.rtmp import events as ev
from srv.rtmp.client import ClientSession

# ---- the pure part: SRS's accept rule and bodies -------------------------------------------


@pytest.mark.parametrize("status, body, accepted", [
    (200, "0", True),
    (201, "0", True),
    (200, '{"code":0}', True),
    (201, '{"code": 0, "data": {"x": 1}}', True),
    (200, '{"code":-0}', True),
    (200, "0\n", False),  # SRS compares the body with "0" itself
    (200, " 0", False),
    (200, '{"code":"0"}', False),  # a string is not the integer 0
    (200, '{"code":0.0}', False),  # nor is a float
    (200, '{"code":false}', False),  # nor a bool
    (200, '{"code":1}', False),
    (200, "{}", False),
    (200, "", False),
    (200, "1", False),
    (200, '"0"', False),
    (200, "[0]", False),
    (200, "OK", False),
    (500, "0", False),
    (204, "", False),
    (302, "0", False),
])
def test_srs_accept_rule_byte_for_byte(status: int, body: str, accepted: bool) -> None:
    assert (answer_refusal(status, body) is None) is accepted


def test_bodies_carry_srs_fields_in_srs_order() -> None:
    who = HookRequest("1-7", "10.0.0.9", "__defaultVhost__", "live", "rtmp://h/live", "cam",
                      (("token", "a b"), ("x", "1")), "http://page")
    publish = hook_body("on_publish", "srv-1", who)
    assert list(publish) == ["server_id", "service_id", "action", "client_id", "ip", "vhost", "app",
                             "tcUrl", "stream", "param", "stream_url", "stream_id"]
    assert publish["param"] == "?token=a+b&x=1" and publish["stream_url"] == "/live/cam"
    assert publish["stream_id"] == stream_id("__defaultVhost__/live/cam")
    assert list(hook_body("on_connect", "s", who))[4:] == ["ip", "vhost", "app", "stream", "param", "tcUrl",
                                                         "pageUrl"]
    assert list(hook_body("on_play", "s", who))[4:] == ["ip", "vhost", "app", "stream", "tcUrl", "param",
                                                      "pageUrl", "stream_url", "stream_id"]
    close = hook_body("on_close", "s", who, send_bytes=5, recv_bytes=6)
    assert list(close)[4:] == ["ip", "vhost", "app", "send_bytes", "recv_bytes"] and close["send_bytes"] == 5
    named = HookRequest("1", "ip", "v.example.com", "live", stream="cam")
    assert hook_body("on_stop", "s", named)["stream_url"] == "v.example.com/live/cam"
    dvr = hook_body("on_dvr", "s", named, cwd="/srv", file="./x.flv")
    assert [dvr["cwd"], dvr["file"]] == ["/srv", "./x.flv"] and list(dvr)[4:] == list(FIELDS["on_dvr"])


# ---- the runner against a real hook server ------------------------------------------------


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.close()


def run_hooks(hook: str, urls: list[str], stream: str,
              timeout: float = 10.0) -> tuple[Refusal | None, Counter[str]]:
    counters: Counter[str] = Counter()

    async def go() -> Refusal | None:
        client = HookClient()
        try:
            body = hook_body(hook, "s", HookRequest("1-1", "127.0.0.1", "__defaultVhost__", "live", stream=stream))
            return await call_hooks(client, counters, hook, tuple(urls), body, timeout,
                                    logging.getLogger("test"))
        finally:
            await client.aclose()

    return asyncio.run(go()), counters


def test_deciding_hook_calls_urls_in_order_and_stops_at_the_first_refusal(hooks: HookServer) -> None:
    why, counters = run_hooks("on_publish", [hooks.url("a"), hooks.url("b"), hooks.url("c")], "v_code1")
    assert why is not None and why.reason == "on_publish: answer code 1" and why.failed_auth
    assert why.counter == "http_hook"
    assert [p for p, _ in hooks.requests] == ["/a"], "a refusal ends the decision"
    assert counters["hook_calls:on_publish:refused"] == 1
    why, _ = run_hooks("on_publish", [hooks.url("a"), hooks.url("b")], "v_zero")
    assert why is None and [p for p, _ in hooks.requests][1:] == ["/a", "/b"], "every URL must accept"


def test_notification_calls_every_url_even_after_a_failure(hooks: HookServer) -> None:
    why, counters = run_hooks("on_unpublish", [hooks.url("a"), hooks.url("b")], "v_status500")
    assert why is None and [p for p, _ in hooks.requests] == ["/a", "/b"]
    assert counters["hook_calls:on_unpublish:refused"] == 2


def test_hanging_and_flooding_hooks_fail_within_bounds_and_are_counted(hooks: HookServer) -> None:
    why, counters = run_hooks("on_play", [hooks.url("h")], "v_hang", timeout=0.5)
    assert why is not None and why.reason == "on_play: no answer within 0.5s"
    assert not why.failed_auth, "a hook server that does not answer is not the client's failed auth"
    assert counters["hook_failures:on_play:timeout"] == 1 and counters["hook_calls:on_play:failed"] == 1
    why, counters = run_hooks("on_play", [hooks.url("f")], "v_flood")
    assert why is not None and "answer longer than 65536 bytes" in why.reason
    assert counters["hook_failures:on_play:too_large"] == 1
    why, counters = run_hooks("on_play", ["http://127.0.0.1:9/nothing"], "v_zero")
    assert why is not None and counters["hook_failures:on_play:network"] == 1
    assert sum(v for k, v in counters.items() if k.startswith("hook_le:on_play:")) == 1


# ---- config ---------------------------------------------------------------------------------


def test_http_hooks_config_loads_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("vhost __defaultVhost__ { http_hooks { enabled on; on_publish http://a/1 http://b/2; "
                    "on_dvr http://a/dvr; timeout 3; } }\n")
    config = load(str(path), {"SRS_VHOST_HTTP_HOOKS_ON_PLAY": "http://c/3"})
    hooks = config.vhosts["__defaultVhost__"].http_hooks
    assert hooks.urls("on_publish") == ("http://a/1", "http://b/2") and hooks.urls("on_play") == ("http://c/3",)
    assert hooks.on_dvr == ("http://a/dvr",) and hooks.timeout == 3.0 and config.warnings == ()
    off = load(str(path), {"SRS_VHOST_HTTP_HOOKS_ENABLED": "off"})
    assert off.vhosts["__defaultVhost__"].http_hooks.urls("on_publish") == ()
    assert load(str(tmp_path / "x.conf"), {}).vhosts["__defaultVhost__"].http_hooks.timeout == 3.0
    path.write_text("vhost v { http_hooks { } }\n")
    assert load(str(path), {}).vhosts["v"].http_hooks.timeout == 30.0  # SRS's HTTP client timeout


# ---- a real server, real clients -----------------------------------------------------------


def hooked(hooks: HookServer, names: tuple[str, ...], timeout: float = 10, extra: str = "") -> str:
    lines = "".join(f"        {name} {hooks.url(name)};\n" for name in names)
    return (f"vhost __defaultVhost__ {{\n    http_hooks {{\n        enabled on;\n        timeout {timeout:g};\n"
            f"{lines}    }}\n    http_remux {{ enabled on; }}\n{extra}}}\n")


ALL = ("on_connect", "on_close", "on_publish", "on_unpublish", "on_play", "on_stop")


def ffmpeg_publish(clients: Any, url: str, seconds: float = 1) -> subprocess.Popen[bytes]:
    return clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *FFMPEG_PUBLISH[:-2],
                          "-t", str(seconds), "-f", "flv", url], stdout=subprocess.DEVNULL)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_ffmpeg_publish_follows_srs_rule_and_prints_why_it_was_refused(srs_server, clients, hooks) -> None:
    # the timeout leaves a loaded machine's hook server time to answer; "hang" sleeps past it
    server = srs_server(hooked(hooks, ("on_publish",), timeout=5), workers=1, http=True)
    refused = {"zero_nl": "answer '0\\n' is not 0", "code_str": "answer has no integer code: '{\"code\":\"0\"}'",
               "empty_obj": "answer has no integer code: '{}'", "empty": "empty answer",
               "status500": "HTTP status 500", "hang": "no answer within 5s",
               "flood": "answer longer than 65536 bytes"}
    procs = {v: ffmpeg_publish(clients, f"{server.url}/live/v_{v}") for v in [*sorted(ACCEPTED), *refused]}
    for v, p in procs.items():
        _, err = p.communicate(timeout=60)
        text = err.decode(errors="replace")
        if v in ACCEPTED:
            assert p.returncode == 0, (v, text)
        else:
            assert p.returncode != 0, v
            assert f"Server error: on_publish: {refused[v]}" in text, (v, text)
            assert hooks.url("on_publish") not in text, "the client is not told the hook's URL"
            server.wait_log(f"live/v_{v} publish refused: on_publish: {refused[v]}")
    text = metrics(server.exporter_port)
    assert 'srs_http_hook_calls_total{hook="on_publish",outcome="accepted"} 4.0' in text
    assert 'srs_http_hook_calls_total{hook="on_publish",outcome="refused"} 5.0' in text
    assert 'srs_http_hook_calls_total{hook="on_publish",outcome="failed"} 2.0' in text
    assert 'srs_http_hook_failures_total{hook="on_publish",reason="timeout"} 1.0' in text
    assert 'srs_http_hook_failures_total{hook="on_publish",reason="too_large"} 1.0' in text
    assert 'srs_http_hook_duration_seconds_count{hook="on_publish"} 11.0' in text
    assert 'srs_connections_rejected_total{reason="http_hook"} 7.0' in text




def test_bodies_per_hook_in_order_for_a_publish_a_play_and_their_closes(srs_server, clients, hooks) -> None:
    server = srs_server(hooked(hooks, ALL), workers=2)
    publisher = ffmpeg_publish(clients, f"{server.url}/live/cam?token=abc", seconds=6)
    wait_for(lambda: hooks.bodies("on_publish"), what="on_publish")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json",
                            f"{server.url}/live/cam?who=probe"], capture_output=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    assert publisher.wait(30) == 0
    wait_for(lambda: len(hooks.bodies("on_close")) == 2, what="both on_close")
    by_client: dict[str, list[dict[str, Any]]] = {}
    for body in hooks.bodies():
        by_client.setdefault(body["client_id"], []).append(body)
    assert len(by_client) == 2, "a worker pulling the stream for its player calls no hook"
    pub, play = sorted(by_client.values(), key=lambda bs: [b["action"] for b in bs] != [
        "on_connect", "on_publish", "on_unpublish", "on_close"])
    assert [b["action"] for b in pub] == ["on_connect", "on_publish", "on_unpublish", "on_close"]
    assert [b["action"] for b in play] == ["on_connect", "on_play", "on_stop", "on_close"]
    tc_url = f"rtmp://127.0.0.1:{server.port}/live"
    common = {"ip": "127.0.0.1", "vhost": "__defaultVhost__", "app": "live"}
    for bodies in (pub, play):
        for b in bodies:
            assert list(b)[:4] == ["server_id", "service_id", "action", "client_id"]
            assert list(b)[4:] == list(FIELDS[b["action"]]), b
            assert {k: b[k] for k in common} == common and b["server_id"] == pub[0]["server_id"]
    assert pub[0]["tcUrl"] == tc_url and pub[0]["stream"] == "" and pub[0]["param"] == ""
    stream = {"stream": "cam", "stream_url": "/live/cam", "stream_id": stream_id("__defaultVhost__/live/cam"),
              "tcUrl": tc_url}
    for b in (pub[1], pub[2], play[1], play[2]):
        assert {k: b[k] for k in stream} == stream, b
    assert pub[1]["param"] == pub[2]["param"] == "?token=abc"
    assert play[1]["param"] == play[2]["param"] == "?who=probe"
    for closing in (pub[3], play[3]):
        assert isinstance(closing["send_bytes"], int) and closing["send_bytes"] > 0
        assert isinstance(closing["recv_bytes"], int) and closing["recv_bytes"] > 0
    assert pub[3]["recv_bytes"] > play[3]["recv_bytes"], "the publisher sent the media"


async def obs_like_publish(port: int, app: str, stream: str, tries: int = 3) -> tuple[int, Any]:
    """Publish as OBS does: a connection that drops without an answer is retried; an answer
    (a rejection status) ends the attempts and is shown to the user. (attempts, last event)"""
    last: Any = None
    for attempt in range(1, tries + 1):
        session = ClientSession(app=app, tc_url=f"rtmp://127.0.0.1:{port}/{app}")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session.start()
        writer.write(session.data_to_send())
        answer = None
        try:
            while answer is None:
                data = await asyncio.wait_for(reader.read(65536), 10)
                if not data:
                    break
                for e in session.receive_data(data):
                    if isinstance(e, ev.Connected):
                        session.create_stream()
                    elif isinstance(e, ev.StreamCreated):
                        session.publish(stream)
                    elif isinstance(e, ev.ConnectFailed) or (isinstance(e, ev.StatusEvent) and e.code.startswith(
                            "NetStream.Publish.")):
                        answer = e
                writer.write(session.data_to_send())
        except (ConnectionError, OSError):
            pass
        writer.close()
        if answer is not None:
            return attempt, answer
        last = None
    return tries, last


def test_a_hanging_hook_holds_only_its_own_client(srs_server, clients, hooks) -> None:
    server = srs_server(hooked(hooks, ("on_publish",), timeout=5), workers=1)
    hanging = ffmpeg_publish(clients, f"{server.url}/live/v_hang")
    wait_for(lambda: hooks.bodies("on_publish", "v_hang"), what="the hanging hook's call")
    attempts, answer = asyncio.run(obs_like_publish(server.port, "live", "v_zero"))
    assert answer.code == "NetStream.Publish.Start"
    assert "v_hang publish refused" not in server.log_text(), "the other publish had to wait for the hang"
    assert hanging.wait(30) != 0
    server.wait_log("v_hang publish refused: on_publish: ")


def test_obs_like_client_gets_the_rejection_and_stops_retrying(srs_server, hooks) -> None:
    server = srs_server(hooked(hooks, ("on_connect", "on_publish")), workers=1)
    attempts, answer = asyncio.run(obs_like_publish(server.port, "live", "v_code1"))
    assert attempts == 1 and isinstance(answer, ev.StatusEvent)
    assert (answer.level, answer.code) == ("error", "NetStream.Publish.Unauthorized")
    assert answer.description.endswith("answer code 1")
    assert len(hooks.bodies("on_publish")) == 1
    attempts, answer = asyncio.run(obs_like_publish(server.port, "v_status500", "cam"))
    assert attempts == 1 and isinstance(answer, ev.ConnectFailed)
    assert answer.code == "NetConnection.Connect.Rejected" and answer.description.endswith("HTTP status 500")
    attempts, answer = asyncio.run(obs_like_publish(server.port, "live", "cam"))
    assert attempts == 1 and answer.code == "NetStream.Publish.Start"


def test_play_refused_by_on_play_rtmp_answer_and_http_flv_403(srs_server, clients, hooks) -> None:
    server = srs_server(hooked(hooks, ("on_play", "on_stop")), workers=1, http=True)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", f"{server.url}/live/v_code1"],
                         capture_output=True, timeout=30)
    assert out.returncode != 0
    assert "Server error: on_play: answer code 1" in out.stderr.decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    conn.request("GET", "/live/v_empty_obj.flv")
    refused = conn.getresponse()
    assert refused.status == 403
    assert "Forbidden: on_play: answer has no integer code: '{}'" in refused.read().decode()
    conn.close()
    assert hooks.bodies("on_stop") == [], "a refused play never started: no on_stop"
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    conn.request("GET", "/live/v_zero.flv?token=t", headers={"Referer": "http://page.example/x"})
    accepted = conn.getresponse()
    assert accepted.status == 200 and accepted.getheader("Content-Type") == "video/x-flv"
    accepted.close()
    conn.close()
    wait_for(lambda: hooks.bodies("on_stop", "v_zero"), what="the HTTP-FLV player's on_stop")
    play = hooks.bodies("on_play", "v_zero")[0]
    stop = hooks.bodies("on_stop", "v_zero")[0]
    assert play["param"] == "?token=t" and play["pageUrl"] == "http://page.example/x"
    assert play["tcUrl"] == f"http://127.0.0.1:{server.http_port}/live" and play["stream_url"] == "/live/v_zero"
    assert stop["client_id"] == play["client_id"] and list(stop)[4:] == list(FIELDS["on_stop"])


def test_a_stopping_server_still_sends_its_clients_last_notifications(srs_server, clients, hooks) -> None:
    server = srs_server(hooked(hooks, ("on_unpublish", "on_close")), workers=1)
    publisher = ffmpeg_publish(clients, f"{server.url}/live/cam", seconds=60)
    server.wait_log("publish start", timeout=20)
    assert server.stop() == 0
    assert [b["action"] for b in hooks.bodies()] == ["on_unpublish", "on_close"]
    publisher.wait(10)


def test_reload_switches_hooks_on_for_the_next_publish(srs_server, hooks) -> None:
    server = srs_server("vhost __defaultVhost__ { }\n", workers=1)
    assert asyncio.run(obs_like_publish(server.port, "live", "v_code1"))[1].code == "NetStream.Publish.Start"
    server.write_conf(hooked(hooks, ("on_publish",)))
    server.send_signal(signal.SIGHUP)
    server.wait_log("reload ok")
    _, answer = asyncio.run(obs_like_publish(server.port, "live", "v_code1"))
    assert (answer.code, answer.description) == ("NetStream.Publish.Unauthorized", "on_publish: answer code 1")
