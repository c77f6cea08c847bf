"""Secrets in forward destinations and client URLs are never shown; srv_via goes only where wanted.

A master forwards to a real srv slave and to small recording RTMP peers that write down the
connect and publish they get; the publisher's tcUrl and stream param carry tokens too. The API,
the exporter and the log file must show the parameter names with `***`, never a secret, while
every destination still receives its key.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request

from conftest import FFMPEG_PUBLISH, Clients, codecs, ffprobe, wait_for
from test_forward_faults import SilentPeer

from srv.log import redact_url
from srv.rtmp import events as ev
from srv.rtmp.session import ServerSession


class RecordingPeer(SilentPeer):
    """An RTMP server that accepts connect and publish, records them, and reads (and drops) media."""

    def __init__(self) -> None:
        self.connects: list[ev.ConnectRequest] = []
        self.publishes: list[ev.PublishRequest] = []
        super().__init__()

    def on_connection(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        session = ServerSession(out_chunk_size=4096)
        try:
            while data := conn.recv(65536):
                todo = session.receive_data(data)
                while todo:
                    e = todo.pop(0)
                    if isinstance(e, ev.ConnectRequest):
                        self.connects.append(e)
                        todo += session.accept_connect(e)
                    elif isinstance(e, ev.PublishRequest):
                        self.publishes.append(e)
                        session.accept_publish(e.stream_id, e.stream_name)
                out = session.data_to_send()
                if out:
                    conn.sendall(out)
        except OSError:
            return  # closed at teardown


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def test_redaction_keeps_names_and_hides_values() -> None:
    assert redact_url("rtmp://h/live2/s?key=SECRET&vhost=v") == "rtmp://h/live2/s?key=***&vhost=v"
    assert redact_url("rtmp://u:SECRET@h/app?SECRET") == "rtmp://u:***@h/app?***"
    assert redact_url("rtmp://h/[app]/[stream]?k=SECRET&[param]&srv_via=a,b") == \
        "rtmp://h/[app]/[stream]?k=***&[param]&srv_via=a,b"
    assert redact_url("127.0.0.1:1936") == "127.0.0.1:1936"


def test_keys_are_delivered_but_never_shown_and_srv_via_stays_in_the_cluster(srs_server, clients: Clients):
    slave = srs_server(name="slave")
    third_party, cluster, forced = RecordingPeer(), RecordingPeer(), RecordingPeer()
    try:
        master = srs_server(
            "vhost __defaultVhost__ {\n"
            "  forward { enabled on; backoff_initial 300; backoff_max 600;\n"
            f"    destination rtmp://127.0.0.1:{third_party.port}/live2/[stream]?key=SECRET1\n"
            f"                rtmp://127.0.0.1:{slave.port}/live2/[stream]?key=SECRET5\n"
            f"                127.0.0.1:{cluster.port}; }}\n"
            "  forward live/* { enabled on; srv_via on;\n"
            f"    destination rtmp://127.0.0.1:{forced.port}/edge?token=SECRET6; }}\n"
            "}\n", name="master", http=True)
        # the publisher's tcUrl and stream both carry secrets, as encoders configured for auth do
        clients.spawn(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *FFMPEG_PUBLISH,
                       "-rtmp_app", "live?token=SECRET4", "-rtmp_playpath", "livestream?key=SECRET2",
                       f"{master.url}/live/livestream"])
        assert wait_for(lambda: third_party.publishes and cluster.publishes and forced.publishes, 20,
                        what="every destination got the publish")
        assert "video" in codecs(ffprobe(f"{slave.url}/live2/livestream"))

        # each destination gets its key; srv_via only where it belongs
        got = third_party.publishes[0]
        assert (got.stream_name, got.params.get("key")) == ("livestream", "SECRET1")
        assert "srv_via" not in got.params, f"a third-party rtmp:// destination got srv_via: {got.params}"
        got = cluster.publishes[0]
        assert got.params.get("key") == "SECRET2", "a host:port slave gets the publisher's query"
        assert got.params.get("srv_via"), "a host:port slave gets srv_via (loop protection)"
        got = forced.publishes[0]
        assert got.params.get("token") == "SECRET6" and got.params.get("srv_via"), "srv_via on sends it"

        def shown() -> dict[str, str]:
            return {"streams": get(f"http://127.0.0.1:{master.api_port}/api/v1/streams"),
                    "clients": get(f"http://127.0.0.1:{master.api_port}/api/v1/clients"),
                    "metrics": get(f"http://127.0.0.1:{master.exporter_port}/metrics")}

        def connected() -> int:
            streams = json.loads(get(f"http://127.0.0.1:{master.api_port}/api/v1/streams"))["streams"]
            return sum(f["state"] == "connected" for s in streams for f in s["forwards"])

        wait_for(lambda: connected() == 4, 15, what="4 forwards connected")
        pages = shown()
        assert "key=***" in pages["streams"] and "key=***" in pages["metrics"], pages["metrics"][-2000:]
        assert "token=***" in pages["clients"], "the publisher's tcUrl is shown with its secret hidden"
        master.wait_log("publish started on rtmp://127.0.0.1", count=4)
        log = master.log_text()
        assert "tcUrl=rtmp://127.0.0.1" in log and "token=***" in log
        for where, text in [*pages.items(), ("log file", log)]:
            assert "SECRET" not in text, f"a secret leaked in the {where}: " + \
                next(line for line in text.splitlines() if "SECRET" in line)
    finally:
        for peer in (third_party, cluster, forced):
            peer.close()
