"""The bench's HTTP response framing (status, headers, chunked) with byte fixtures and hypothesis."""

from __future__ import annotations

import pytest
from bench.httpwire import ChunkedDecoder, HttpWireError, ResponseHead, build_get
from hypothesis import given, settings
from hypothesis import strategies as st


def encode_chunked(pieces: list[bytes]) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces if p) + b"0\r\n\r\n"


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def test_head_parses_status_headers_and_leftover_body() -> None:
    head = ResponseHead()
    assert head.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chun") == b""
    body = head.feed(b"ked\r\nContent-Type: video/x-flv\r\n\r\nFLV\x01")
    assert head.done and head.status == 200 and head.chunked
    assert head.headers["content-type"] == "video/x-flv"
    assert body == b"FLV\x01"
    assert head.feed(b"more") == b"more"


@pytest.mark.parametrize("bad", [b"SPDY/3 200 OK\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", b"garbage\r\n\r\n"])
def test_head_rejects_bad_status_line(bad: bytes) -> None:
    with pytest.raises(HttpWireError):
        ResponseHead().feed(bad)


def test_head_bounds_header_size() -> None:
    with pytest.raises(HttpWireError):
        ResponseHead().feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 5000)


def test_chunked_rejects_bad_size_and_missing_crlf() -> None:
    with pytest.raises(HttpWireError):
        ChunkedDecoder().feed(b"zz\r\nabc")
    with pytest.raises(HttpWireError):
        ChunkedDecoder().feed(b"3\r\nabcXY")


def test_build_get_is_a_request_line_and_host() -> None:
    req = build_get("127.0.0.1:8080", "/live/a.flv?x=1")
    assert req.startswith(b"GET /live/a.flv?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
    assert req.endswith(b"\r\n\r\n")


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.binary(min_size=0, max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_chunked_roundtrip_any_split(pieces: list[bytes], cuts: list[int]) -> None:
    wire = encode_chunked(pieces)
    dec = ChunkedDecoder()
    out = b"".join(dec.feed(part) for part in split_at(wire, cuts))
    assert out == b"".join(pieces)
    assert dec.finished


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_chunked_garbage_raises_only_httpwireerror(data: bytes) -> None:
    dec = ChunkedDecoder()
    try:
        dec.feed(data)
    except HttpWireError:
        pass
