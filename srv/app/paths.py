"""SRS's path variables for recording files (HLS segments and playlists, DVR files), kept inside their folder.

`expand` fills a template such as ``[app]/[stream]-[seq].ts`` or
``[app]/[stream].[timestamp].flv`` the way SRS does:

- ``[vhost] [app] [stream]``: the stream's names (made safe for a path, below);
- ``[seq]``: the segment's sequence number; ``[duration]``: its duration in ms (HLS);
- ``[timestamp]``: ms since the epoch; ``[2006] [01] [02] [15] [04] [05] [999]``: year, month,
  day, hour, minute, second and millisecond of local time (Go's reference date, as SRS).

The names come from clients, so they must never lead a file out of the configured folder:
`safe_name` turns a backslash or NUL into ``_``, drops empty, ``.`` and ``..`` path segments
(``..`` becomes ``_``) and any leading ``/``. `place_under` then joins the expanded
relative path to its root and checks, after normalising, that the result is still under the
root; it raises `UnsafePath` otherwise (a template written by the operator may contain ``..``
to reach a sibling folder only if it stays under the root).
"""

from __future__ import annotations

import os
import time

VARIABLES = ("[vhost]", "[app]", "[stream]", "[seq]", "[duration]", "[timestamp]",
             "[2006]", "[01]", "[02]", "[15]", "[04]", "[05]", "[999]")


class UnsafePath(ValueError):
    """An expanded path that would leave its root folder."""


def safe_name(name: str) -> str:
    """`name` (an app or stream from a client) as path segments that stay where they are put."""
    cleaned = name.replace("\\", "_").replace("\x00", "_")
    parts = []
    for part in cleaned.split("/"):
        if part in ("", "."):
            continue
        parts.append("_" if part == ".." else part)
    return "/".join(parts) or "_"


def expand(template: str, *, vhost: str, app: str, stream: str, seq: int | None = None,
           duration_ms: int | None = None, now: float | None = None) -> str:
    """`template` with SRS's variables filled in; `now` is a `time.time()` value (default: now)."""
    stamp = time.time() if now is None else now
    local = time.localtime(stamp)
    millis = int(stamp * 1000)
    values = {
        "[vhost]": safe_name(vhost),
        "[app]": safe_name(app),
        "[stream]": safe_name(stream),
        "[timestamp]": str(millis),
        "[2006]": f"{local.tm_year:04d}",
        "[01]": f"{local.tm_mon:02d}",
        "[02]": f"{local.tm_mday:02d}",
        "[15]": f"{local.tm_hour:02d}",
        "[04]": f"{local.tm_min:02d}",
        "[05]": f"{local.tm_sec:02d}",
        "[999]": f"{millis % 1000:03d}",
    }
    if seq is not None:
        values["[seq]"] = str(seq)
    if duration_ms is not None:
        values["[duration]"] = str(duration_ms)
    out = template
    for variable, value in values.items():
        out = out.replace(variable, value)
    return out


def place_under(root: str, relative: str) -> str:
    """The absolute, normalised path of `relative` under `root`; `UnsafePath` if it leaves it."""
    base = os.path.abspath(root)
    path = os.path.normpath(os.path.join(base, relative.lstrip("/")))
    if path != base and not path.startswith(base.rstrip(os.sep) + os.sep):
        raise UnsafePath(f"{relative!r} leaves {root!r}")
    return path
