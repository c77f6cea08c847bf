"""The stream registry: which worker publishes which stream, server-wide.

A worker claims a stream before it accepts a publisher; the claim is granted when nobody holds
the stream, or when the same worker already does (a republish). That keeps one publisher per
stream across all workers. The arbiter tells every worker about each change (`Published`,
`Unpublished`), so a player landing on another worker knows whom to pull from.
"""

from __future__ import annotations


class StreamRegistry:
    def __init__(self) -> None:
        self.owners: dict[str, int] = {}  # "vhost/app/stream" -> owning slot

    def __len__(self) -> int:
        return len(self.owners)

    def table(self) -> dict[str, int]:
        return dict(self.owners)

    def claim(self, key: str, slot: int) -> int | None:
        """Grant `key` to `slot`; returns the slot that holds it instead, or None when granted."""
        owner = self.owners.get(key)
        if owner is not None and owner != slot:
            return owner
        self.owners[key] = slot
        return None

    def release(self, key: str, slot: int) -> bool:
        """Drop `slot`'s claim on `key`; False when `slot` did not hold it."""
        if self.owners.get(key) != slot:
            return False
        del self.owners[key]
        return True

    def release_all(self, slot: int) -> list[str]:
        """Drop every stream of a worker that is gone; returns their keys."""
        lost = [k for k, s in self.owners.items() if s == slot]
        for key in lost:
            del self.owners[key]
        return lost
