"""FLV container, sans-IO: bytes in -> header + Frames out; Frame -> tag bytes.

Layout (Adobe FLV spec v10.1, annex E): a 9+ byte file header ("FLV", version,
flags, data offset), PreviousTagSize0, then tags: type(1) size(3) timestamp(3)
timestamp-extended(1) stream-id(3) body(size) PreviousTagSize(4). A tag body is
exactly an RTMP message payload, so a Frame carries it unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .codecs import make_frame
from .frame import Frame, FrameKind

FLV_SIGNATURE = b"FLV"
FLV_HEADER_SIZE = 9
TAG_HEADER_SIZE = 11
PREV_TAG_SIZE = 4
# Tag bodies are 24-bit sized, so nothing legal is larger than this.
MAX_TAG_BODY = (1 << 24) - 1
# ffmpeg writes 9; anything much larger is not an FLV stream we should trust.
_MAX_DATA_OFFSET = 1024

_FLAG_AUDIO = 0x04
_FLAG_VIDEO = 0x01
_TAG_TYPE_MASK = 0x1F
_TAG_FILTER_BIT = 0x20  # encrypted/filtered body: we cannot use it

_KNOWN_KINDS = {int(k) for k in FrameKind}
# AMF0 string "@setDataFrame": marker 0x02, u16 length 13, the name.
_SET_DATA_FRAME = b"\x02\x00\x0d@setDataFrame"

_HEADER = struct.Struct(">3sBBI")
_TAG_HEAD = struct.Struct(">II3x")  # (type << 24 | size), (ts24 << 8 | ts_ext), stream id 0
_U32 = struct.Struct(">I")


class FlvError(ValueError):
    """The byte stream is not FLV we can use; the connection carrying it should be closed."""


@dataclass(frozen=True)
class FlvHeader:
    has_audio: bool
    has_video: bool
    version: int = 1


def strip_set_data_frame(payload: bytes) -> bytes:
    """RTMP publishers send '@setDataFrame' 'onMetaData' {...}; keep only the onMetaData body."""
    if payload.startswith(_SET_DATA_FRAME):
        return payload[len(_SET_DATA_FRAME) :]
    return payload


class FlvDecoder:
    """Incremental FLV parser. feed() accepts any split of the byte stream."""

    def __init__(self, *, max_tag_bytes: int = 16 << 20, expect_header: bool = True) -> None:
        self._buf = bytearray()
        self._max_tag = min(max_tag_bytes, MAX_TAG_BODY)
        self._need_header = expect_header
        self._skip = 0  # bytes still to skip (data offset beyond 9, PreviousTagSize0)
        self._failed: FlvError | None = None
        self.header: FlvHeader | None = None
        self.tags = 0

    def feed(self, data: bytes) -> list[FlvHeader | Frame]:
        """Parse as much as possible; raises FlvError (and keeps raising) on malformed input."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        events: list[FlvHeader | Frame] = []
        pos = 0
        end = len(buf)
        try:
            if self._need_header:
                if end < FLV_HEADER_SIZE:
                    if buf[: min(end, 3)] != FLV_SIGNATURE[: min(end, 3)]:
                        raise FlvError("not an FLV stream (bad signature)")
                    return events
                sig, version, flags, offset = _HEADER.unpack_from(buf, 0)
                if sig != FLV_SIGNATURE:
                    raise FlvError("not an FLV stream (bad signature)")
                if offset < FLV_HEADER_SIZE or offset > _MAX_DATA_OFFSET:
                    raise FlvError(f"FLV header data offset {offset} is out of range")
                self.header = FlvHeader(bool(flags & _FLAG_AUDIO), bool(flags & _FLAG_VIDEO), version)
                events.append(self.header)
                self._need_header = False
                pos = FLV_HEADER_SIZE
                self._skip = offset - FLV_HEADER_SIZE + PREV_TAG_SIZE
            if self._skip:
                n = min(self._skip, end - pos)
                pos += n
                self._skip -= n
            max_tag = self._max_tag
            while end - pos >= TAG_HEADER_SIZE:
                word0, word1 = _TAG_HEAD.unpack_from(buf, pos)
                size = word0 & 0xFFFFFF
                tag_type = word0 >> 24
                if tag_type & ~(_TAG_TYPE_MASK | _TAG_FILTER_BIT):
                    raise FlvError(f"bad tag type byte 0x{tag_type:02x}")
                if size > max_tag:
                    raise FlvError(f"tag of {size} bytes exceeds the {max_tag}-byte limit")
                total = TAG_HEADER_SIZE + size + PREV_TAG_SIZE
                if end - pos < total:
                    break
                body_start = pos + TAG_HEADER_SIZE
                timestamp = (word1 >> 8) | ((word1 & 0xFF) << 24)
                kind = tag_type & _TAG_TYPE_MASK
                pos += total
                self.tags += 1
                if tag_type & _TAG_FILTER_BIT or kind not in _KNOWN_KINDS:
                    continue  # encrypted or unknown tags: skipped, like every player does
                payload = bytes(buf[body_start : body_start + size])
                if kind == FrameKind.DATA:
                    payload = strip_set_data_frame(payload)
                events.append(make_frame(kind, timestamp, payload))
        except FlvError as exc:
            self._failed = exc
            self._buf = bytearray()
            raise
        if pos:
            del buf[:pos]
        if len(buf) > self._max_tag + TAG_HEADER_SIZE + PREV_TAG_SIZE:  # pragma: no cover - defensive
            raise FlvError("FLV buffer overflow")
        return events

    @property
    def buffered(self) -> int:
        return len(self._buf)


def flv_header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """The 9-byte FLV file header followed by PreviousTagSize0."""
    flags = (_FLAG_AUDIO if has_audio else 0) | (_FLAG_VIDEO if has_video else 0)
    return _HEADER.pack(FLV_SIGNATURE, 1, flags, FLV_HEADER_SIZE) + b"\x00\x00\x00\x00"


def flv_tag(frame: Frame) -> bytes:
    """Tag header + body + PreviousTagSize, built once per frame and shared by all viewers."""
    tag = frame.cache.get("flv")
    if tag is None:
        size = len(frame.payload)
        if size > MAX_TAG_BODY:
            raise FlvError(f"frame of {size} bytes does not fit an FLV tag")
        ts = frame.timestamp & 0xFFFFFFFF
        tag = b"".join(
            (
                _TAG_HEAD.pack((int(frame.kind) << 24) | size, ((ts & 0xFFFFFF) << 8) | (ts >> 24)),
                frame.payload,
                _U32.pack(size + TAG_HEADER_SIZE),
            )
        )
        frame.cache["flv"] = tag
    return tag
