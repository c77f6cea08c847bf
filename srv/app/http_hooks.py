"""SRS's `http_hooks`, the pure part: the JSON body of each hook and SRS's rule for accepting an
answer. Nothing here does I/O: srv/net/hooks.py calls the URLs, in order, on the worker's one
hook client.

Bodies are SRS 6's (`SrsHttpHooks` in srs_app_http_hooks.cpp), same keys in the same order::

    on_connect    server_id service_id action client_id ip vhost app stream param tcUrl pageUrl
    on_close      server_id service_id action client_id ip vhost app send_bytes recv_bytes
    on_publish    server_id service_id action client_id ip vhost app tcUrl stream param
                  stream_url stream_id                  (on_unpublish and on_stop: the same)
    on_play       server_id service_id action client_id ip vhost app stream tcUrl param pageUrl
                  stream_url stream_id
    on_dvr        ... tcUrl stream param cwd file stream_url stream_id
    on_hls        ... tcUrl stream param duration cwd file url m3u8 m3u8_url seq_no stream_url
                  stream_id

`param` is the client's query (`?token=...`, empty when none), `stream_url` is
`[vhost]/app/stream` with the vhost left out for `__defaultVhost__`, and `stream_id` is the id
the HTTP API gives the stream (`str-...`), so a hook server can look the stream up there.
srv's `server_id` identifies one run of the server; `service_id` is the same value (SRS keeps a
server id across restarts and a service id per run; srv has only the second).

The accept rule, byte for byte SRS's `SrsHttpHooks::do_post`: HTTP status 200 or 201, a
non-empty body that parses as JSON, and then either the body is exactly `0` (so `0\\n` is
refused), or it is an object whose `code` is the integer 0 (`{"code":"0"}`, `{"code":0.0}`,
`{"code":false}` and `{}` are refused). Anything else refuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from srv.app.access import Refusal
from srv.app.hub import stream_id
from srv.conf.model import DEFAULT_VHOST

#: hooks whose refusal refuses the client; the others only notify (a failure is logged)
DECIDING: Final = frozenset({"on_connect", "on_publish", "on_play"})

_STREAM_FIELDS: Final = ("ip", "vhost", "app", "tcUrl", "stream", "param")
FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "on_connect": ("ip", "vhost", "app", "stream", "param", "tcUrl", "pageUrl"),
    "on_close": ("ip", "vhost", "app", "send_bytes", "recv_bytes"),
    "on_publish": (*_STREAM_FIELDS, "stream_url", "stream_id"),
    "on_unpublish": (*_STREAM_FIELDS, "stream_url", "stream_id"),
    "on_play": ("ip", "vhost", "app", "stream", "tcUrl", "param", "pageUrl", "stream_url", "stream_id"),
    "on_stop": (*_STREAM_FIELDS, "stream_url", "stream_id"),
    "on_dvr": (*_STREAM_FIELDS, "cwd", "file", "stream_url", "stream_id"),
    "on_hls": (*_STREAM_FIELDS, "duration", "cwd", "file", "url", "m3u8", "m3u8_url", "seq_no",
               "stream_url", "stream_id"),
}
"""The fields of each hook's body after server_id, service_id, action and client_id."""


@dataclass(frozen=True, slots=True)
class HookRequest:
    """Who a hook is about: SRS's `SrsRequest` as the hooks read it."""

    client_id: str
    ip: str
    vhost: str
    app: str
    tc_url: str = ""
    stream: str = ""
    params: tuple[tuple[str, str], ...] = ()  # the client's query, in order
    page_url: str = ""

    @property
    def param(self) -> str:
        return f"?{urlencode(self.params)}" if self.params else ""

    @property
    def stream_url(self) -> str:
        """SRS's `srs_generate_stream_url`: no vhost for the default one."""
        head = "" if self.vhost == DEFAULT_VHOST else self.vhost
        return f"{head}/{self.app}/{self.stream}"


def hook_refusal(hook: str, why: str, answered: bool) -> Refusal:
    """A deciding hook's no, for the one refusal path. The client is told the hook and why
    (`on_publish: answer code 1`), never the hook's URL. A hook server that gave no usable
    answer (timeout, network, too large: `answered` False) is not the client's doing, so only a
    real refusal counts toward a per-IP ban."""
    return Refusal(f"{hook}: {why}", "http_hook", failed_auth=answered)


def hook_body(action: str, server_id: str, client: HookRequest, **extra: Any) -> dict[str, Any]:
    """The JSON body SRS POSTs for `action`; `extra` gives what only some hooks carry
    (`send_bytes`, `recv_bytes` for on_close; `cwd`, `file`, ... for on_dvr and on_hls)."""
    known = {
        "ip": client.ip, "vhost": client.vhost, "app": client.app, "tcUrl": client.tc_url,
        "stream": client.stream, "param": client.param, "pageUrl": client.page_url,
        "stream_url": client.stream_url,
        "stream_id": stream_id(f"{client.vhost}/{client.app}/{client.stream}"),
        **extra,
    }
    body: dict[str, Any] = {"server_id": server_id, "service_id": server_id, "action": action,
                            "client_id": client.client_id}
    for name in FIELDS[action]:
        body[name] = known[name]
    return body


def answer_refusal(status: int, text: str) -> str | None:
    """None when SRS would accept a hook's answer (status, body), else why not, in words."""
    if status not in (200, 201):
        return f"HTTP status {status}"
    if not text:
        return "empty answer"
    try:
        answer = json.loads(text)
    except ValueError:
        return f"answer is not JSON: {text[:80]!r}"
    if not isinstance(answer, dict):
        return None if text == "0" else f"answer {text[:80]!r} is not 0"
    code = answer.get("code")
    if type(code) is not int:
        return f"answer has no integer code: {text[:80]!r}"
    if code != 0:
        return f"answer code {code}"
    return None
