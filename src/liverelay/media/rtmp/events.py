"""What RTMP sessions report to their owner (the asyncio glue) after `receive_data`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..frame import Frame


class Event:
    """Base class of every session event."""

    __slots__ = ()


# ---------------------------------------------------------------- server side


@dataclass(slots=True)
class ConnectRequest(Event):
    txn: float
    app: str
    tc_url: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PublishRequest(Event):
    stream_id: int
    txn: float
    name: str  # may carry "?query"
    publish_type: str


@dataclass(slots=True)
class PlayRequest(Event):
    stream_id: int
    txn: float
    name: str  # may carry "?query"
    start: float = -2.0
    duration: float = -1.0
    reset: bool = True


@dataclass(slots=True)
class StreamDeleted(Event):
    """deleteStream / closeStream / FCUnpublish: whatever ran on that stream id ends."""

    stream_id: int
    command: str


# ---------------------------------------------------------------- both sides


@dataclass(slots=True)
class MediaReceived(Event):
    """Audio/video, or onMetaData as a DATA frame (`@setDataFrame` stripped)."""

    stream_id: int
    frame: Frame


@dataclass(slots=True)
class PeerChunkSize(Event):
    size: int


# ---------------------------------------------------------------- client side


@dataclass(slots=True)
class Connected(Event):
    info: dict[str, Any]


@dataclass(slots=True)
class ConnectFailed(Event):
    info: dict[str, Any]


@dataclass(slots=True)
class StreamCreated(Event):
    stream_id: int


@dataclass(slots=True)
class StatusEvent(Event):
    stream_id: int
    level: str
    code: str
    description: str


@dataclass(slots=True)
class CommandFailed(Event):
    command: str
    info: Any


@dataclass(slots=True)
class StreamBegin(Event):
    stream_id: int


@dataclass(slots=True)
class StreamEof(Event):
    stream_id: int
