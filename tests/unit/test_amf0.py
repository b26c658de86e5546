"""AMF0: known byte strings, round trips, limits and malformed input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liverelay.media import amf0
from liverelay.media.amf0 import UNDEFINED, AMF0Error, AmfDate, EcmaArray, TypedObject


def test_known_encodings() -> None:
    assert amf0.encode(1.0) == b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"
    assert amf0.encode(True, False) == b"\x01\x01\x01\x00"
    assert amf0.encode("connect") == b"\x02\x00\x07connect"
    assert amf0.encode(None) == b"\x05"
    assert amf0.encode(UNDEFINED) == b"\x06"
    assert amf0.encode({"a": 1}) == b"\x03\x00\x01a\x00" + b"\x3f\xf0" + b"\x00" * 6 + b"\x00\x00\x09"
    assert amf0.encode(EcmaArray(x=None)) == b"\x08\x00\x00\x00\x01\x00\x01x\x05\x00\x00\x09"
    assert amf0.encode([1.0, "a"]) == b"\x0a\x00\x00\x00\x02" + amf0.encode(1.0) + amf0.encode("a")
    assert amf0.encode(AmfDate(0.0)) == b"\x0b" + b"\x00" * 10


def test_known_connect_command_decodes() -> None:
    # connect(1, {app: "live", tcUrl: "rtmp://h/live"}) as a client writes it.
    data = (
        b"\x02\x00\x07connect"
        b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"
        b"\x03\x00\x03app\x02\x00\x04live"
        b"\x00\x05tcUrl\x02\x00\x0drtmp://h/live"
        b"\x00\x00\x09"
    )
    assert amf0.decode_all(data) == ["connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"}]


def test_long_string_round_trip() -> None:
    s = "x" * 70_000
    data = amf0.encode(s)
    assert data[0] == amf0.LONG_STRING
    assert amf0.decode_all(data) == [s]


def test_typed_object_xml_and_date() -> None:
    obj = TypedObject("Cls", a="b")
    out = amf0.decode_all(amf0.encode(obj, AmfDate(1234.0, 0)))
    assert isinstance(out[0], TypedObject) and out[0].class_name == "Cls" and out[0] == {"a": "b"}
    assert out[1] == AmfDate(1234.0, 0)
    assert amf0.decode_all(b"\x0f\x00\x00\x00\x03<a>") == ["<a>"]


def test_ecma_array_type_kept_and_count_ignored() -> None:
    # Encoders often write a wrong count; the object end marker is what counts.
    data = b"\x08\x00\x00\x00\x09\x00\x01k\x01\x01\x00\x00\x09"
    (value,) = amf0.decode_all(data)
    assert isinstance(value, EcmaArray) and value == {"k": True}


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # truncated number
        b"\x02\x00\x05ab",  # truncated string
        b"\x03\x00\x01a\x05",  # object without end
        b"\x0a\xff\xff\xff\xff",  # strict array count beyond the data
        b"\x11\x06",  # AMF3 switch
        b"\x07\x00\x01",  # reference
        b"\x04",  # movieclip
        b"\xee",  # unknown marker
        b"\x0b" + b"\x7f\xf8" + b"\x00" * 8,  # NaN date
    ],
)
def test_malformed_raises_amf0error(data: bytes) -> None:
    with pytest.raises(AMF0Error):
        amf0.decode_all(data)


def test_nesting_depth_limit() -> None:
    deep = b"\x0a\x00\x00\x00\x01" * (amf0.MAX_DEPTH + 5) + b"\x05"
    with pytest.raises(AMF0Error, match="deep"):
        amf0.decode_all(deep)
    nested: list[object] = []
    for _ in range(amf0.MAX_DEPTH + 5):
        nested = [nested]
    with pytest.raises(AMF0Error):
        amf0.encode(nested)


def test_unencodable() -> None:
    with pytest.raises(AMF0Error):
        amf0.encode(object())


def test_decode_one_offset() -> None:
    data = amf0.encode("a", 2.0)
    v, off = amf0.decode_one(data)
    assert v == "a"
    assert amf0.decode_one(data, off) == (2.0, len(data))


_keys = st.text(max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.builds(AmfDate, st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**15), 2**15 - 1))
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_keys, children, max_size=4)
        | st.dictionaries(_keys, children, max_size=4).map(EcmaArray)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_values, max_size=4))
def test_round_trip(values: list[object]) -> None:
    decoded = amf0.decode_all(amf0.encode(*values))
    assert decoded == values
    assert amf0.encode(*decoded) == amf0.encode(*values)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_only_amf0error(data: bytes) -> None:
    try:
        amf0.decode_all(data)
    except AMF0Error:
        pass


def test_float_is_number() -> None:
    assert math.isinf(amf0.decode_all(amf0.encode(float("inf")))[0])
