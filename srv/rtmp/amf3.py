"""AMF3 decoding (Adobe AMF3 spec, 2013), enough to accept Flash-era clients.

RTMP carries AMF3 in two places: commands/data of type 17/15 (a 0x00 byte then
AMF0 values that may switch to AMF3 with marker 0x11) and, rarely, pure AMF3
values. Decoded Python types: undefined -> :data:`amf_values.UNDEFINED`, null ->
``None``, booleans, integers (signed 29-bit) -> ``int``, doubles -> ``float``,
strings -> ``str``, arrays -> ``list`` (dense only) or ``dict`` (with an
associative part; dense items keyed ``"0"``, ``"1"``...), objects -> ``dict``,
dates -> :class:`amf_values.AmfDate`, byte arrays -> ``bytes``, xml -> ``str``.

Invariant: bad input raises :class:`ProtocolError` only; reference tables are
per :func:`decode_one` call (an AMF0 switch starts fresh tables, as the AMF0
spec requires); nesting is bounded by :data:`amf_values.MAX_DEPTH`.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from .amf_values import MAX_DEPTH, UNDEFINED, AmfDate, XmlDocument
from .errors import ProtocolError

UNDEFINED_MARKER: Final = 0x00
NULL: Final = 0x01
FALSE: Final = 0x02
TRUE: Final = 0x03
INTEGER: Final = 0x04
DOUBLE: Final = 0x05
STRING: Final = 0x06
XML_DOC: Final = 0x07
DATE: Final = 0x08
ARRAY: Final = 0x09
OBJECT: Final = 0x0A
XML: Final = 0x0B
BYTE_ARRAY: Final = 0x0C

_DOUBLE = struct.Struct(">d")


class _Traits:
    __slots__ = ("dynamic", "members")

    def __init__(self, dynamic: bool, members: list[str]) -> None:
        self.dynamic = dynamic
        self.members = members


class _Reader:
    __slots__ = ("data", "pos", "strings", "objects", "traits")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.strings: list[str] = []
        self.objects: list[Any] = []
        self.traits: list[_Traits] = []

    def need(self, n: int) -> int:
        start = self.pos
        if start + n > len(self.data):
            raise ProtocolError(f"AMF3 truncated: need {n} bytes at offset {start}")
        self.pos = start + n
        return start

    def u29(self) -> int:
        result = 0
        for i in range(4):
            byte = self.data[self.need(1)]
            if i == 3:
                return (result << 8) | byte
            result = (result << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def raw(self, n: int) -> bytes:
        start = self.need(n)
        return bytes(self.data[start : start + n])

    def string(self) -> str:
        ref = self.u29()
        if not ref & 1:
            text: str = self._ref(self.strings, ref >> 1, "string")
            return text
        text = self.raw(ref >> 1).decode("utf-8", "replace")
        if text:  # the empty string is never put in the table
            self.strings.append(text)
        return text

    @staticmethod
    def _ref(table: list[Any], index: int, what: str) -> Any:
        if index >= len(table):
            raise ProtocolError(f"AMF3 {what} reference {index} out of range")
        return table[index]

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"AMF3 nesting deeper than {MAX_DEPTH}")
        marker = self.data[self.need(1)]
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == NULL:
            return None
        if marker == FALSE:
            return False
        if marker == TRUE:
            return True
        if marker == INTEGER:
            n = self.u29()
            return n - (1 << 29) if n & (1 << 28) else n
        if marker == DOUBLE:
            return _DOUBLE.unpack_from(self.data, self.need(8))[0]
        if marker == STRING:
            return self.string()
        if marker in (XML_DOC, XML, BYTE_ARRAY):
            ref = self.u29()
            if not ref & 1:
                return self._ref(self.objects, ref >> 1, "object")
            blob = self.raw(ref >> 1)
            item: Any = (
                blob if marker == BYTE_ARRAY else XmlDocument(blob.decode("utf-8", "replace"))
            )
            self.objects.append(item)
            return item
        if marker == DATE:
            ref = self.u29()
            if not ref & 1:
                return self._ref(self.objects, ref >> 1, "object")
            date = AmfDate(_DOUBLE.unpack_from(self.data, self.need(8))[0], 0)
            self.objects.append(date)
            return date
        if marker == ARRAY:
            return self.array(depth)
        if marker == OBJECT:
            return self.object(depth)
        raise ProtocolError(f"AMF3 unsupported marker 0x{marker:02x} at offset {self.pos - 1}")

    def array(self, depth: int) -> Any:
        ref = self.u29()
        if not ref & 1:
            return self._ref(self.objects, ref >> 1, "object")
        count = ref >> 1
        if count > len(self.data) - self.pos:
            raise ProtocolError(f"AMF3 array count {count} exceeds data")
        assoc: dict[str, Any] = {}
        index = len(self.objects)
        self.objects.append(assoc)
        while True:
            key = self.string()
            if not key:
                break
            assoc[key] = self.value(depth + 1)
        dense = [self.value(depth + 1) for _ in range(count)]
        if assoc:
            assoc.update((str(i), item) for i, item in enumerate(dense))
            return assoc
        self.objects[index] = dense
        return dense

    def object(self, depth: int) -> dict[str, Any]:
        ref = self.u29()
        if not ref & 1:
            found = self._ref(self.objects, ref >> 1, "object")
            return found if isinstance(found, dict) else {"value": found}
        if not ref & 2:
            traits = self._ref(self.traits, ref >> 2, "traits")
        else:
            if ref & 4:
                raise ProtocolError("AMF3 externalizable objects are not supported")
            dynamic = bool(ref & 8)
            count = ref >> 4
            if count > len(self.data) - self.pos:
                raise ProtocolError(f"AMF3 sealed member count {count} exceeds data")
            self.string()  # class name: nothing to map it to
            traits = _Traits(dynamic, [self.string() for _ in range(count)])
            self.traits.append(traits)
        obj: dict[str, Any] = {}
        self.objects.append(obj)
        for name in traits.members:
            obj[name] = self.value(depth + 1)
        if traits.dynamic:
            while True:
                key = self.string()
                if not key:
                    break
                obj[key] = self.value(depth + 1)
        return obj


def decode_one(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """Decode one AMF3 value at ``offset``; return it and the offset just past it."""
    reader = _Reader(data, offset)
    return reader.value(0), reader.pos


def decode(data: bytes | bytearray | memoryview) -> list[Any]:
    """Decode every AMF3 value in ``data`` (one reference table for the whole buffer)."""
    reader = _Reader(data, 0)
    values: list[Any] = []
    while reader.pos < len(data):
        values.append(reader.value(0))
    return values
