"""The one refusal path's bookkeeping, shared by RTMP (`RtmpServerProtocol.refuse`) and HTTP
(`HttpConnection.refuse`): the exporter counter, the log line and the per-IP ban.

Whatever decides a refusal (SRS `security`, signed URLs, http_hooks) hands a
`srv.app.access.Refusal` to the connection's `refuse`, which answers in the client's protocol
(an RTMP `_error`/`onStatus`, an HTTP 403) and closes; both call `record_refusal` here, so a
refusal is counted, logged and weighed toward a ban the same way whichever protocol it came by.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from srv import log as srvlog
from srv.app.access import Refusal
from srv.net.context import ConnectionContext

log = logging.getLogger("srv.access")

# How long a refused client has to read its answer before the connection is aborted.
REFUSE_LINGER = 2.0


def record_refusal(ctx: ConnectionContext, ip: str, conn_log: logging.Logger | logging.LoggerAdapter[Any],
                   stage: str, refusal: Refusal) -> None:
    """Count `refusal` (``srs_connections_rejected{reason}``), log it on the connection's
    logger, and ban `ip` when it is one refused auth too many (``per_ip { ban_after }``)."""
    ctx.reject(refusal.counter)
    conn_log.warning("%s refused: %s", stage, refusal.reason, extra=srvlog.event("refuse"))
    if refusal.failed_auth:
        cfg = ctx.config.per_ip
        if ctx.limiter.failed_auth(cfg, ip, time.monotonic()):
            ctx.counters["ip_bans"] += 1
            log.warning("%s banned for %gs after %d refused auths within %gs", ip, cfg.ban_time,
                        cfg.ban_after, cfg.ban_window)
            ctx.master.ban(ip, cfg.ban_time)  # the master has every worker refuse it
