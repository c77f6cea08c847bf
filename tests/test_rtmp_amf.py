"""AMF0/AMF3 decoding and encoding: round trips, references, limits, bad input."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from srv.rtmp import amf0, amf3
from srv.rtmp.amf0 import UNDEFINED, AmfDate, EcmaArray, XmlDocument
from srv.rtmp.errors import ProtocolError

NESTED: list[Any] = [
    "connect",
    1.0,
    {
        "app": "live",
        "meta": EcmaArray(
            {"width": 1280.0, "tracks": [1.0, "two", [3.0, EcmaArray({"deep": True})]]}
        ),
        "none": None,
        "when": AmfDate(1700000000000.0, 0),
        "title": "x" * 70000,  # long string
        "xml": XmlDocument("<a/>"),
    },
    UNDEFINED,
    False,
    "h\u00e9llo",
    -3.5,
]


def test_amf0_round_trip_preserves_nested_values_and_their_types() -> None:
    decoded = amf0.decode(amf0.encode(*NESTED))
    assert decoded == NESTED
    assert type(decoded[2]["meta"]) is EcmaArray
    assert type(decoded[2]["meta"]["tracks"][2][1]) is EcmaArray
    assert type(decoded[2]["xml"]) is XmlDocument
    assert decoded[3] is UNDEFINED


def test_amf0_long_string_uses_long_string_marker() -> None:
    encoded = amf0.encode("y" * 65536)
    assert encoded[0] == amf0.LONG_STRING
    assert amf0.decode(encoded) == ["y" * 65536]
    assert amf0.encode("y" * 65535)[0] == amf0.STRING


def test_amf0_ints_and_bools_encode_as_number_and_boolean() -> None:
    assert amf0.encode(True) == b"\x01\x01"
    assert amf0.encode(3) == b"\x00" + struct.pack(">d", 3.0)
    assert amf0.decode(amf0.encode(3, True)) == [3.0, True]


def test_amf0_every_truncation_raises_protocol_error() -> None:
    encoded = amf0.encode(*NESTED[:3])
    for cut in range(1, len(encoded)):
        try:
            values = amf0.decode(encoded[:cut])
        except ProtocolError:
            continue
        # a cut between two top-level values is a valid shorter list
        assert values == NESTED[: len(values)]


def test_amf0_decode_one_stops_before_trailing_bytes() -> None:
    encoded = amf0.encode("onMetaData") + b"\xff\xfe"
    value, offset = amf0.decode_one(encoded, 0)
    assert value == "onMetaData"
    assert encoded[offset:] == b"\xff\xfe"


def test_amf0_reference_resolves_to_earlier_object() -> None:
    data = b"\x03\x00\x01a\x00" + struct.pack(">d", 1.0) + b"\x00\x00\x09" + b"\x07\x00\x00"
    first, second = amf0.decode(data)
    assert first == {"a": 1.0}
    assert second is first


def test_amf0_reference_out_of_range_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="reference 3"):
        amf0.decode(b"\x07\x00\x03")


def test_amf0_typed_object_decodes_to_dict() -> None:
    data = b"\x10\x00\x03Foo\x00\x01k\x02\x00\x01v\x00\x00\x09"
    assert amf0.decode(data) == [{"k": "v"}]


def test_amf0_date_decodes_with_timezone() -> None:
    data = b"\x0b" + struct.pack(">dh", 1234.0, 60)
    assert amf0.decode(data) == [AmfDate(1234.0, 60)]


def test_amf0_ecma_array_without_end_marker_is_tolerated_at_end_of_data() -> None:
    data = b"\x08\x00\x00\x00\x01\x00\x01w\x00" + struct.pack(">d", 2.0)
    assert amf0.decode(data) == [{"w": 2.0}]


def test_amf0_nesting_bomb_is_rejected() -> None:
    bomb = b"\x0a\x00\x00\x00\x01" * 10000 + b"\x05"
    with pytest.raises(ProtocolError, match="nesting"):
        amf0.decode(bomb)


@pytest.mark.parametrize("data", [b"\x0e", b"\x20", b"\x04", b"\x0a\xff\xff\xff\xff\x05"])
def test_amf0_bad_marker_or_absurd_count_is_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        amf0.decode(data)


def test_amf0_invalid_utf8_is_replaced_not_fatal() -> None:
    assert amf0.decode(b"\x02\x00\x02\xff\xfe") == ["\ufffd\ufffd"]


def test_amf0_encode_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        amf0.encode(object())


# --- AMF3 ---------------------------------------------------------------------


def test_amf3_scalars_and_u29_integers() -> None:
    data = (
        b"\x00\x01\x02\x03"  # undefined null false true
        + b"\x04\x05"  # 5
        + b"\x04\x82\x2c"  # 300 (two-byte U29)
        + b"\x04\xff\xff\xff\xff"  # -1 (29-bit two's complement)
        + b"\x05"
        + struct.pack(">d", 2.5)
    )
    assert amf3.decode(data) == [UNDEFINED, None, False, True, 5, 300, -1, 2.5]


def test_amf3_strings_use_the_reference_table() -> None:
    assert amf3.decode(b"\x06\x05ab\x06\x00\x06\x01") == ["ab", "ab", ""]


def test_amf3_arrays_dense_and_associative() -> None:
    assert amf3.decode(b"\x09\x05\x01\x04\x01\x04\x02") == [[1, 2]]
    assert amf3.decode(b"\x09\x03\x03k\x04\x07\x01\x04\x01") == [{"k": 7, "0": 1}]


def test_amf3_objects_dynamic_sealed_and_trait_references() -> None:
    dynamic = b"\x0a\x0b\x01\x03a\x04\x01\x01"
    sealed = b"\x0a\x13\x01\x03x\x04\x07"
    sealed_again = b"\x0a\x05\x04\x08"  # traits reference 1 (the sealed traits above)
    assert amf3.decode(dynamic + sealed + sealed_again) == [{"a": 1}, {"x": 7}, {"x": 8}]


def test_amf3_date_and_byte_array() -> None:
    data = b"\x08\x01" + struct.pack(">d", 99.0) + b"\x0c\x07abc"
    assert amf3.decode(data) == [AmfDate(99.0, 0), b"abc"]


def test_amf0_avmplus_switch_decodes_one_amf3_value() -> None:
    data = amf0.encode("connect", 1.0) + b"\x11\x0a\x0b\x01\x07app\x06\x09live\x01" + b"\x05"
    assert amf0.decode(data) == ["connect", 1.0, {"app": "live"}, None]


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x07\x01", b"\x06\x02", b"\x0a\x02", b"\x04\xff", b"\x10", b"\x09\xff\xff\xff\x7f"],
)
def test_amf3_bad_input_is_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        amf3.decode(data)
