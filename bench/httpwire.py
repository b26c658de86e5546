"""Sans-IO HTTP/1.1 response framing for the FLV viewers: status line, headers, chunked body.

Only what a streaming GET needs; the media inside is parsed by liverelay.media.flv.
"""

from __future__ import annotations


class HttpWireError(Exception):
    """The response is not a usable HTTP/1.x streaming response."""


MAX_HEADER_BYTES = 16 * 1024
MAX_CHUNK_LINE = 1024


def build_get(host: str, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: liverelay-bench\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")


class ResponseHead:
    """Collects bytes until the end of the headers; then `status`, `headers` and leftover body."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.done = False
        self.status = 0
        self.headers: dict[str, str] = {}

    def feed(self, data: bytes) -> bytes:
        """Feed bytes; returns the body bytes that followed the headers (b'' until done)."""
        if self.done:
            return data
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:
                raise HttpWireError("response headers too long")
            return b""
        head = bytes(self._buf[:end]).decode("latin-1")
        body = bytes(self._buf[end + 4 :])
        self._buf = bytearray()
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpWireError(f"bad status line {lines[0][:80]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                self.headers[name.strip().lower()] = value.strip()
        self.done = True
        return body

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()


class ChunkedDecoder:
    """Transfer-Encoding: chunked -> payload bytes. `finished` after the last (0) chunk."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._remaining = 0  # payload bytes left in the current chunk
        self._need_crlf = False  # the CRLF after a chunk's payload
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while not self.finished:
            if self._remaining:
                take = min(self._remaining, len(self._buf))
                if not take:
                    break
                out += self._buf[:take]
                del self._buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._need_crlf = True
                continue
            if self._need_crlf:
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise HttpWireError("chunk not followed by CRLF")
                del self._buf[:2]
                self._need_crlf = False
            eol = self._buf.find(b"\r\n")
            if eol < 0:
                if len(self._buf) > MAX_CHUNK_LINE:
                    raise HttpWireError("chunk size line too long")
                break
            size_text = bytes(self._buf[:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpWireError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0:
                raise HttpWireError("negative chunk size")
            del self._buf[: eol + 2]
            if size == 0:
                self.finished = True  # trailers are ignored: the stream is over
                break
            self._remaining = size
        return bytes(out)
