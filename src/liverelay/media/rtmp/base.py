"""What the server and client RTMP sessions share (sans-IO).

`receive_data(bytes) -> list[Event]`. Every byte a session has to send - automatic
answers (handshake packets, pings, acknowledgements, createStream results) and the
answers its owner asks for (accept_connect ... end_play, connect, play ...) - is queued
and comes out of `data_to_send()`, in the order the protocol needs: the one way out.
(Media chunks for viewers are the exception by design: they are a stateless per-frame
serialisation shared by every viewer, `chunk.frame_chunks`, written by the viewer's
writer after `data_to_send()` has been flushed.)

Bounds (`RtmpLimits`): message length per type and stage, checked on the header;
bytes held per connection per stage; AMF0 values per command; and, across connections,
a shared `MemoryBudget`. Past any of them: RtmpError, the only exception that escapes.
`close()` frees the buffers and returns what the session reserved in the budget.
"""

from __future__ import annotations

import struct
from typing import Any

from ..codecs import make_frame
from ..frame import Frame, FrameKind
from . import messages as m
from .chunk import (
    MSG_ABORT,
    MSG_ACK,
    MSG_AGGREGATE,
    MSG_AMF0_COMMAND,
    MSG_AMF0_DATA,
    MSG_AMF3_COMMAND,
    MSG_AMF3_DATA,
    MSG_AUDIO,
    MSG_SET_CHUNK_SIZE,
    MSG_SET_PEER_BANDWIDTH,
    MSG_USER_CONTROL,
    MSG_VIDEO,
    MSG_WINDOW_ACK_SIZE,
    ChunkReader,
    Message,
)
from .errors import RtmpError
from .events import Event, PeerChunkSize
from .limits import MemoryBudget, RtmpLimits

# The Window Acknowledgement Size (and peer bandwidth) we announce: a player acknowledges
# every window (ffmpeg) or half window of media it reads, and each acknowledgement is a
# wake-up of our loop per viewer. nginx-rtmp's default (`ack_window 5000000`): at 2.5 MB,
# ten viewers of a 2 Mbit/s stream woke an edge twice a second for nothing else.
DEFAULT_WINDOW_ACK_SIZE = 5_000_000

_AGG_HEADER = struct.Struct(">B3s3sB3s")


