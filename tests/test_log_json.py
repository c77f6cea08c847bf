"""`srs_log_format json`: one JSON object per line with the context a log shipper indexes.

A real server logs in JSON while a publisher (with a secret in its URL), an RTMP player, an
HTTP-FLV player and a forward (with a secret in its destination) come and go: every line of the
file must parse, carry time/level/worker/pid/event/msg, and the connection lines their id,
client and vhost/app/stream. A reload switches the format both ways, master and workers.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
from typing import Any

from conftest import Clients, Server, ffprobe, free_port, wait_for

from srv import log as srvlog

BASE_FIELDS = {"time", "level", "worker", "pid", "event", "msg"}


def json_lines(srv: Server) -> list[dict[str, Any]]:
    """Every line of the log file as JSON (fails on the first line that is not one)."""
    out = []
    for n, line in enumerate(srv.log_text().splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"{srv.log}:{n} is not JSON ({e}): {line!r}") from None
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [ln for ln in lines if ln.get("event") == name]


def test_json_formatter_puts_connection_context_in_fields_and_a_traceback_on_the_same_line() -> None:
    record = logging.LogRecord("srv.rtmp", srvlog.TRACE, __file__, 1, "%s %s publish start",
                               ("1.2.3.4:5", "__defaultVhost__/live/a/s"), None)
    record.__dict__.update(cid="c7", client="1.2.3.4:5", stream="__defaultVhost__/live/a/s", event="publish")
    obj = json.loads(srvlog.JsonFormatter().format(record))
    assert obj["cid"] == "c7" and obj["client"] == "1.2.3.4:5"
    assert (obj["vhost"], obj["app"], obj["stream"]) == ("__defaultVhost__", "live/a", "s")
    assert obj["event"] == "publish" and obj["msg"] == "publish start" and obj["level"] == "trace"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["time"])
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        failed = logging.LogRecord("srv.forward", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = srvlog.JsonFormatter().format(failed)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["event"] == "forward" and "ValueError: boom" in obj["exc"] and "cid" not in obj


def test_every_line_is_json_with_connection_stream_and_event_and_no_secret(srs_server, clients: Clients) -> None:
    dead = free_port()  # the forward destination refuses: its secret is in the backoff lines
    srv = srs_server("vhost __defaultVhost__ {\n"
                     "  http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }\n"
                     "  forward { enabled on; backoff_initial 200; backoff_max 400;\n"
                     f"    destination rtmp://127.0.0.1:{dead}/live2/[stream]?key=SECRET2; }}\n"
                     "}\n", http=True, settings={"srs_log_format": "json"})
    clients.publish(f"{srv.url}/live/cam?token=SECRET1")
    wait_for(lambda: events(json_lines(srv), "publish"), 20, what="a JSON publish line")
    assert "video" in {s["codec_type"] for s in ffprobe(f"{srv.url}/live/cam")["streams"]}
    assert "video" in {s["codec_type"] for s in
                       ffprobe(f"http://127.0.0.1:{srv.http_port}/live/cam.flv")["streams"]}
    wait_for(lambda: len(events(json_lines(srv), "close")) >= 2, 10, what="both players' close lines")
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as bad:  # HTTP lines name the client too
        bad_client = f"127.0.0.1:{bad.getsockname()[1]}"
        bad.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        bad.recv(1024)
    wait_for(lambda: [ln for ln in events(json_lines(srv), "error") if ln.get("client") == bad_client], 10,
             what="the bad request's line with its client")
    wait_for(lambda: "forward" in {ln["event"] for ln in json_lines(srv)}, 10, what="a forward line")
    srv.stop(signal.SIGQUIT)

    lines = json_lines(srv)
    for ln in lines:
        assert BASE_FIELDS <= ln.keys(), ln
        assert ln["level"] in ("verbose", "info", "trace", "warn", "error"), ln
        assert ln["worker"] == "master" or re.fullmatch(r"w\d+", ln["worker"]), ln
    assert {"master", "w1", "w2"} <= {ln["worker"] for ln in lines}
    (publish,) = events(lines, "publish")
    assert publish["worker"].startswith("w")
    assert (publish["vhost"], publish["app"], publish["stream"]) == ("__defaultVhost__", "live", "cam")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", publish["client"]) and publish["cid"]
    assert publish["msg"] == "publish start"
    plays = events(lines, "play")
    assert any(p["msg"] == "play start" for p in plays), plays  # RTMP
    assert any("flv-play" in p["msg"] for p in plays), plays  # HTTP-FLV
    for p in plays:
        assert p["stream"] == "cam" and p["cid"], p
        assert p["client"] == "worker-pull" or p["client"].startswith("127.0.0.1:"), p  # a cross-worker pull
    # each connection's lines share its id, from accept to close
    publisher = [ln for ln in lines if ln.get("cid") == publish["cid"]]
    assert {"accept", "connect", "publish"} <= {ln["event"] for ln in publisher}
    connect = next(ln for ln in publisher if ln["event"] == "connect")
    assert "stream" not in connect and connect["client"] == publish["client"]
    text = srv.log_text()
    assert "SECRET" not in text and "key=***" in text


def test_reload_switches_the_log_format_in_master_and_workers(srs_server, clients: Clients) -> None:
    srv = srs_server()
    body = "vhost __defaultVhost__ { }\n"
    assert srv.log_text().startswith("[")
    srv.header += "srs_log_format json;\n"
    srv.write_conf(body)
    srv.send_signal(signal.SIGHUP)
    for slot in (1, 2):
        wait_for(lambda slot=slot: f'"msg": "worker {slot} applied the new config"' in srv.log_text(), 15,
                 what=f"worker {slot} logging in JSON")
    text_part, _, json_part = srv.log_text().partition('{"time"')
    assert "SIGHUP: reload" in text_part
    lines = [json.loads('{"time"' + json_part.split("\n", 1)[0])] + \
        [json.loads(ln) for ln in json_part.split("\n", 1)[1].splitlines()]
    assert any(ln["msg"].startswith("reload ok") and ln["worker"] == "master" for ln in lines)
    pub = clients.publish(f"{srv.url}/live/s", seconds=2)
    wait_for(lambda: '"event": "publish"' in srv.log_text(), 15, what="a JSON publish line")
    pub.wait(20)

    srv.header = srv.header.replace("srs_log_format json;\n", "")
    srv.write_conf(body)
    size = len(srv.log_text())
    srv.send_signal(signal.SIGHUP)
    srv.wait_log("reload ok", count=2)
    for slot in (1, 2):
        srv.wait_log(f"worker {slot} applied the new config", count=2)
    after = srv.log_text()[size:].splitlines()
    assert json.loads(after[0])["msg"].startswith("SIGHUP: reload")  # logged before the switch
    switched = [ln for ln in after if "reload ok" in ln or "applied the new config" in ln]
    assert len(switched) == 3 and all(re.match(r"\[\d{4}-", ln) for ln in switched), after
    out = subprocess.run(["grep", "-c", '"event": "publish"', str(srv.log)], capture_output=True, text=True)
    assert out.stdout.strip() == "1"
