"""`/api/v1/dvrs`: the DVR recordings on disk, listed, downloaded, deleted, played by time range.

Every worker answers (the files are on the shared disk; listing reads each file's head once,
in a disk thread, and keeps it by size and mtime):

    GET    /api/v1/dvrs[?vhost=&app=&stream=&from=&to=]   the list, oldest first
    GET    /api/v1/dvrs/<id>                              the file itself
    DELETE /api/v1/dvrs/<id>                              remove it
    GET    /api/v1/dvrs/<vhost>/<app>/<stream>.mp4?start=<ISO 8601>&duration=<s>
           one MP4 of that range, streamed (srv.app.dvr_range)

`stream` filters on the stream name (or `app/stream`); `from` and `to` (ISO 8601 or epoch
seconds) keep the recordings that overlap [from, to]. An entry: id, vhost, app, stream, start
and end (ISO 8601, UTC), start_ms, duration (s), size (bytes), path, recovered, url. Errors are
HTTP statuses with the SRS envelope's code: 404 unknown id / no recording in the range, 400
bad parameters.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from typing import Any, Protocol

from srv.app import dvr_files
from srv.app.diskio import remove_quietly
from srv.app.dvr_files import DvrFile
from srv.app.dvr_range import covering, range_mp4
from srv.http import static
from srv.net.context import ConnectionContext

log = logging.getLogger("srv.http")

MAX_RANGE = 24 * 3600.0  # seconds one range request may span


class StreamResponse(static.FileResponse, Protocol):
    def start_stream(self, status: int, content_type: str) -> None: ...


def entry_id(path: str) -> str:
    return "dvr-" + hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:16]


def iso(ms: float) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="milliseconds")


def parse_time(text: str) -> float:
    """ISO 8601 (a `Z` or an offset; none: UTC) or epoch seconds -> epoch ms; ValueError."""
    try:
        return float(text) * 1000
    except ValueError:
        pass
    # an unescaped "+" of an offset arrives as a space (form encoding): put it back
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip() if text.endswith(" ") else text)
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp() * 1000


def describe(e: DvrFile) -> dict[str, Any]:
    ident = entry_id(e.path)
    return {"id": ident, "vhost": e.vhost, "app": e.app, "stream": e.stream, "start": iso(e.start_ms),
            "end": iso(e.end_ms), "start_ms": int(e.start_ms), "duration": round(e.duration, 3), "size": e.size,
            "path": e.path, "recovered": e.recovered, "url": f"/api/v1/dvrs/{ident}"}


def roots(ctx: ConnectionContext) -> list[str]:
    return sorted({dvr_files.dvr_root(v.dvr.path) for v in ctx.config.vhosts.values() if v.dvr.enabled})


def matches(e: DvrFile, query: dict[str, str]) -> bool:
    stream = query.get("stream")
    if stream is not None and stream not in (e.stream, f"{e.app}/{e.stream}", e.key):
        return False
    if query.get("vhost") not in (None, e.vhost) or query.get("app") not in (None, e.app):
        return False
    if "from" in query and e.end_ms < parse_time(query["from"]):
        return False
    return not ("to" in query and e.start_ms > parse_time(query["to"]))


async def handle(ctx: ConnectionContext, out: StreamResponse, method: str, rest: list[str],
                 query: dict[str, str], envelope: Any) -> tuple[int, dict[str, Any]] | None:
    """Answer a /api/v1/dvrs request: a JSON reply, or None when a body was streamed to `out`."""
    where = roots(ctx)
    found = await ctx.disk.run(lambda: dvr_files.list_recordings(where))
    if not rest:
        if method not in ("GET", "HEAD"):
            return 405, envelope(405)
        try:
            listed = [describe(e) for e in found if matches(e, query)]
        except ValueError as e:
            return 400, envelope(400, error=f"bad time: {e}")
        return 200, envelope(0, dvrs=listed)
    if len(rest) == 1:
        entry = next((e for e in found if entry_id(e.path) == rest[0]), None)
        if entry is None:
            return 404, envelope(404)
        if method == "DELETE":
            gone = await ctx.disk.run(lambda: remove_quietly(entry.path))
            log.warning("%s: api deleted the recording %s", out.peer, entry.path)
            return (200, envelope(0)) if gone else (404, envelope(404))
        if method not in ("GET", "HEAD"):
            return 405, envelope(405)
        folder, name = os.path.split(entry.path)
        await static.serve(out, folder, name, ctx.loop)
        return None
    if len(rest) == 3 and method in ("GET", "HEAD"):
        vhost, app, name = rest
        stream, ext = os.path.splitext(name)
        if ext != ".mp4":
            return 400, envelope(400, error="time-range playback answers .mp4")
        try:
            start = parse_time(query["start"])
            duration = float(query.get("duration", "60"))
        except (KeyError, ValueError):
            return 400, envelope(400, error="start=<ISO 8601> and duration=<seconds> expected")
        if not 0 < duration <= MAX_RANGE:
            return 400, envelope(400, error=f"duration must be in (0, {MAX_RANGE:g}]")
        mine = [e for e in found if (e.vhost, e.app, e.stream) == (vhost, app, stream)]
        files = covering(mine, start, start + duration * 1000)
        if not files:
            return 404, envelope(404, error="no recording in that range")
        await stream_range(ctx, out, range_mp4(files, start, start + duration * 1000))
        return None
    return 404, envelope(404)


async def stream_range(ctx: ConnectionContext, out: StreamResponse, pieces: Iterator[bytes]) -> None:
    """Send the pieces as they are made (each made in a disk thread), paced by the client."""
    out.start_stream(200, "video/mp4")
    if out.head_request:
        out.end_body()
        return
    while not out.closed:
        piece = await ctx.disk.run(lambda: next(pieces, None))
        if piece is None:
            out.end_body()
            return
        if piece:
            out.body(piece)
            await out.drained()
