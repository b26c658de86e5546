"""The HLS server's pure helpers: byte ranges, request parameters, session tokens."""

from __future__ import annotations

import pytest

from liverelay.servers.hls import _TOKEN_RE, _byte_range, _int_param


@pytest.mark.parametrize(
    ("header", "size", "want"),
    [
        ("bytes=0-99", 1000, (0, 100)),
        ("bytes=100-", 1000, (100, 1000)),
        ("bytes=-100", 1000, (900, 1000)),
        ("bytes=900-5000", 1000, (900, 1000)),  # clipped to the body
        ("bytes=1000-", 1000, None),  # starts past the end: 416
        ("bytes=-0", 1000, None),
        ("bytes=5-4", 1000, None),
        ("bytes=-", 1000, None),
        ("bytes=0-1,5-9", 1000, (0, 1000)),  # several ranges: the whole body (200)
        ("items=0-1", 1000, (0, 1000)),
    ],
)
def test_byte_range(header: str, size: int, want: tuple[int, int] | None) -> None:
    assert _byte_range(header, size) == want


def test_int_param() -> None:
    assert _int_param(None) is None
    assert _int_param("42") == 42
    for bad in ("-1", "x", "1.5", "1" * 13, ""):
        with pytest.raises(ValueError):
            _int_param(bad)


def test_session_token_shape() -> None:
    assert _TOKEN_RE.match("abcdEFGH_-12")
    for bad in ("short", "x" * 65, "has space!", "a/b/c/d/e"):
        assert not _TOKEN_RE.match(bad)
