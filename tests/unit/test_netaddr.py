"""The one HOST:PORT parser/formatter, the scheme table and the one UTC time formatter."""

from __future__ import annotations

import pytest

from liverelay.netaddr import (
    ORIGIN_SCHEMES,
    format_hostport,
    parse_hostport,
    split_hostport,
    with_default_port,
)
from liverelay.timefmt import utc_iso


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8180", ("127.0.0.1", 8180)),
        (":1935", ("127.0.0.1", 1935)),
        ("[::1]:80", ("::1", 80)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("node.example:65535", ("node.example", 65535)),
    ],
)
def test_parse_hostport(value: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("nonsense", "must be HOST:PORT"),
        ("h:65536", "bad port"),
        ("h:-1", "bad port"),
        ("h:x", "bad port"),
        ("::1:80", "IPv6"),
        ("[::1:80", "host[:port]"),
        ("[::1]x80", "host[:port]"),
    ],
)
def test_parse_hostport_refuses(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_hostport(value)


def test_split_and_format() -> None:
    assert split_hostport("example.org") == ("example.org", None)
    assert split_hostport("[2001:db8::1]") == ("2001:db8::1", None)
    assert split_hostport("[2001:db8::1]:99") == ("2001:db8::1", "99")
    assert format_hostport("2001:db8::1", 99) == "[2001:db8::1]:99"
    assert format_hostport("example.org", 1) == "example.org:1"
    assert with_default_port("example.org", 1935) == "example.org:1935"
    assert with_default_port("example.org:8080", 1935) == "example.org:8080"
    assert with_default_port("2001:db8::1", 80) == "[2001:db8::1]:80"
    assert with_default_port("[2001:db8::1]", 80) == "[2001:db8::1]:80"
    assert with_default_port("[2001:db8::1]:81", 80) == "[2001:db8::1]:81"


def test_scheme_table() -> None:
    assert ORIGIN_SCHEMES["rtmp"] == 1935 and ORIGIN_SCHEMES["rtmps"] == 443
    assert ORIGIN_SCHEMES["srt"] is None  # an SRT URL must name its port


def test_utc_iso() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00Z"
    assert utc_iso(1715169600.9) == "2024-05-08T12:00:00Z"
