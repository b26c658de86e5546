"""gzip of a playlist that differs per viewer only by its session token, deflated once.

Every viewer's media playlist is the one rendered text with its own token in each URI, so
its gzip form would be a deflate per viewer request (~6-8 us for a 1 KB playlist, the
largest part of answering a playlist). `TokenGzip` deflates the text once per token
length, with stand-in bytes where the token goes, and splices each viewer's token in as
deflate "stored" blocks (RFC 1951 3.2.4), then appends that viewer's gzip trailer.

Why a back-reference of the shared stream still decodes to the viewer's text: the stand-in
for a token of length n is the bytes 0x80..0x80+n-1, which occur nowhere else in an ASCII
text. A match the compressor found copies equal bytes: where it copies stand-in byte i it
copies it from stand-in byte i of another token position, and the decoder, whose history
holds the same token at both, copies token[i] to where token[i] belongs. Everywhere else
both texts are the same ASCII. The stand-in input itself is encoded in blocks of its own
(a sync flush on each side), which are dropped for the stored block of the real token.
"""

from __future__ import annotations

import struct
import zlib

WBITS = 16 + 12  # the gzip wrapper; a 4 KB window is plenty for a playlist
MEM_LEVEL = 2  # a small hash table: zlib's default state costs more to set up than to use
LEVEL = 1
MAX_TOKEN = 64  # stand-ins are 0x80.. (one byte per token character)
_TRAILER = 8  # CRC32 and ISIZE


def gzip_small(data: bytes) -> bytes:
    """gzip of a few KB with a small deflate state (same output size as zlib's default
    state for such inputs, at about an eighth of the cost)."""
    deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS, MEM_LEVEL)
    return deflate.compress(data) + deflate.flush()


class TokenGzip:
    """The gzip encoding of `template` with every `mark` replaced by one token."""

    __slots__ = ("_chunks", "_forms")

    def __init__(self, template: str, mark: str) -> None:
        self._chunks = [c.encode() for c in template.split(mark)]
        # token length -> the deflated pieces between the tokens (the last one without the
        # gzip trailer), or None when this text cannot be spliced (not ASCII)
        self._forms: dict[int, list[bytes] | None] = {}

    def compress(self, token: str, crc: int, size: int) -> bytes | None:
        """The gzip form of the template with `token` at every mark, given the crc32 and
        length of that text; None when it must be compressed as a whole."""
        n = len(token)
        form = self._forms.get(n)
        if form is None:
            if n in self._forms or not 0 < n <= MAX_TOKEN or not token.isascii():
                return None
            form = self._forms[n] = self._deflate(n)
            if form is None:
                return None
        # A stored block: BFINAL 0, BTYPE 00 (byte-aligned after the sync flush), LEN, NLEN.
        stored = b"\x00" + struct.pack("<HH", n, n ^ 0xFFFF) + token.encode()
        return stored.join(form) + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)

    def _deflate(self, n: int) -> list[bytes] | None:
        chunks = self._chunks
        if not all(c.isascii() for c in chunks):
            return None
        stand_in = bytes(range(0x80, 0x80 + n))
        deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS, MEM_LEVEL)
        pieces: list[bytes] = []
        for chunk in chunks[:-1]:
            pieces.append(deflate.compress(chunk) + deflate.flush(zlib.Z_SYNC_FLUSH))
            deflate.compress(stand_in)
            deflate.flush(zlib.Z_SYNC_FLUSH)  # the stand-in's blocks: replaced by the token's
        final = deflate.compress(chunks[-1]) + deflate.flush()
        pieces.append(final[:-_TRAILER])
        return pieces
