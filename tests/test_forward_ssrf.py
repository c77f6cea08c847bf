"""The SSRF guard on forward destinations a `backend` returns (srv.app.ssrf, srv.net.forward).

The decision is a pure function, tested on every kind of address without connecting anywhere.
The Forwarder is tested against an in-process RTMP slave on loopback: a backend destination
there is refused without `allow_private` (no connection is made, state `error`, not retried)
and used with it; a destination the config lists is trusted. On the real server, a backend
that answers with a loopback URL gets its destination refused, logged with the stream and the
redacted URL, while the publish itself goes on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from srv.app.ssrf import ALLOW_ALL, allowed_networks, refusal
from srv.conf import ConfigErrors, load
from srv.conf.model import ForwardConfig
from srv.net.forward import Forwarder, ForwardState
from tests.conftest import Clients, codecs, ffprobe
from tests.test_forward_faults import Backend
from tests.test_forward_units import Recorder, context, publishing_source, until


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("100.64.0.1", "non-public"), ("192.0.2.1", "private"),  # shared (CGNAT), documentation
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
])
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert refusal([address]) == f"{address}, a {kind} address"
    assert refusal([address], ALLOW_ALL) is None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal([address]) is None


def test_every_address_of_a_name_must_pass() -> None:
    assert refusal(["8.8.8.8", "10.0.0.1"]) == "10.0.0.1, a private address"


def test_allow_private_lets_through_only_its_networks() -> None:
    allowed = allowed_networks(("10.0.0.0/8", "fd00::/8"))
    assert refusal(["10.9.8.7", "fd00::5"], allowed) is None
    assert refusal(["192.168.1.1"], allowed) == "192.168.1.1, a private address"
    assert refusal(["127.0.0.1"], allowed) == "127.0.0.1, a loopback address"
    assert allowed_networks(("on",)) == ALLOW_ALL and allowed_networks(("off",)) == allowed_networks(()) == ()


def test_allow_private_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"

    def forward(line: str) -> Any:
        path.write_text(f"vhost v {{ forward {{ enabled on; backend http://127.0.0.1:8085/f; {line} }} }}\n")
        return load(str(path), {}).vhosts["v"].forwards[0]

    assert forward("").allow_private == ()
    assert forward("allow_private on;").allow_private == ("on",)
    assert forward("allow_private 10.1.0.0/16 fd00::/8 192.168.1.7;").allow_private == (
        "10.1.0.0/16", "fd00::/8", "192.168.1.7/32")
    for bad, message in [("allow_private lan;", 'invalid value "lan" (expected on, off or an IP network'),
                         ("allow_private on 10.0.0.0/8;", 'allow_private takes "on" alone, or networks')]:
        with pytest.raises(ConfigErrors) as info:
            forward(bad)
        assert message in str(info.value), info.value


# ---- the Forwarder, against an RTMP slave on loopback -----------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # localhost: resolved off the loop
def test_a_backend_destination_on_loopback_is_refused_without_connecting(host: str) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        rec = Recorder()
        port = await rec.start()
        src = publishing_source(loop)
        f = Forwarder(context(loop), src, f"rtmp://{host}:{port}/live/s?key=SECRET", ForwardConfig(enabled=True))
        await until(lambda: f.state is ForwardState.ERROR)
        assert "a loopback address" in f.last_error and "allow_private" in f.last_error
        await asyncio.sleep(0.3)
        assert rec.connections == [] and f.state is ForwardState.ERROR and f.reconnects == 0
        f.stop()

    asyncio.run(run())


@pytest.mark.parametrize("allow", [("on",), ("127.0.0.0/8", "::1/128")])
def test_allow_private_lets_a_backend_destination_connect(allow: tuple[str, ...]) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        rec = Recorder()
        port = await rec.start()
        src = publishing_source(loop)
        f = Forwarder(context(loop), src, f"rtmp://127.0.0.1:{port}/live/s",
                      ForwardConfig(enabled=True, allow_private=allow))
        await until(lambda: f.state is ForwardState.CONNECTED)
        assert len(rec.publishes) == 1
        f.stop()

    asyncio.run(run())


def test_a_network_not_listed_is_still_refused_and_config_destinations_are_trusted() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        rec = Recorder()
        port = await rec.start()
        src = publishing_source(loop)
        url = f"rtmp://127.0.0.1:{port}/live/s"
        refused = Forwarder(context(loop), src, url, ForwardConfig(enabled=True, allow_private=("10.0.0.0/8",)))
        await until(lambda: refused.state is ForwardState.ERROR)
        assert rec.connections == []
        trusted = Forwarder(context(loop), src, url, ForwardConfig(enabled=True, destinations=(url,)))
        await until(lambda: trusted.state is ForwardState.CONNECTED)
        refused.stop()
        trusted.stop()

    asyncio.run(run())


# ---- the real server ---------------------------------------------------------------------------------


def test_backend_answering_a_loopback_url_gets_it_refused_and_the_publish_goes_on(srs_server, clients: Clients):
    slave = srs_server(name="slave")
    url = f"rtmp://127.0.0.1:{slave.port}/backup/[stream]?key=SECRET"
    backend = Backend((200, {"code": 0, "data": {"urls": [url]}}))
    try:
        master = srs_server("vhost __defaultVhost__ { forward { enabled on;\n"
                            f"  backend {backend.url}; }} }}\n", name="master")
        clients.publish(f"{master.url}/live/show")
        master.wait_log("giving up", timeout=15)
        line = next(ln for ln in master.log_text().splitlines() if "giving up" in ln)
        assert "live/show -> " in line and f"127.0.0.1:{slave.port}/backup/[stream]?key=***" in line
        assert "refused: 127.0.0.1 resolves to 127.0.0.1, a loopback address" in line
        assert "SECRET" not in master.log_text()
        assert "video" in codecs(ffprobe(f"{master.url}/live/show"))  # the publish goes on
        assert "publish start" not in slave.log_text()  # nothing reached the slave
    finally:
        backend.close()
