"""The values AMF0 and AMF3 share beyond Python's own types: undefined, ECMA arrays, xml, dates.

Both codecs import them from here (and ``amf0`` re-exports them), so ``amf0`` may use ``amf3`` for
the AVM+ switch marker without an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

#: Deepest nesting of objects/arrays accepted; real metadata nests 2-3 levels.
MAX_DEPTH: Final = 64


class _Undefined:
    """The AMF ``undefined`` value (distinct from ``null``/``None``)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()


class EcmaArray(dict[str, Any]):
    """An associative array; encodes back as ECMA array (``onMetaData`` uses it)."""


class XmlDocument(str):
    """An XML document string; encodes back with the xml-document marker."""


@dataclass(frozen=True, slots=True)
class AmfDate:
    """AMF date: milliseconds since the epoch (UTC) and a timezone field (unused)."""

    timestamp_ms: float
    tz: int = 0
