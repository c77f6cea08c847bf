"""The hub starts a stream's recordings (HLS, DVR) with a local publish and ends them with it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from srv.app.hub import StreamHub
from srv.app.source import LiveSource
from srv.conf.model import HlsConfig, ServerConfig, VhostConfig, VhostMap


class Registry:
    async def claim(self, key: str) -> int | None:
        return None

    def release(self, key: str) -> None:
        pass


class Publisher:
    closed = False

    def close(self) -> None:
        self.closed = True


class FakeRecording:
    kind = "hls"

    def __init__(self, src: LiveSource, log: list[str]) -> None:
        self.src = src
        self.log = log
        log.append(f"start {src.key}")

    def stop(self) -> None:
        self.log.append(f"stop {self.src.key}")

    def reconfigure(self, vhost: VhostConfig) -> bool:
        self.log.append(f"reconfigure {vhost.hls.fragment}")
        return vhost.hls.enabled

    def stats(self) -> dict[str, Any]:
        return {"segments": 3}


def config(hls: HlsConfig) -> ServerConfig:
    return ServerConfig(path="x.conf", vhosts=VhostMap([("v", VhostConfig("v", hls=hls))]))


def test_a_recording_lives_as_long_as_the_local_publish_and_follows_reloads() -> None:
    log: list[str] = []

    async def main() -> None:
        on = config(HlsConfig(enabled=True))
        hub = StreamHub(on, 1, Registry(), asyncio.get_running_loop())  # type: ignore[arg-type]
        hub.recorders["hls"] = lambda src: FakeRecording(src, log) if src.vhost.hls.enabled else None
        vhost = on.vhosts["v"]
        publisher = Publisher()
        assert await hub.publish("v/live/s", vhost, publisher) is None  # type: ignore[arg-type]
        src = hub.sources["v/live/s"]
        assert log == ["start v/live/s"] and src.stats()["recordings"] == {"hls": {"segments": 3}}

        hub.apply_config(config(HlsConfig(enabled=True, fragment=2.0)))  # kept, in place
        hub.apply_config(config(HlsConfig(enabled=False)))  # no longer wanted: stopped
        assert log[1:] == ["reconfigure 2.0", "reconfigure 10.0", "stop v/live/s"]
        assert src.recordings == []
        hub.apply_config(config(dataclasses.replace(HlsConfig(), enabled=True)))  # wanted again: started
        assert log[4:] == ["start v/live/s"]

        hub.unpublish("v/live/s", publisher)  # type: ignore[arg-type]
        assert log[5:] == ["stop v/live/s"] and src.recordings == []

        off = config(HlsConfig(enabled=False))
        hub.apply_config(off)
        assert await hub.publish("v/live/t", off.vhosts["v"], Publisher()) is None  # type: ignore[arg-type]
        assert log[6:] == [] and hub.sources["v/live/t"].stats()["recordings"] == {}

    asyncio.run(main())
