"""Every message of the master/worker control channel, as a frozen dataclass.

Each message names its handler: `Claim` is handled by `handle_claim` on the receiving end, the
way gunicorn's arbiter maps a signal to `handle_<sig>`. `handlers(obj, TO_MASTER)` builds that
table once (it fails at start-up if a handler is missing), and `Dispatcher` looks each incoming
message up in it. A frame that does not decode, is not a message this end expects, or whose
fields have the wrong types is refused before any handler sees it (`BadMessage`): the channel's
owner logs it, drops it and carries on.

Requests that want an answer carry a `req` number, echoed by the reply (`ClaimResult`,
`SnapshotReply`, `ReloadResult`); a snapshot fans out from the master to every worker as
`StatsRequest`/`Stats` with the master's own `sid`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from srv.conf.model import ServerConfig
from srv.net.context import ClientQuery


class BadMessage(Exception):
    """A frame or message the receiving end refuses (it is dropped, never handled)."""


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every control message; `name` is the snake_case class name (`handle_<name>`)."""

    name: ClassVar[str] = "message"

    def __init_subclass__(cls) -> None:  # no super(): slots=True rebuilds the class
        cls.name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


# ---- worker -> master ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    counters: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ready(Message):
    pass


@dataclass(frozen=True, slots=True)
class Claim(Message):
    """Ask to become the publisher of `key` (answered by ClaimResult)."""

    req: int
    key: str


@dataclass(frozen=True, slots=True)
class Release(Message):
    key: str


@dataclass(frozen=True, slots=True)
class Snapshot(Message):
    """Ask for the whole server's figures (answered by SnapshotReply)."""

    req: int
    query: ClientQuery = ClientQuery()


@dataclass(frozen=True, slots=True)
class Stats(Message):
    """A worker's answer to StatsRequest: `WorkerContext.snapshot()`."""

    sid: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class KickRequest(Message):
    """Kick a client held by worker `slot` (routed by the master)."""

    slot: int
    client_id: str


@dataclass(frozen=True, slots=True)
class Reload(Message):
    """Reload the config (the HTTP raw API); answered by ReloadResult."""

    req: int


@dataclass(frozen=True, slots=True)
class Admit(Message):
    """May a new connection from `ip` stay, by the server's per_ip max_connections and
    connect_rate? Answered by AdmitResult; an admitted one is given back by Leave."""

    req: int
    ip: str


@dataclass(frozen=True, slots=True)
class Leave(Message):
    """A connection from `ip` the master admitted (Admit) has ended."""

    ip: str


@dataclass(frozen=True, slots=True)
class Ban(Message):
    """A worker banned `ip` for `seconds` (per_ip ban_after); the master tells every worker (Banned)."""

    ip: str
    seconds: float


@dataclass(frozen=True, slots=True)
class HlsVisit(Message):
    """A playlist request of HLS viewer `ctx`, owned by worker `slot`, reached this worker (which
    served it `sent` bytes since its last one): is it still there? Answered by HlsVisitResult."""

    req: int
    slot: int
    ctx: str
    sent: int


@dataclass(frozen=True, slots=True)
class HlsBytes(Message):
    """Segment bytes this worker sent to HLS viewers of worker `slot` ({ctx: bytes}), once a second."""

    slot: int
    sent: dict[str, int]


@dataclass(frozen=True, slots=True)
class HlsVisitAnswer(Message):
    """The owner's answer to HlsVisited, for the worker `origin` that asked (`state`: a
    `srv.app.hls_viewers.Visit` value)."""

    origin: int
    req: int
    state: str


@dataclass(frozen=True, slots=True)
class HlsWatch(Message):
    """This worker holds LL-HLS requests of stream `key` (`on`), or no longer (`not on`): the
    master sends it that stream's HlsChange."""

    key: str
    on: bool


@dataclass(frozen=True, slots=True)
class HlsChanged(Message):
    """The owner's LL-HLS writer changed stream `key` (`kind`: a `srv.app.hls_ll.PartEvent`
    kind: chunk, part, segment, ended); the master tells the workers that watch it."""

    key: str
    kind: str


# ---- master -> worker ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Streams(Message):
    """The whole registry (sent to a new worker): stream key -> owning slot."""

    table: dict[str, int]


@dataclass(frozen=True, slots=True)
class Published(Message):
    key: str
    slot: int


@dataclass(frozen=True, slots=True)
class Unpublished(Message):
    key: str
    slot: int