def num(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def stream_id_of(value: Any) -> int | None:
    """A message stream id from an AMF0 number, or None when it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= 0xFFFFFFFF or value != value:  # NaN fails every comparison
        return None
    return int(value)


class SessionBase:
    """Handshake-independent parts: chunk reader, limits, acks, pings, media decoding."""

    def __init__(self, *, chunk_size: int, limits: RtmpLimits | None, budget: MemoryBudget | None) -> None:
        if not 128 <= chunk_size <= 0xFFFFFF:
            raise ValueError("chunk size must be in 128..16777215")
        self.target_chunk_size = chunk_size
        self.chunk_size = 128  # what we write with until we announce target_chunk_size
        self.limits = limits or RtmpLimits()
        self.budget = budget
        self._charged = 0  # bytes of this session counted in the budget
        # Pausing after each command lets a connect/publish raise the limits before the
        # bytes pipelined behind it are parsed.
        self.reader = ChunkReader(max_chunk_streams=self.limits.chunk_streams, pause_on_command=True)
        self._out: list[bytes] = []
        self.bytes_received = 0
        self._last_ack = 0
        self.peer_window = 0  # the peer asked for an Ack every this many bytes (0 = never)
        self.closed = False
        self._set_stage(connected=False, publishing=False)

    def data_to_send(self) -> bytes:
        """Everything queued to send, in order; b"" when nothing is."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def close(self) -> None:
        """The connection is over: drop the buffers and give the budget back. Idempotent."""
        self.closed = True
        self.reader.close()
        self._out.clear()
        if self.budget is not None and self._charged:
            self.budget.release(self._charged)
        self._charged = 0

    def _set_stage(self, *, connected: bool, publishing: bool) -> None:
        media, command, data, buffered = self.limits.stage(connected=connected, publishing=publishing)
        self.reader.set_limits(media=media, command=command, data=data, buffered=buffered)

    def _announce_chunk_size(self) -> None:
        self._out.append(m.set_chunk_size(self.target_chunk_size, self.chunk_size))
        self.chunk_size = self.target_chunk_size

    def _feed_chunks(self, data: bytes, events: list[Event]) -> None:
        self.bytes_received += len(data)
        reader = self.reader
        try:
            while True:
                for msg in reader.feed(data):
                    if self.closed:
                        break  # e.g. connect rejected: whatever the peer pipelined after it is moot
                    self._dispatch(msg, events)
                if not reader.paused or self.closed:
                    break
                data = b""  # go on with the input held behind the command just handled
        except RtmpError:
            raise
        except Exception as exc:  # a bug here must still only end this connection
            raise RtmpError(f"RTMP input handling failed: {exc!r}", internal=True) from exc
        held = reader.buffered
        if held != self._charged:
            if self.budget is not None:
                if held > self._charged:
                    self.budget.reserve(held - self._charged)
                else:
                    self.budget.release(self._charged - held)
            self._charged = held
        if self.peer_window and self.bytes_received - self._last_ack >= self.peer_window:
            self._last_ack = self.bytes_received
            self._out.append(m.acknowledgement(self.bytes_received, self.chunk_size))

    def _dispatch(self, msg: Message, events: list[Event]) -> None:
        t = msg.type_id
        if t in (MSG_AUDIO, MSG_VIDEO):
            self._on_media(msg.stream_id, make_frame(t, msg.timestamp, msg.payload), events)
        elif t in (MSG_AMF0_COMMAND, MSG_AMF3_COMMAND):
            limits = self.limits
            name, txn, args = m.parse_command(
                msg.payload,
                amf3=t == MSG_AMF3_COMMAND,
                max_elements=limits.amf0_max_elements,
                max_depth=limits.amf0_max_depth,
            )
            self._on_command(msg.stream_id, name, txn, args, events)
        elif t in (MSG_AMF0_DATA, MSG_AMF3_DATA):
            payload = msg.payload[1:] if t == MSG_AMF3_DATA else msg.payload
            body = m.metadata_body(payload, max_elements=self.limits.amf0_max_elements)
            if body is not None:
                self._on_media(msg.stream_id, Frame(FrameKind.DATA, msg.timestamp, body), events)
        elif t == MSG_USER_CONTROL:
            event, value = m.parse_user_control(msg.payload)
            if event == m.UC_PING_REQUEST:
                self._out.append(m.user_control(m.UC_PING_RESPONSE, value, self.chunk_size))
            else:
                self._on_user_control(event, value, events)
        elif t == MSG_WINDOW_ACK_SIZE:
            self.peer_window = m.parse_u32(msg.payload, "Window Acknowledgement Size")
        elif t == MSG_SET_PEER_BANDWIDTH:
            self._on_peer_bandwidth(m.parse_u32(msg.payload, "Set Peer Bandwidth"))
        elif t == MSG_SET_CHUNK_SIZE:
            events.append(PeerChunkSize(self.reader.chunk_size))
        elif t == MSG_AGGREGATE:
            self._on_aggregate(msg, events)
        elif t in (MSG_ACK, MSG_ABORT):
            pass
        # Shared objects and unknown types are ignored: they carry nothing we relay.

    def _on_aggregate(self, msg: Message, events: list[Event]) -> None:
        """Aggregate = FLV-tag-like sub-messages; their timestamps are relative to the first."""
        data = msg.payload
        pos = 0
        base: int | None = None
        while pos + 11 <= len(data):
            t, size_b, ts_b, ts_ext, _ = _AGG_HEADER.unpack_from(data, pos)
            size = int.from_bytes(size_b, "big")
            ts = int.from_bytes(ts_b, "big") | (ts_ext << 24)
            body = data[pos + 11 : pos + 11 + size]
            if len(body) < size:
                raise RtmpError("truncated aggregate message")
            if base is None:
                base = ts
            sub_ts = (msg.timestamp + ts - base) & 0xFFFFFFFF
            if t in (MSG_AUDIO, MSG_VIDEO):
                self._on_media(msg.stream_id, make_frame(t, sub_ts, body), events)
            elif t == MSG_AMF0_DATA:
                meta = m.metadata_body(body, max_elements=self.limits.amf0_max_elements)
                if meta is not None:
                    self._on_media(msg.stream_id, Frame(FrameKind.DATA, sub_ts, meta), events)
            pos += 11 + size + 4  # + back pointer

    # Hooks for the two sides.
    def _on_media(self, stream_id: int, frame: Frame, events: list[Event]) -> None:
        raise NotImplementedError

    def _on_command(
        self, stream_id: int, name: str, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        raise NotImplementedError

    def _on_user_control(self, event: int, value: int, events: list[Event]) -> None:
        pass

    def _on_peer_bandwidth(self, size: int) -> None:
        pass
