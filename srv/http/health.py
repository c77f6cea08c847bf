"""Health checks, on every HTTP listener.

`/health`, `/healthz`, `/livez`: 200 while the worker's loop answers. `/ready`, `/readyz`: 200
when the master says every worker is booted and accepting and the server is not stopping, else
503 with the reason (starting, stopping, master not answering), so a load balancer drains us.
"""

from __future__ import annotations

import json

from srv.net.context import ConnectionContext

LIVE_BODY = b'{"status":"ok"}'


async def readiness(ctx: ConnectionContext) -> tuple[int, bytes]:
    """(status, JSON body) of a readiness check."""
    ready, why = False, "stopping"
    if not ctx.stopping:
        try:
            info = (await ctx.master.snapshot()).get("master", {})
            ready = bool(info.get("ready"))
            why = "ok" if ready else (f"stopping ({info['stopping']})" if info.get("stopping") else "starting")
        except (TimeoutError, OSError):
            why = "master not answering"
    body = json.dumps({"status": "ready" if ready else "not ready", "reason": why}).encode()
    return (200 if ready else 503), body
