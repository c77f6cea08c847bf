"""The roles objects built outside the hub play for it: who publishes into a source, a pull
from another worker, an edge's pull from an origin (a forwarder is
`srv.app.source.Forwarding`). Protocols, so `srv/app` names what it needs of them (and mypy
checks it) without importing `srv/net`, which builds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from srv.app.source import LiveSource


class Publisher(Protocol):
    """What feeds a source: a local publishing client, or a pull (then the source is no origin).

    The hub compares publishers by identity; `closed` says the client left while the hub was
    still asking the master for the stream."""

    closed: bool


class PullHandle(Publisher, Protocol):
    """A pull of one stream from the worker `slot` that owns its publisher."""

    slot: int
    source: LiveSource

    def stop(self) -> None: ...


class EdgeHandle(Publisher, Protocol):
    """An edge's pull of one stream from an origin (srv.net.edge.EdgePull)."""

    source: LiveSource

    def stop(self) -> None: ...
    def reconfigure(self) -> None: ...
    def offer_params(self, params: dict[str, str]) -> None: ...
    def stats(self) -> dict[str, Any]: ...
