"""RTMP, sans-IO: handshake, chunk stream, messages and the session state machines."""

from .chunk import ChunkReader, Message, encode_message, frame_chunks
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
from .session import RtmpClientSession, RtmpServerSession

__all__ = [
    "ChunkReader",
    "CommandFailed",
    "ConnectFailed",
    "ConnectRequest",
    "Connected",
    "Event",
    "MediaReceived",
    "Message",
    "PeerChunkSize",
    "PlayRequest",
    "PublishRequest",
    "RtmpClientSession",
    "RtmpError",
    "RtmpServerSession",
    "StatusEvent",
    "StreamBegin",
    "StreamCreated",
    "StreamDeleted",
    "StreamEof",
    "encode_message",
    "frame_chunks",
]
