"""The unit that flows from every source through the hub to every viewer.

A Frame carries an FLV tag body (which is also the RTMP message payload for
audio/video/data messages), so no source or sink ever converts codec data:
RTMP in -> FLV out and FLV in -> RTMP out are only framing changes.
"""

from __future__ import annotations

from enum import IntEnum


class FrameKind(IntEnum):
    """FLV tag type == RTMP message type id."""

    AUDIO = 8
    VIDEO = 9
    DATA = 18  # AMF0 data (onMetaData)


class Frame:
    """One audio/video/data message.

    `timestamp` is in milliseconds on the source's timeline (the hub rebases
    it onto the stream's own monotonic timeline). `keyframe` and `config` are
    computed once by the producer from the payload (see media.codecs):
    `config` marks a codec sequence header (AVC/HEVC decoder config, AAC
    AudioSpecificConfig), which the hub keeps apart from the GOP cache.

    `cache` is where sinks memoise their serialisation (e.g. the FLV tag bytes
    or RTMP chunk bytes) so a frame is serialised once per output format, not
    once per viewer. Keys are chosen by the sink ("flv", ("rtmp", 4096), ...).
    """

    __slots__ = ("cache", "config", "keyframe", "kind", "payload", "timestamp")

    def __init__(
        self,
        kind: FrameKind | int,
        timestamp: int,
        payload: bytes,
        *,
        keyframe: bool = False,
        config: bool = False,
    ) -> None:
        # (a FrameKind as is: the enum call costs a Python call per frame on the hot path)
        self.kind = kind if type(kind) is FrameKind else FrameKind(kind)
        self.timestamp = timestamp
        self.payload = payload
        self.keyframe = keyframe
        self.config = config
        self.cache: dict[object, bytes] = {}

    def with_timestamp(self, timestamp: int) -> Frame:
        """A copy on another timeline (the serialisation cache is not carried over)."""
        return Frame(self.kind, timestamp, self.payload, keyframe=self.keyframe, config=self.config)

    def __len__(self) -> int:
        return len(self.payload)

    def __repr__(self) -> str:
        flags = ("K" if self.keyframe else "") + ("C" if self.config else "")
        extra = f", {flags}" if flags else ""
        return f"Frame({self.kind.name}, ts={self.timestamp}, {len(self.payload)}B{extra})"
