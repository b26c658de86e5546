"""RTMP message payloads: protocol control, user control, AMF0 commands and data.

Builders return complete chunk bytes (fmt 0 headers) ready to write; parsers take a
message payload. Only RtmpError escapes the parsers.
"""

from __future__ import annotations

import struct
from typing import Any

from .. import amf0
from .chunk import (
    CSID_COMMAND,
    CSID_CONTROL,
    CSID_DATA,
    MSG_ACK,
    MSG_AMF0_COMMAND,
    MSG_AMF0_DATA,
    MSG_SET_CHUNK_SIZE,
    MSG_SET_PEER_BANDWIDTH,
    MSG_USER_CONTROL,
    MSG_WINDOW_ACK_SIZE,
    encode_message,
)
from .errors import RtmpError

# User Control event types.
UC_STREAM_BEGIN = 0
UC_STREAM_EOF = 1
UC_STREAM_DRY = 2
UC_SET_BUFFER_LENGTH = 3
UC_STREAM_IS_RECORDED = 4
UC_PING_REQUEST = 6
UC_PING_RESPONSE = 7

# Set Peer Bandwidth limit types.
BANDWIDTH_HARD = 0
BANDWIDTH_SOFT = 1
BANDWIDTH_DYNAMIC = 2

# onStatus codes.
CONNECT_SUCCESS = "NetConnection.Connect.Success"
CONNECT_REJECTED = "NetConnection.Connect.Rejected"
CALL_FAILED = "NetConnection.Call.Failed"
PUBLISH_START = "NetStream.Publish.Start"
PUBLISH_BAD_NAME = "NetStream.Publish.BadName"
UNPUBLISH_SUCCESS = "NetStream.Unpublish.Success"
PLAY_START = "NetStream.Play.Start"
PLAY_RESET = "NetStream.Play.Reset"
PLAY_STOP = "NetStream.Play.Stop"
PLAY_STREAM_NOT_FOUND = "NetStream.Play.StreamNotFound"
PLAY_FAILED = "NetStream.Play.Failed"
PLAY_UNPUBLISH_NOTIFY = "NetStream.Play.UnpublishNotify"
PLAY_PUBLISH_NOTIFY = "NetStream.Play.PublishNotify"
DATA_START = "NetStream.Data.Start"

_U32 = struct.Struct(">I")
_UC = struct.Struct(">HI")

SET_DATA_FRAME = amf0.encode("@setDataFrame")
ON_METADATA = "onMetaData"


def set_chunk_size(size: int, chunk_size: int) -> bytes:
    return encode_message(CSID_CONTROL, MSG_SET_CHUNK_SIZE, 0, 0, _U32.pack(size), chunk_size)


def window_ack_size(size: int, chunk_size: int) -> bytes:
    return encode_message(CSID_CONTROL, MSG_WINDOW_ACK_SIZE, 0, 0, _U32.pack(size), chunk_size)


def set_peer_bandwidth(size: int, limit_type: int, chunk_size: int) -> bytes:
    payload = _U32.pack(size) + bytes((limit_type,))
    return encode_message(CSID_CONTROL, MSG_SET_PEER_BANDWIDTH, 0, 0, payload, chunk_size)


def acknowledgement(sequence: int, chunk_size: int) -> bytes:
    return encode_message(CSID_CONTROL, MSG_ACK, 0, 0, _U32.pack(sequence & 0xFFFFFFFF), chunk_size)


def user_control(event: int, value: int, chunk_size: int, extra: int | None = None) -> bytes:
    payload = _UC.pack(event, value & 0xFFFFFFFF)
    if extra is not None:
        payload += _U32.pack(extra & 0xFFFFFFFF)
    return encode_message(CSID_CONTROL, MSG_USER_CONTROL, 0, 0, payload, chunk_size)


def command(name: str, txn: float, *args: Any, stream_id: int = 0, chunk_size: int) -> bytes:
    payload = amf0.encode(name, txn, *args)
    return encode_message(CSID_COMMAND, MSG_AMF0_COMMAND, 0, stream_id, payload, chunk_size)


def data_message(stream_id: int, chunk_size: int, *values: Any) -> bytes:
    return encode_message(CSID_DATA, MSG_AMF0_DATA, 0, stream_id, amf0.encode(*values), chunk_size)


def status_info(code: str, description: str = "", level: str | None = None, **extra: Any) -> dict[str, Any]:
    if level is None:
        level = (
            "error"
            if ("Rejected" in code or "Failed" in code or "BadName" in code or "NotFound" in code)
            else "status"
        )
    info: dict[str, Any] = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info


def on_status(stream_id: int, chunk_size: int, code: str, description: str = "", **extra: Any) -> bytes:
    return command(
        "onStatus",
        0,
        None,
        status_info(code, description, **extra),
        stream_id=stream_id,
        chunk_size=chunk_size,
    )


# ---------------------------------------------------------------- parsing


def parse_u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise RtmpError(f"short {what} message")
    value: int = _U32.unpack_from(payload)[0]
    return value


def parse_user_control(payload: bytes) -> tuple[int, int]:
    """Return (event type, first value); unknown event types are returned as they are."""
    if len(payload) < 2:
        raise RtmpError("short User Control message")
    event = (payload[0] << 8) | payload[1]
    value = _U32.unpack_from(payload, 2)[0] if len(payload) >= 6 else 0
    return event, value


def parse_command(
    payload: bytes,
    amf3: bool = False,
    *,
    max_elements: int = amf0.MAX_ELEMENTS,
    max_depth: int = amf0.MAX_DEPTH,
) -> tuple[str, float, list[Any]]:
    """A command message body -> (name, transaction id, remaining args); at most
    `max_elements` AMF0 values and `max_depth` levels are decoded."""
    if amf3:
        # AMF3 command messages start with a format byte, then AMF0 values in practice.
        payload = payload[1:]
    try:
        values = amf0.decode_all(payload, max_elements=max_elements, max_depth=max_depth)
    except amf0.AMF0Error as exc:
        raise RtmpError(f"bad AMF0 command: {exc}") from None
    if len(values) < 2 or not isinstance(values[0], str):
        raise RtmpError("command without a name and transaction id")
    txn = values[1]
    if isinstance(txn, bool) or not isinstance(txn, float | int):
        txn = 0.0
    return values[0], float(txn), values[2:]


def metadata_body(payload: bytes, *, max_elements: int = amf0.MAX_ELEMENTS) -> bytes | None:
    """The onMetaData body of a data message (`@setDataFrame` stripped), or None if it is no metadata.

    Only the first value (the name) is decoded; the body is passed on as bytes."""
    if payload.startswith(SET_DATA_FRAME):
        payload = payload[len(SET_DATA_FRAME) :]
    try:
        name, _ = amf0.decode_one(payload, max_elements=max_elements)
    except amf0.AMF0Error:
        return None
    return payload if name == ON_METADATA else None