@dataclass(frozen=True, slots=True)
class ClaimResult(Message):
    req: int
    ok: bool
    owner: int | None


@dataclass(frozen=True, slots=True)
class StatsRequest(Message):
    sid: int
    query: ClientQuery = ClientQuery()


@dataclass(frozen=True, slots=True)
class SnapshotReply(Message):
    req: int
    workers: dict[int, dict[str, Any]]
    master: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kick(Message):
    client_id: str


@dataclass(frozen=True, slots=True)
class Config(Message):
    """A reloaded config; `listeners` (new listen specs) when their sockets ride along."""

    config: ServerConfig
    listeners: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class ReloadResult(Message):
    req: int
    ok: bool


@dataclass(frozen=True, slots=True)
class AdmitResult(Message):
    """`counter` is "" when admitted, else the refusal's (ip_connections, ip_rate) with `reason`."""

    req: int
    counter: str
    reason: str


@dataclass(frozen=True, slots=True)
class Banned(Message):
    """Refuse `ip` for `seconds` from now: a ban one worker decided, for the whole server."""

    ip: str
    seconds: float


@dataclass(frozen=True, slots=True)
class HlsVisited(Message):
    """HlsVisit, relayed to the viewer's owner; it answers HlsVisitAnswer."""

    origin: int
    req: int
    ctx: str
    sent: int


@dataclass(frozen=True, slots=True)
class HlsSent(Message):
    """HlsBytes, relayed to the viewers' owner."""

    sent: dict[str, int]


@dataclass(frozen=True, slots=True)
class HlsVisitResult(Message):
    req: int
    state: str


@dataclass(frozen=True, slots=True)
class HlsChange(Message):
    """HlsChanged, relayed to a worker that watches the stream; also the answer to HlsWatch
    (`kind` "watch"), so a change that came before the watch was known is read too."""

    key: str
    kind: str


TO_MASTER: tuple[type[Message], ...] = (Heartbeat, Ready, Claim, Release, Snapshot, Stats, KickRequest, Reload,
                                        Admit, Leave, Ban, HlsVisit, HlsVisitAnswer, HlsBytes, HlsWatch,
                                        HlsChanged)
TO_WORKER: tuple[type[Message], ...] = (Streams, Published, Unpublished, ClaimResult, StatsRequest,
                                        SnapshotReply, Kick, Config, ReloadResult, AdmitResult,
                                        Banned, HlsVisited, HlsVisitResult, HlsSent, HlsChange)

# ---- dispatch ------------------------------------------------------------------------------

def _checks(cls: type) -> list[tuple[str, tuple[type, ...]]]:
    """(field, accepted types) for every field annotated with classes (or a union of them);
    `Any` is taken as it comes."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds: list[type] = []
        for opt in typing.get_args(hint) if union else (hint,):
            base = typing.get_origin(opt) or opt
            if isinstance(base, type):
                kinds.append(base)
            else:
                kinds = []
                break
        if kinds:
            out.append((f.name, tuple(kinds)))
    return out


_CHECKS: dict[type, list[tuple[str, tuple[type, ...]]]] = {
    cls: _checks(cls) for cls in (*TO_MASTER, *TO_WORKER, ClientQuery)}


def check(msg: Message | ClientQuery) -> None:
    """Raise BadMessage when a field's value is not of its declared type (a bool is no int)."""
    for name, kinds in _CHECKS[type(msg)]:
        value = getattr(msg, name)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise BadMessage(f"{type(msg).__name__}.{name} is a {type(value).__name__}")
        if isinstance(value, ClientQuery):
            check(value)


Handlers = dict[type[Message], Callable[..., None]]


def handlers(obj: object, expected: tuple[type[Message], ...]) -> Handlers:
    """{message class: obj.handle_<name>} for every message `obj` must handle."""
    table: Handlers = {}
    for cls in expected:
        fn = getattr(obj, f"handle_{cls.name}", None)
        if fn is None:
            raise TypeError(f"{type(obj).__name__} has no handle_{cls.name}")
        table[cls] = fn
    return table


def accept(table: Handlers, msg: object) -> Callable[..., None]:
    """The handler of `msg`; BadMessage when this end does not take `msg` as it is."""
    if isinstance(msg, BadMessage):
        raise msg
    if not isinstance(msg, Message):
        raise BadMessage(f"not a message: {type(msg).__name__}")
    fn = table.get(type(msg))
    if fn is None:
        raise BadMessage(f"unexpected message {msg.name}")
    check(msg)
    return fn
