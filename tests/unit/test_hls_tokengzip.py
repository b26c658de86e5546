"""TokenGzip: a playlist's gzip form with each viewer's token spliced into one deflate
decodes to exactly the text that viewer gets (gzip.decompress is the judge)."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from liverelay.media.hls.tokengzip import TokenGzip, gzip_small

MARK = "\x00token\x00"
PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:12\n" + "".join(
    f"#EXT-X-PROGRAM-DATE-TIME:2026-11-30T20:50:{i:02d}.123Z\n"
    f"#EXTINF:2.000,\nseg{12 + i}.ts?v=ab12&s={MARK}\n"
    for i in range(6)
)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_TOKEN = st.text(alphabet=_ALPHABET, min_size=1, max_size=64)


def _splice(gz: TokenGzip, template: str, token: str) -> bytes | None:
    text = template.replace(MARK, token).encode()
    return gz.compress(token, zlib.crc32(text), len(text))


@given(token=_TOKEN)
@settings(max_examples=200, deadline=None)
def test_a_spliced_playlist_decodes_to_the_viewers_text(token: str) -> None:
    gz = TokenGzip(PLAYLIST, MARK)
    body = _splice(gz, PLAYLIST, token)
    assert body is not None
    assert gzip.decompress(body) == PLAYLIST.replace(MARK, token).encode()


@given(
    chunks=st.lists(st.text(alphabet="abc\n#=?&s0123456789", max_size=80), min_size=1, max_size=12),
    tokens=st.lists(_TOKEN, min_size=1, max_size=4),
)
@settings(max_examples=200, deadline=None)
def test_any_ascii_template_and_tokens_of_one_length(chunks: list[str], tokens: list[str]) -> None:
    """Repetitive text around the marks (matches reaching into and across the tokens), the
    mark at either end, several viewers with tokens of the same length from one TokenGzip."""
    template = MARK.join(chunks)
    gz = TokenGzip(template, MARK)
    n = len(tokens[0])
    for token in tokens:
        token = (token * n)[:n]
        body = _splice(gz, template, token)
        assert body is not None
        assert gzip.decompress(body) == template.replace(MARK, token).encode()


def test_repeated_tokens_compress_like_the_whole_text() -> None:
    token = "AbCdEfGhIjKlMnOp"
    body = _splice(TokenGzip(PLAYLIST, MARK), PLAYLIST, token)
    whole = gzip_small(PLAYLIST.replace(MARK, token).encode())
    # A stored block and a sync flush per token (~26 bytes) where the whole text would
    # refer back to the token (~3): larger, still about half the text.
    assert body is not None and len(body) <= len(whole) + 30 * 6 and len(body) < len(PLAYLIST) * 0.6


def test_non_ascii_text_or_odd_tokens_are_left_to_a_plain_gzip() -> None:
    assert _splice(TokenGzip("é" + MARK, MARK), "é" + MARK, "abcdefgh") is None
    gz = TokenGzip(PLAYLIST, MARK)
    assert _splice(gz, PLAYLIST, "x" * 65) is None
    assert _splice(gz, PLAYLIST, "ab\u00e9defgh") is None
    assert gzip.decompress(gzip_small(b"x" * 1000)) == b"x" * 1000
