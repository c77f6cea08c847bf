"""The directive registry: what each directive means, declared once.

A ``Spec`` says where a directive may appear (contexts such as ``main``, ``vhost``,
``vhost.play``), the shape of its arguments, its default, whether a reload can change it,
and which model field it fills.  The declarations themselves live in ``directives.py``,
grouped by feature next to the dataclass each group builds (``SECTIONS``).

A context is the dotted path of enclosing block names with args dropped: ``listen`` inside
``http_api { }`` is in context ``http_api``; ``gop_cache`` inside ``vhost x { play { } }``
is in ``vhost.play``.  The registry is read-only after import.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from srv.conf.srs_known import SRS_KNOWN
from srv.conf.values import Converter

MAIN = "main"


@dataclass(frozen=True)
class Spec:
    """One directive in one or more contexts.

    ``nargs`` is ``(min, max)``, ``max=None`` for no limit.  A simple directive with
    ``max == 1`` fills its field with one converted value, otherwise with a tuple.  A block's
    args (``vhost name``, ``forward pattern``) fill ``arg_field`` of the section it builds.
    ``multiple`` directives may repeat and fill a tuple; any other repetition keeps the
    first one, as SRS does, with a warning. ``join``, when given, makes the field's value of
    the converted arguments together (``listen 1935 proxy_protocol;``); a ValueError it raises
    is reported at the directive.
    """

    name: str
    contexts: tuple[str, ...]
    convert: Converter | None
    nargs: tuple[int, int | None] = (1, 1)
    block: bool = False
    default: Any = None
    reloadable: bool = True
    field: str = ""
    arg_field: str = ""
    multiple: bool = False
    env: bool = True
    env_aliases: tuple[str, ...] = ()
    example: str = ""
    doc: str = ""
    join: Callable[[list[Any]], Any] | None = None

    @property
    def target(self) -> str:
        """The model field this directive fills."""
        return self.field or self.name

    def child_context(self, context: str) -> str:
        return self.name if context == MAIN else f"{context}.{self.name}"

    def shape(self) -> str:
        """Arguments in words, for messages: ``exactly 1 argument``, ``1 or more arguments``."""
        low, high = self.nargs
        if high == low:
            return f"exactly {low} argument{'s' if low != 1 else ''}"
        if high is None:
            return f"{low} or more arguments"
        return f"{low} to {high} arguments"


class Registry:
    """Specs indexed by ``(context, name)``, plus the block contexts and their dataclasses."""

    def __init__(self, specs: Iterable[Spec], sections: dict[str, type[Any]]) -> None:
        self.specs: tuple[Spec, ...] = tuple(specs)
        self.sections = dict(sections)
        self._by_place: dict[tuple[str, str], Spec] = {}
        for spec in self.specs:
            for context in spec.contexts:
                key = (context, spec.name)
                if key in self._by_place:
                    raise ValueError(f"directive {spec.name!r} declared twice in {context}")
                self._by_place[key] = spec
                if spec.block and spec.child_context(context) not in self.sections:
                    raise ValueError(f"block {spec.name!r} in {context} has no section class")

    def lookup(self, context: str, name: str) -> Spec | None:
        return self._by_place.get((context, name))

    def contexts_of(self, name: str) -> tuple[str, ...]:
        """Every context where srv implements ``name``."""
        return tuple(c for (c, n) in self._by_place if n == name)

    def names_in(self, context: str) -> tuple[str, ...]:
        return tuple(n for (c, n) in self._by_place if c == context)

    def places(self) -> tuple[tuple[str, Spec], ...]:
        """``(context, spec)`` for every declared place, in declaration order."""
        return tuple((c, s) for (c, _), s in self._by_place.items())

    def by_field(self, context: str, field: str) -> Spec | None:
        """The spec filling ``field`` of the section built for ``context``."""
        for (c, _), spec in self._by_place.items():
            if c == context and spec.target == field:
                return spec
        return None

    def suggest(self, context: str, name: str) -> str | None:
        """The closest directive name, preferring ones valid in ``context``."""
        local = set(self.names_in(context)) | SRS_KNOWN.get(context, frozenset())
        match = difflib.get_close_matches(name, sorted(local), n=1, cutoff=0.6)
        if match:
            return match[0]
        everywhere = {n for (_, n) in self._by_place}
        match = difflib.get_close_matches(name, sorted(everywhere), n=1, cutoff=0.75)
        return match[0] if match else None
