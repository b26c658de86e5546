"""What one RTMP connection may make the node hold or compute, and the node-wide budget.

Plain values and counting, no IO: the server builds one `MemoryBudget` and an
`RtmpLimits` from its settings and hands both to every session it creates.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RtmpError


@dataclass(frozen=True, slots=True)
class RtmpLimits:
    """Caps per connection. Defaults are far above what ffmpeg, OBS, librtmp, GStreamer
    and nginx-rtmp send (a connect is well under 2 KiB, onMetaData under 2 KiB, a command
    has a few dozen AMF0 values) and far below what lets a peer stall or bloat the node."""

    # Largest audio/video/aggregate message (the 24-bit length field allows 16 MiB).
    message_bytes: int = 16 << 20
    # Largest command message (types 20/17, and control/other non-media types) before the
    # connect has been accepted, and after.
    command_bytes_before_connect: int = 16 << 10
    command_bytes: int = 64 << 10
    # Largest data message (types 18/15: onMetaData, @setDataFrame, |RtmpSampleAccess).
    data_bytes: int = 256 << 10
    # Bytes held by one connection (unfinished messages + unparsed input): before connect,
    # while connected but not publishing (players never send large messages), publishing.
    buffer_before_connect: int = 32 << 10
    buffer_before_publish: int = 256 << 10
    buffer_bytes: int = 32 << 20
    # AMF0 values (nested ones included) and nesting levels per decoded message.
    amf0_max_elements: int = 1024
    amf0_max_depth: int = 32
    chunk_streams: int = 64

    def stage(self, *, connected: bool, publishing: bool) -> tuple[int, int, int, int]:
        """(media, command, data, buffered) caps for a connection in this state; no message
        may exceed what the connection may hold in all."""
        if not connected:
            buffered = self.buffer_before_connect
            command = self.command_bytes_before_connect
        elif not publishing:
            buffered = self.buffer_before_publish
            command = self.command_bytes
        else:
            buffered = self.buffer_bytes
            command = self.command_bytes
        return (
            min(self.message_bytes, buffered),
            min(command, buffered),
            min(self.data_bytes, buffered),
            buffered,
        )


class MemoryBudget:
    """Bytes buffered by all RTMP sessions together, against one limit.

    A session reserves what its buffers grew by and releases what they shrank by (once per
    read, not per chunk) and releases everything in `close()`.
    """

    __slots__ = ("limit", "peak", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def reserve(self, n: int) -> None:
        """Count `n` more bytes; RtmpError (nothing counted) when that exceeds the limit."""
        used = self.used + n
        if used > self.limit:
            raise RtmpError(f"node-wide RTMP buffer budget of {self.limit} bytes exhausted")
        self.used = used
        if used > self.peak:
            self.peak = used

    def release(self, n: int) -> None:
        self.used -= n
