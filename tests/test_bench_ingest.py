"""The ingest bench's publishers (scripts/loadclient.py IngestFleet) publish what ffmpeg can play.

Against a real srv: three pre-chunked publishers of an FLV file made by ffmpeg, from one fleet;
ffmpeg records one of the streams and decodes it cleanly, the stream arrives at real-time pace
(the fleet neither bursts the file nor falls behind), and no publisher lags.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_rtmp_live import decode_errors, duration, record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import loadclient as lc  # noqa: E402

RECORD_SECONDS = 6


def make_source(path: Path) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                    "-t", "4", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-f", "flv", str(path)], check=True, timeout=60)


async def publish_and_record(base: str, source: Path, clients: Any, out: Path) -> dict[str, Any]:
    fleet = lc.IngestFleet(str(source))
    try:
        await fleet.add([f"{base}/live/in{i}" for i in range(3)])
        await asyncio.sleep(1.5)  # a keyframe in the GOP cache; ffmpeg starts on it
        fleet.lag()
        started = time.monotonic()
        rec = record(clients, f"{base}/live/in1", out, RECORD_SECONDS)
        while rec.poll() is None and time.monotonic() - started < 40:
            await asyncio.sleep(0.1)
        took = time.monotonic() - started
        pace = [p.bytes_sent / (time.monotonic() - p.t0) / fleet.byte_rate for p in fleet.publishers]
        return {"took": took, "rc": rec.poll(), "lag": fleet.lag(), "pace": pace,
                "failed": [p.failed for p in fleet.publishers]}
    finally:
        fleet.close()


@pytest.mark.timeout(120)
def test_ingest_fleet_publishes_real_time_streams_ffmpeg_decodes(srs_server, clients, tmp_path):
    source = tmp_path / "source.flv"
    make_source(source)
    server = srs_server(workers=1)
    out = tmp_path / "in1.flv"
    got = asyncio.run(publish_and_record(server.url, source, clients, out))

    assert got["rc"] == 0 and got["failed"] == ["", "", ""], got
    assert decode_errors(out) == ""
    assert duration(out) >= RECORD_SECONDS - 0.5
    # real time: ffmpeg needed about RECORD_SECONDS of wall time for RECORD_SECONDS of media (a
    # burst of the whole file would take a fraction of it; the GOP cache gives up to 1 s at once)
    assert got["took"] >= RECORD_SECONDS - 1.5, got
    # each publisher sent the file's bytes at the file's rate (the headers, once, aside)
    assert all(0.8 <= p <= 1.25 for p in got["pace"]), got
    assert max(got["lag"]) < 1.0, got
