"""RTMP chunk stream: a reader that reassembles messages and a stateless writer.

Reader: chunk header formats 0-3, 1- to 3-byte basic headers, extended timestamps
(including the fmt 3 repetition that some encoders omit on continuation chunks),
Set Chunk Size and Abort applied in-line (they change how the very next bytes parse).
Limits: message size per type (checked on the header), number of chunk streams, bytes
held (unfinished messages + unparsed input); partial messages live in one bytearray per
chunk stream.

Writer: every message starts with a fmt 0 header (absolute timestamp) and continues
with fmt 3 chunks, so the bytes of a message depend only on (chunk size, csid, msid,
message) - never on what was sent before - and one serialisation of a media frame can
be shared by every viewer with the same chunk size and stream id.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..frame import Frame, FrameKind
from .errors import RtmpError

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 0xFFFFFF  # the message length field is 24 bits; a chunk can never need more

MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_ACK = 3
MSG_USER_CONTROL = 4
MSG_WINDOW_ACK_SIZE = 5
MSG_SET_PEER_BANDWIDTH = 6
MSG_AUDIO = 8
MSG_VIDEO = 9
MSG_AMF3_DATA = 15
MSG_AMF3_SHARED_OBJECT = 16
MSG_AMF3_COMMAND = 17
MSG_AMF0_DATA = 18
MSG_AMF0_SHARED_OBJECT = 19
MSG_AMF0_COMMAND = 20
MSG_AGGREGATE = 22

# Chunk stream ids we write on (the same choice as nginx-rtmp).
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_DATA = 5
CSID_AUDIO = 6
CSID_VIDEO = 7
CSID_FOR_KIND = {FrameKind.AUDIO: CSID_AUDIO, FrameKind.VIDEO: CSID_VIDEO, FrameKind.DATA: CSID_DATA}

_COMMAND_TYPES = frozenset((MSG_AMF0_COMMAND, MSG_AMF3_COMMAND))
_EXT = 0xFFFFFF
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


class Message(NamedTuple):
    type_id: int
    timestamp: int
    stream_id: int
    payload: bytes
    csid: int


class _ChunkStream:
    __slots__ = ("data", "extended", "length", "remaining", "stream_id", "timestamp", "ts_field", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0
        self.ts_field = 0  # last timestamp/delta field as read (incl. extended); fmt 3 reuses it
        self.extended = False
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.remaining = 0  # bytes still missing from the message in progress
        # The unfinished message's bytes: one growing buffer per chunk stream, never an
        # object per chunk (at chunk size 1 a list of bytes objects costs ~30x the payload).
        self.data = bytearray()


def _limit_table(media: int, command: int, data: int) -> list[int]:
    """Largest message length per type id: media for audio/video/aggregate, `data` for data
    messages, `command` for everything else (commands, control, shared objects, unknown)."""
    table = [command] * 256
    for t in (MSG_AUDIO, MSG_VIDEO, MSG_AGGREGATE):
        table[t] = media
    for t in (MSG_AMF0_DATA, MSG_AMF3_DATA):
        table[t] = data
    return table


class ChunkReader:
    """Feed raw bytes (after the handshake); get complete messages back.

    Bounds: a maximum length per message type, checked as soon as a header announces the
    length (nothing of an oversize message is buffered), a maximum number of chunk streams,
    and `max_buffered`: bytes held in unfinished messages plus unparsed input, checked once
    per `feed` (so a feed may briefly hold `max_buffered + len(data)`).
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = 16 << 20,
        max_chunk_streams: int = 64,
        max_buffered: int | None = None,
        pause_on_command: bool = False,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_chunk_streams = max_chunk_streams
        self._max_len = _limit_table(max_message_bytes, max_message_bytes, max_message_bytes)
        self.max_buffered = 2 * max_message_bytes if max_buffered is None else max_buffered
        self._buf = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self._pending_bytes = 0  # held in unfinished messages over all chunk streams
        # True when the last feed stopped after a command with input left: call feed(b"")
        # (after acting on the messages) to go on.
        self.paused = False
        self._pause_types = _COMMAND_TYPES if pause_on_command else frozenset()

    def set_limits(self, *, media: int, command: int, data: int, buffered: int) -> None:
        """Change the bounds (a session tightens them before connect/publish); they apply
        to the next message header and the next feed."""
        self._max_len = _limit_table(media, command, data)
        self.max_buffered = buffered

    def max_length(self, type_id: int) -> int:
        return self._max_len[type_id]

    def feed(self, data: bytes) -> list[Message]:
        """Parse what `data` completes. With `pause_on_command`, stops after each command
        message that has input behind it (see `paused`)."""
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data  # the common case: parse the read in place, copy only what is left
        out: list[Message] = []
        pos = 0
        end = len(src)
        view = memoryview(src)
        paused = False
        try:
            while pos < end:
                used = self._one_chunk(src, view, pos, end, out)
                if used <= 0:
                    if used == 0:
                        break
                    # A command completed: stop so the session can act on it (a publish
                    # or connect changes the limits) before the bytes behind it are parsed.
                    pos -= used
                    paused = pos < end
                    break
                pos += used
        finally:
            view.release()  # a live export would forbid resizing the buffer below
        if src is buf:
            if pos:
                del buf[:pos]
        elif pos < end:
            buf += data[pos:]
        self.paused = paused
        if not paused and len(buf) + self._pending_bytes > self.max_buffered:
            raise RtmpError(
                f"{len(buf) + self._pending_bytes} bytes buffered exceed the limit of {self.max_buffered}"
            )
        return out

    @property
    def buffered(self) -> int:
        """Bytes held: unfinished messages plus unparsed input."""
        return len(self._buf) + self._pending_bytes

    def close(self) -> None:
        """Drop every buffer (the connection is over)."""
        self._buf = bytearray()
        self._streams.clear()
        self._pending_bytes = 0

    def _one_chunk(
        self, buf: bytes | bytearray, view: memoryview, pos: int, end: int, out: list[Message]
    ) -> int:
        """Parse one chunk at `pos`; return bytes used, or 0 when more data is needed."""
        b0 = buf[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        p = pos + 1
        if csid == 0:
            if end - p < 1:
                return 0
            csid = buf[p] + 64
            p += 1
        elif csid == 1:
            if end - p < 2:
                return 0
            csid = buf[p] + (buf[p + 1] << 8) + 64
            p += 2
        st = self._streams.get(csid)
        if fmt == 0:
            if end - p < 11:
                return 0
            ts_field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
            length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
            type_id = buf[p + 6]
            stream_id = _U32LE.unpack_from(buf, p + 7)[0]
            p += 11
        elif fmt == 1:
            if end - p < 7:
                return 0
            ts_field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
            length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
            type_id = buf[p + 6]
            stream_id = -1
            p += 7
        elif fmt == 2:
            if end - p < 3:
                return 0
            ts_field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
            length = type_id = stream_id = -1
            p += 3
        else:
            ts_field = length = type_id = stream_id = -1
        extended = ts_field == _EXT
        if extended:
            if end - p < 4:
                return 0
            ts_field = _U32.unpack_from(buf, p)[0]
            p += 4
        elif fmt == 3 and st is not None and st.extended:
            if st.remaining == 0:
                # A new message in fmt 3 after an extended header repeats the field.
                if end - p < 4:
                    return 0
                ts_field = _U32.unpack_from(buf, p)[0]
                p += 4
            else:
                # Continuation: most peers repeat the extended timestamp, some do not.
                # Take the 4 bytes only when they match the value we know.
                if end - p < 4:
                    return 0
                if _U32.unpack_from(buf, p)[0] == st.ts_field:
                    p += 4
        if st is None:
            if len(self._streams) >= self.max_chunk_streams:
                raise RtmpError(f"too many chunk streams (> {self.max_chunk_streams})")
            # Some clients (ffmpeg) open a chunk stream with fmt 1: start from zeros.
            st = _ChunkStream()
            self._streams[csid] = st
        # Everything about the header is known; now the payload of this chunk.
        new_message = fmt != 3 or st.remaining == 0
        if new_message:
            msg_len = st.length if length < 0 else length
            limit = self._max_len[st.type_id if type_id < 0 else type_id]
            if msg_len > limit:
                # Refused on the header: nothing of an oversize message is ever buffered.
                raise RtmpError(
                    f"message type {st.type_id if type_id < 0 else type_id} of {msg_len} bytes"
                    f" exceeds the limit of {limit}"
                )
            n = msg_len if msg_len < self.chunk_size else self.chunk_size
        else:
            n = st.remaining if st.remaining < self.chunk_size else self.chunk_size
        if end - p < n:
            return 0
        # Commit the header: from here the chunk is consumed.
        if new_message:
            if st.remaining:
                # A fresh header in the middle of a message: drop the unfinished one.
                self._pending_bytes -= len(st.data)
                st.data = bytearray()
            if fmt == 0:
                st.timestamp = ts_field
                st.stream_id = stream_id
            elif fmt == 3:
                st.timestamp = (st.timestamp + st.ts_field) & 0xFFFFFFFF
            else:
                st.timestamp = (st.timestamp + ts_field) & 0xFFFFFFFF
            if fmt != 3:
                st.ts_field = ts_field
                st.extended = extended
            if fmt <= 1:
                st.length = length
                st.type_id = type_id
            st.remaining = msg_len
        st.remaining -= n
        if st.remaining == 0:
            if st.data:
                st.data += view[p : p + n]
                payload = bytes(st.data)
                self._pending_bytes -= len(payload) - n
                st.data = bytearray()
            else:
                payload = bytes(view[p : p + n])
            self._complete(csid, st, payload, out)
            if st.type_id in self._pause_types:
                return pos - p - n  # negative: consumed, and pause here
        else:
            st.data += view[p : p + n]
            self._pending_bytes += n
            if self._pending_bytes > self.max_buffered:
                # Checked here too (not only per feed): at chunk size 1 a single read is
                # many thousands of chunks, and the work ends as soon as the cap is passed.
                raise RtmpError(
                    f"{self._pending_bytes} bytes buffered exceed the limit of {self.max_buffered}"
                )
        return p + n - pos

    def _complete(self, csid: int, st: _ChunkStream, payload: bytes, out: list[Message]) -> None:
        if st.stream_id == 0 and st.type_id == MSG_SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise RtmpError("short Set Chunk Size")
            size = _U32.unpack_from(payload)[0] & 0x7FFFFFFF
            if size < 1:
                raise RtmpError("Set Chunk Size of 0")
            self.chunk_size = min(size, MAX_CHUNK_SIZE)
        elif st.stream_id == 0 and st.type_id == MSG_ABORT:
            if len(payload) < 4:
                raise RtmpError("short Abort")
            self.abort(_U32.unpack_from(payload)[0])
        out.append(Message(st.type_id, st.timestamp, st.stream_id, payload, csid))

    def abort(self, csid: int) -> None:
        st = self._streams.get(csid)
        if st is not None and st.remaining:
            self._pending_bytes -= len(st.data)
            st.remaining = 0
            st.data = bytearray()


# ---------------------------------------------------------------- writer


def basic_header(fmt: int, csid: int) -> bytes:
    if csid < 2 or csid > 65599:
        raise ValueError(f"chunk stream id {csid} out of range")
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    c = csid - 64
    return bytes(((fmt << 6) | 1, c & 0xFF, c >> 8))


_FMT3 = {csid: basic_header(3, csid) for csid in range(2, 64)}


def encode_message(
    csid: int, type_id: int, timestamp: int, stream_id: int, payload: bytes, chunk_size: int
) -> bytes:
    """Serialise one message into chunks: fmt 0 first, fmt 3 continuations."""
    length = len(payload)
    if length > 0xFFFFFF:
        raise ValueError("message longer than 16 MiB cannot be chunked")
    timestamp &= 0xFFFFFFFF
    extended = timestamp >= _EXT
    ts_field = _EXT if extended else timestamp
    ext = _U32.pack(timestamp) if extended else b""
    # The message header (timestamp, length, type: 7 bytes) and the stream id packed as
    # integers, not joined from pieces: this runs once per frame relayed.
    fields = ((ts_field << 32) | (length << 8) | type_id).to_bytes(7, "big") + _U32LE.pack(stream_id)
    header = (bytes((csid,)) if csid < 64 else basic_header(0, csid)) + fields + ext
    if length <= chunk_size:
        return header + payload
    cont = (_FMT3.get(csid) or basic_header(3, csid)) + ext
    view = memoryview(payload)
    parts: list[bytes | memoryview] = [header, view[:chunk_size]]
    for off in range(chunk_size, length, chunk_size):
        parts.append(cont)
        parts.append(view[off : off + chunk_size])
    return b"".join(parts)


def frame_chunks(frame: Frame, chunk_size: int, stream_id: int) -> bytes:
    """The chunk bytes of a media frame, computed once and kept in `frame.cache`."""
    key = ("rtmp", chunk_size, stream_id)
    data = frame.cache.get(key)
    if data is None:
        kind = frame.kind
        # Metadata goes out at timestamp 0: ffmpeg's FLV demuxer turns a data tag with a
        # non-zero timestamp into a subtitle stream packet.
        ts = frame.timestamp if frame.timestamp > 0 and kind != FrameKind.DATA else 0
        data = encode_message(CSID_FOR_KIND[kind], int(kind), ts, stream_id, frame.payload, chunk_size)
        frame.cache[key] = data
    return data
