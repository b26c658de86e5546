"""AMF0 (Action Message Format 0): the value encoding of RTMP commands and FLV metadata.

Python mapping: number <-> float (ints are encoded as numbers), boolean <-> bool,
string/long string <-> str, object <-> dict, ECMA array <-> EcmaArray (a dict),
strict array <-> list, null <-> None, undefined <-> UNDEFINED, date <-> AmfDate,
typed object -> TypedObject (a dict with `class_name`), XML document -> str.
Decoding is bounded: nesting depth, the number of values per object/array and the total
number of values per decode (`max_elements`) limit the work whatever the input length:
a hostile payload fails fast with AMF0Error.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
MOVIECLIP = 0x04  # reserved, never valid on the wire
NULL = 0x05
UNDEFINED_MARKER = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
UNSUPPORTED = 0x0D
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10
AVMPLUS = 0x11  # switch to AMF3

MAX_DEPTH = 32
MAX_ITEMS = 65_536  # per object/array: enough for any real metadata, bounds hostile input
# Values per decode call (every nested value counts): the CPU a decode may take is linear
# in this, not in the input length. RTMP sessions pass a much smaller figure.
MAX_ELEMENTS = 65_536

_NUM = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class AMF0Error(ValueError):
    """The bytes are not valid AMF0 (or exceed a limit), or a value cannot be encoded."""


class _Undefined:
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED = _Undefined()


class EcmaArray(dict[str, Any]):
    """An associative array; encoded with marker 0x08 (what onMetaData usually uses)."""


class TypedObject(dict[str, Any]):
    """An object with a registered class name (marker 0x10)."""

    def __init__(self, class_name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.class_name = class_name


@dataclass(frozen=True)
class AmfDate:
    """Milliseconds since the Unix epoch; `tz` is the (unused, reserved) time zone field."""

    ms: float
    tz: int = 0


# ---------------------------------------------------------------- encoding


def _enc_str_body(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise AMF0Error("object key longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def _enc_props(d: dict[Any, Any], out: list[bytes], depth: int) -> None:
    for key, value in d.items():
        out.append(_enc_str_body(str(key)))
        _enc(value, out, depth + 1)
    out.append(b"\x00\x00\x09")


def _enc(value: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AMF0Error("value nested too deeply")
    if value is None:
        out.append(b"\x05")
    elif value is UNDEFINED:
        out.append(b"\x06")
    elif isinstance(value, bool):
        out.append(b"\x01\x01" if value else b"\x01\x00")
    elif isinstance(value, int | float):
        out.append(b"\x00" + _NUM.pack(float(value)))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(b"\x02" + _U16.pack(len(raw)) + raw)
        else:
            out.append(b"\x0c" + _U32.pack(len(raw)) + raw)
    elif isinstance(value, AmfDate):
        out.append(b"\x0b" + _DATE.pack(float(value.ms), value.tz))
    elif isinstance(value, TypedObject):
        out.append(b"\x10" + _enc_str_body(value.class_name))
        _enc_props(value, out, depth)
    elif isinstance(value, EcmaArray):
        out.append(b"\x08" + _U32.pack(len(value)))
        _enc_props(value, out, depth)
    elif isinstance(value, dict):
        out.append(b"\x03")
        _enc_props(value, out, depth)
    elif isinstance(value, list | tuple):
        out.append(b"\x0a" + _U32.pack(len(value)))
        for item in value:
            _enc(item, out, depth + 1)
    else:
        raise AMF0Error(f"cannot encode {type(value).__name__} as AMF0")


def encode(*values: Any) -> bytes:
    """Encode values one after another (a command is name, transaction id, args...)."""
    out: list[bytes] = []
    for v in values:
        _enc(v, out, 0)
    return b"".join(out)


# ---------------------------------------------------------------- decoding


class _Decoder:
    __slots__ = ("data", "left", "max_depth", "pos")

    def __init__(self, data: bytes, max_elements: int, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.left = max_elements  # values this decode may still produce
        self.max_depth = max_depth

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise AMF0Error("truncated AMF0 value")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise AMF0Error("truncated AMF0 value")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def short_str(self) -> str:
        (n,) = _U16.unpack(self.take(2))
        return self._utf8(self.take(n))

    @staticmethod
    def _utf8(raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            # Some encoders put Latin-1 in metadata strings; keep the value rather than fail.
            return raw.decode("latin-1")

    def props(self, target: dict[str, Any], depth: int) -> None:
        for _ in range(MAX_ITEMS + 1):
            key = self.short_str()
            if key == "" and self.pos < len(self.data) and self.data[self.pos] == OBJECT_END:
                self.pos += 1
                return
            if len(target) >= MAX_ITEMS:
                break
            target[key] = self.value(depth + 1)
        raise AMF0Error("object has too many properties")

    def value(self, depth: int = 0) -> Any:
        if depth > self.max_depth:
            raise AMF0Error(f"AMF0 value nested deeper than {self.max_depth}")
        self.left -= 1
        if self.left < 0:
            raise AMF0Error("too many AMF0 values in one message")
        marker = self.u8()
        if marker == NUMBER:
            return _NUM.unpack(self.take(8))[0]
        if marker == BOOLEAN:
            return self.u8() != 0
        if marker == STRING:
            return self.short_str()
        if marker == OBJECT:
            obj: dict[str, Any] = {}
            self.props(obj, depth)
            return obj
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == ECMA_ARRAY:
            self.take(4)  # the count is advisory; many encoders get it wrong
            arr = EcmaArray()
            self.props(arr, depth)
            return arr
        if marker == STRICT_ARRAY:
            (count,) = _U32.unpack(self.take(4))
            # Every element takes at least one byte: a count beyond the data is a lie.
            if count > MAX_ITEMS or count > len(self.data) - self.pos:
                raise AMF0Error("strict array count exceeds the data")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == DATE:
            ms, tz = _DATE.unpack(self.take(10))
            if math.isnan(ms):
                raise AMF0Error("date is NaN")
            return AmfDate(ms, tz)
        if marker in (LONG_STRING, XML_DOCUMENT):
            (n,) = _U32.unpack(self.take(4))
            return self._utf8(self.take(n))
        if marker == TYPED_OBJECT:
            typed = TypedObject(self.short_str())
            self.props(typed, depth)
            return typed
        if marker == UNSUPPORTED:
            return UNDEFINED
        if marker == AVMPLUS:
            raise AMF0Error("AMF3 values are not supported")
        if marker == REFERENCE:
            raise AMF0Error("AMF0 references are not supported")
        raise AMF0Error(f"unknown AMF0 marker 0x{marker:02x}")


def decode_all(data: bytes, *, max_elements: int = MAX_ELEMENTS, max_depth: int = MAX_DEPTH) -> list[Any]:
    """Decode every value in `data` (a whole command or data message body).

    At most `max_elements` values in all (nested ones included) and `max_depth` levels:
    past either, AMF0Error at once.
    """
    dec = _Decoder(bytes(data), max_elements, max_depth)
    values: list[Any] = []
    while dec.pos < len(dec.data):
        if len(values) >= MAX_ITEMS:
            raise AMF0Error("too many AMF0 values")
        values.append(dec.value())
    return values


def decode_one(
    data: bytes, offset: int = 0, *, max_elements: int = MAX_ELEMENTS, max_depth: int = MAX_DEPTH
) -> tuple[Any, int]:
    """Decode one value at `offset`; return it and the offset just past it (bounded as decode_all)."""
    dec = _Decoder(bytes(data), max_elements, max_depth)
    dec.pos = offset
    value = dec.value()
    return value, dec.pos
