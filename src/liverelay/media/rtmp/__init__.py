"""RTMP, sans-IO: handshake, chunk stream, messages and the session state machines.

base.py (what both sides share), server.py, client.py; limits.py (RtmpLimits, MemoryBudget).
Every byte a session sends leaves through its `data_to_send()`.
"""

from .chunk import ChunkReader, Message, encode_message, frame_chunks
from .client import RtmpClientSession
from .errors import RtmpError
from .events import (
    CommandFailed,
    Connected,
    ConnectFailed,
    ConnectRequest,
    Event,
    MediaReceived,
    PeerChunkSize,
    PlayRequest,
    PublishRequest,
    StatusEvent,
    StreamBegin,
    StreamCreated,
    StreamDeleted,
    StreamEof,
)
from .limits import MemoryBudget, RtmpLimits
from .server import RtmpServerSession

__all__ = [
    "ChunkReader",
    "CommandFailed",
    "ConnectFailed",
    "ConnectRequest",
    "Connected",
    "Event",
    "MediaReceived",
    "MemoryBudget",
    "Message",
    "PeerChunkSize",
    "PlayRequest",
    "PublishRequest",
    "RtmpClientSession",
    "RtmpError",
    "RtmpLimits",
    "RtmpServerSession",
    "StatusEvent",
    "StreamBegin",
    "StreamCreated",
    "StreamDeleted",
    "StreamEof",
    "encode_message",
    "frame_chunks",
]
