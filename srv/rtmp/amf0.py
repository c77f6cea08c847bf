"""AMF0 encoding and decoding (Action Message Format 0, Adobe spec 2006).

Used for RTMP commands (message type 20/17) and script data (18/15, e.g.
``onMetaData``). Invariants:

* :func:`decode` never raises anything but :class:`ProtocolError` on bad input
  (truncation, unknown marker, reference out of range, nesting deeper than
  :data:`MAX_DEPTH` -- a guard against nesting bombs blowing the C stack).
* Strings are decoded leniently (invalid UTF-8 is replaced, not fatal): a
  publisher with a Latin-1 stream title must not be disconnected.
* :func:`encode` maps Python types to markers one way only: ``dict`` -> object,
  :class:`EcmaArray` -> ECMA array, ``list``/``tuple`` -> strict array,
  ``str`` -> string or long string, ``bool`` -> boolean, ``int``/``float`` ->
  number, ``None`` -> null, :data:`UNDEFINED` -> undefined, :class:`AmfDate`
  -> date, :class:`XmlDocument` -> xml document.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from . import amf3
from .amf_values import MAX_DEPTH, UNDEFINED, AmfDate, EcmaArray, XmlDocument
from .errors import ProtocolError

__all__ = ["MAX_DEPTH", "UNDEFINED", "AmfDate", "EcmaArray", "XmlDocument", "decode", "decode_one", "encode"]

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
MOVIECLIP: Final = 0x04
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED: Final = 0x0D
RECORDSET: Final = 0x0E
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10
AVMPLUS: Final = 0x11

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class _Reader:
    """Cursor over one AMF0 buffer, with the reference table of complex values."""

    __slots__ = ("data", "pos", "refs")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.refs: list[Any] = []

    def need(self, n: int) -> int:
        start = self.pos
        end = start + n
        if end > len(self.data):
            raise ProtocolError(f"AMF0 truncated: need {n} bytes at offset {start}")
        self.pos = end
        return start

    def utf8(self, n: int) -> str:
        start = self.need(n)
        return bytes(self.data[start : start + n]).decode("utf-8", "replace")

    def short_string(self) -> str:
        (n,) = _U16.unpack_from(self.data, self.need(2))
        return self.utf8(n)

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"AMF0 nesting deeper than {MAX_DEPTH}")
        marker = self.data[self.need(1)]
        if marker == NUMBER:
            return _DOUBLE.unpack_from(self.data, self.need(8))[0]
        if marker == BOOLEAN:
            return self.data[self.need(1)] != 0
        if marker == STRING:
            return self.short_string()
        if marker == OBJECT:
            obj: dict[str, Any] = {}
            self.refs.append(obj)
            self.properties(obj, depth, lenient_end=False)
            return obj
        if marker == NULL:
            return None
        if marker in (UNDEFINED_MARKER, UNSUPPORTED):
            return UNDEFINED
        if marker == REFERENCE:
            (index,) = _U16.unpack_from(self.data, self.need(2))
            if index >= len(self.refs):
                raise ProtocolError(f"AMF0 reference {index} out of range")
            return self.refs[index]
        if marker == ECMA_ARRAY:
            self.need(4)  # the count is advisory; encoders get it wrong, so read to the end marker
            ecma = EcmaArray()
            self.refs.append(ecma)
            self.properties(ecma, depth, lenient_end=True)
            return ecma
        if marker == STRICT_ARRAY:
            (count,) = _U32.unpack_from(self.data, self.need(4))
            # each element takes at least one byte: reject absurd counts before allocating
            if count > len(self.data) - self.pos:
                raise ProtocolError(f"AMF0 strict array count {count} exceeds data")
            items: list[Any] = []
            self.refs.append(items)
            for _ in range(count):
                items.append(self.value(depth + 1))
            return items
        if marker == DATE:
            ms, tz = _DATE.unpack_from(self.data, self.need(10))
            return AmfDate(ms, tz)
        if marker == LONG_STRING:
            (n,) = _U32.unpack_from(self.data, self.need(4))
            return self.utf8(n)
        if marker == XML_DOCUMENT:
            (n,) = _U32.unpack_from(self.data, self.need(4))
            return XmlDocument(self.utf8(n))
        if marker == TYPED_OBJECT:
            self.short_string()  # class name: we have no classes to map it to
            typed: dict[str, Any] = {}
            self.refs.append(typed)
            self.properties(typed, depth, lenient_end=False)
            return typed
        if marker == AVMPLUS:

            value, self.pos = amf3.decode_one(self.data, self.pos)
            return value
        raise ProtocolError(f"AMF0 unknown marker 0x{marker:02x} at offset {self.pos - 1}")

    def properties(self, target: dict[str, Any], depth: int, lenient_end: bool) -> None:
        data = self.data
        while True:
            if lenient_end and self.pos == len(data):
                return  # some encoders end onMetaData's ECMA array without the end marker
            key = self.short_string()
            if not key and self.pos < len(data) and data[self.pos] == OBJECT_END:
                self.pos += 1
                return
            target[key] = self.value(depth + 1)


def decode_one(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """Decode one value at ``offset``; return it and the offset just past it."""
    reader = _Reader(data, offset)
    return reader.value(0), reader.pos


def decode(data: bytes | bytearray | memoryview) -> list[Any]:
    """Decode every value in ``data`` (references resolve across the whole buffer)."""
    reader = _Reader(data, 0)
    values: list[Any] = []
    end = len(data)
    while reader.pos < end:
        values.append(reader.value(0))
    return values


def _encode_string_body(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"AMF0 property name too long ({len(raw)} bytes)")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(out: bytearray, mapping: dict[str, Any], depth: int) -> None:
    for key, item in mapping.items():
        _encode_string_body(out, str(key))
        _encode_value(out, item, depth + 1)
    out += b"\x00\x00\x09"


def _encode_value(out: bytearray, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"AMF0 value nested deeper than {MAX_DEPTH}")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += b"\x01\x01" if value else b"\x01\x00"
    elif isinstance(value, (int, float)):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, XmlDocument):
        raw = value.encode("utf-8")
        out.append(XML_DOCUMENT)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth)
    elif isinstance(value, (list, tuple)):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_value(out, item, depth + 1)
    elif isinstance(value, AmfDate):
        out.append(DATE)
        out += _DATE.pack(value.timestamp_ms, value.tz)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode(*values: Any) -> bytes:
    """Encode ``values`` back to back (a command is name, transaction id, object, args)."""
    out = bytearray()
    for value in values:
        _encode_value(out, value, 0)
    return bytes(out)
